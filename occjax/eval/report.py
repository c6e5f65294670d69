"""Evaluation report over `scripts/invert.py` run folders: CSV/JSON, tables, figures, Markdown, HTML.

`evaluate(run_dirs, out_dir, eval_cfg, report_cfg)` computes every per-case metric
(`occjax.eval.runs`) and writes into out_dir:
  metrics.csv, metrics.json   one row per (run, case, approach), every metric (NaN / null if undefined),
                              `skipped_metrics` {metric: reason} for metrics whose package is missing
  summary.json                mean, std, n per approach and metric; `skipped_metrics`
  report.md, index.html       Table III-like table (mean ± std per approach, the paper's values beside,
                              plus the identity distance), a table of every metric, the figures below,
                              notes on what was skipped (metrics without their package, figures)
  box_<metric>.png            per-approach box plots (paper Figures 4, 5)
  n_refs.png                  metric vs number of references (Figure 6; runs with different n_refs)
  size.png                    metric per occlusion size category (Figure 8; meta.size)
  regions.png                 metric per occluded facial structure (Figure 9; meta.regions)
  best.png, worst.png         image grids of the best and worst cases
Headline metrics: local LPIPS and landmark distance against the ground truth; for cases without
ground truth, the visible-pixel LPIPS (result vs occluded input) and landmarks vs the input.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
from pathlib import Path

import numpy as np

from occjax.eval import figures
from occjax.eval.runs import (
    ALL_METRICS,
    GT_METRICS,
    METRIC_INFO,
    EvalConfig,
    evaluate_records,
    read_results,
    run_display_names,
)

# The paper's Table III: approach -> (local LPIPS, 2D-FAN landmark distance in px at 256).
PAPER_TABLE_III = {
    "enc": (0.586, 7.786),
    "baseline": (0.327, 7.980),
    "disc": (0.273, 6.630),
    "prior": (0.237, 6.262),
    "prior_disc": (0.240, 6.412),
}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    n_grid: int = 3
    """Cases in each of the best / worst image grids."""
    table_n_refs: int | None = None
    """Restrict tables and box plots to results with this n_refs (default: pool all)."""


def headline(rows: list[dict]) -> tuple[bool, list[str]]:
    """(any ground truth, [LPIPS-type headline metric, landmark metric])."""
    has_gt = any(r["has_clean"] and r["status"] == "ok" for r in rows)
    return has_gt, (
        ["local_lpips", "landmark_px"] if has_gt else ["visible_lpips", "landmark_px_input"]
    )


def summarize(rows: list[dict], metrics: list[str]) -> dict[str, dict]:
    """approach -> {"n_total", "n_ok", "time_s", metric: {"mean", "std", "n"}}."""
    out = {}
    for a in figures.approach_order(r["approach"] for r in rows):
        rs = [r for r in rows if r["approach"] == a]
        times = figures.values(rs, "time_s")
        entry = {
            "n_total": len(rs),
            "n_ok": sum(r["status"] == "ok" for r in rs),
            "time_s": float(times.mean()) if len(times) else None,
        }
        for m in metrics:
            v = figures.values(rs, m)
            entry[m] = {
                "mean": float(v.mean()) if len(v) else None,
                "std": float(v.std()) if len(v) else None,
                "n": len(v),
            }
        out[a] = entry
    return out


def _pm(s: dict, digits: int = 3) -> str:
    if not s or s["mean"] is None:
        return "–"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (n={s['n']})"


def _digits(metric: str) -> int:
    return 2 if "psnr" in metric or "landmark" in metric else 3


def rank_cases(rows: list[dict], metric: str) -> list[tuple[str, str, float]]:
    """(run, case, score) best first; score = mean of `metric` over the case's approaches."""
    scores: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        v = r.get(metric)
        if r["status"] == "ok" and v is not None and math.isfinite(v):
            scores.setdefault((r["run"], r["case"]), []).append(v)
    lower = METRIC_INFO.get(metric, ("", True))[1]
    ranked = sorted(
        ((k[0], k[1], float(np.mean(v))) for k, v in scores.items()),
        key=lambda x: x[2] if lower else -x[2],
    )
    return ranked


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def _csv_cell(v):
    """Lists joined by ';', dicts as 'key: value' joined by '; '."""
    if isinstance(v, list):
        return ";".join(map(str, v))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {x}" for k, x in v.items())
    return v


def write_tables(rows: list[dict], out: Path) -> None:
    """metrics.csv (regions joined by ';', skipped_metrics as 'metric: reason; ...') and
    metrics.json."""
    keys = list(rows[0].keys()) if rows else []
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_cell(v) for k, v in r.items()})
    (out / "metrics.json").write_text(json.dumps(_jsonable(rows), indent=1))


# A report is a list of blocks rendered both to Markdown and HTML:
# ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", file, caption)


def _table_iii(
    summary: dict, has_gt: bool, heads: list[str], backend: str, identity: bool = False
) -> tuple:
    """Ours beside the paper's values; `identity` adds our identity distance (not in the paper)."""
    lm_name = f"landmarks px ({backend})"
    header = ["approach", "ok / cases", f"{METRIC_INFO[heads[0]][0]} ↓"]
    if has_gt:
        header += ["paper local LPIPS", f"{lm_name} ↓", "paper 2D-FAN px"]
        header += [f"{METRIC_INFO['identity'][0]} ↓"] if identity else []
        header += ["time s"]
    else:
        header += [f"{METRIC_INFO[heads[1]][0]} ({backend}) ↓", "time s"]
    body = []
    for a, s in summary.items():
        paper = PAPER_TABLE_III.get(a)
        t = f"{s['time_s']:.1f}" if s["time_s"] is not None else "–"
        row = [a, f"{s['n_ok']} / {s['n_total']}", _pm(s[heads[0]])]
        if has_gt:
            row += [
                f"{paper[0]:.3f}" if paper else "–",
                _pm(s[heads[1]], 2),
                f"{paper[1]:.3f}" if paper else "–",
            ]
            row += [_pm(s["identity"])] if identity else []
            row += [t]
        else:
            row += [_pm(s[heads[1]], 2), t]
        body.append(row)
    return ("table", header, body)


def skipped_of(rows: list[dict]) -> dict[str, str]:
    """metric -> reason for the metrics skipped for a missing package (the same in every row)."""
    return dict(rows[0].get("skipped_metrics") or {}) if rows else {}


def skipped_by_reason(skipped: dict[str, str]) -> dict[str, list[str]]:
    """reason -> the metrics it skips (one missing package skips several)."""
    out: dict[str, list[str]] = {}
    for metric, why in skipped.items():
        out.setdefault(why, []).append(metric)
    return out


def _paper_table() -> tuple:
    return (
        "table",
        ["approach", "local LPIPS", "2D-FAN landmark px"],
        [[a, f"{v[0]:.3f}", f"{v[1]:.3f}"] for a, v in PAPER_TABLE_III.items()],
    )


def build_blocks(
    rows: list[dict], out: Path, eval_cfg: EvalConfig, cfg: ReportConfig
) -> tuple[list, dict]:
    """Write every figure into out; return the report's blocks and the per-approach summary."""
    has_gt, heads = headline(rows)
    table_rows = (
        rows if cfg.table_n_refs is None else [r for r in rows if r["n_refs"] == cfg.table_n_refs]
    )
    skipped = skipped_of(rows)
    backend = eval_cfg.landmarks
    identity = has_gt and eval_cfg.identity and "identity" not in skipped
    runs = sorted({r["run"] for r in rows})
    n_refs = sorted({r["n_refs"] for r in rows})
    failed = [r for r in rows if r["status"] != "ok"]
    b: list = [("h", 1, "Occlusion removal: evaluation report")]
    b.append(
        (
            "p",
            f"Runs: {', '.join(runs)}; {len({r['case'] for r in rows})} cases, "
            f"{len({(r['run'], r['case']) for r in rows})} (run, case) pairs, {len(rows)} results, "
            f"{len(failed)} failed; n_refs values: {n_refs}.",
        )
    )
    for why, ms in skipped_by_reason(skipped).items():
        b.append(("p", f"Skipped metrics {', '.join(ms)}: {why}."))
    if has_gt:
        n_nogt = len({(r["run"], r["case"]) for r in rows if not r["has_clean"]})
        b.append(
            (
                "p",
                "Metrics against the clean ground truth (local LPIPS: LPIPS-"
                f"{eval_cfg.net} spatial map averaged over the occluded pixels)."
                + (f" {n_nogt} cases without ground truth are left out of them." if n_nogt else ""),
            )
        )
    else:
        b.append(
            (
                "p",
                "No ground truth in these runs: the metrics compare the result with the "
                "occluded input on the visible (non-occluded) pixels only (visible LPIPS, "
                "visible PSNR), and the landmarks of the result with those of the occluded "
                "input. They measure fidelity to what was visible, not the quality of the "
                "removal, and are not comparable with the paper's Table III.",
            )
        )
    if backend != "none" and "landmark_px" not in skipped:
        b.append(
            (
                "p",
                f"Landmark distances: mean over 68 points, px at {eval_cfg.ref_size}, backend "
                f"{backend}"
                + ("" if backend == "fan" else " (the paper used 2D-FAN: not directly comparable)")
                + ".",
            )
        )
        scored = [r for r in rows if r["status"] == "ok" and r["has_clean"] == has_gt]
        missing = sum(not math.isfinite(r[heads[1]]) for r in scored)
        if missing:
            b.append(
                (
                    "p",
                    f"No face found in the result or its reference for {missing} of "
                    f"{len(scored)} results: their landmark distance is left out.",
                )
            )
    if identity:
        b.append(("p", _identity_note(rows)))
    if cfg.table_n_refs is not None:
        b.append(("p", f"Tables and box plots: results with n_refs = {cfg.table_n_refs} only."))
    elif len(n_refs) > 1:
        b.append(("p", f"Tables and box plots pool results over n_refs {n_refs}."))
    summary = summarize(table_rows, list(ALL_METRICS))
    b += [
        ("h", 2, "Table III (ours" + (", paper beside)" if has_gt else ")")),
        _table_iii(summary, has_gt, heads, backend, identity),
    ]
    if not has_gt:
        b += [
            ("p", "The paper's Table III (against ground truth, 2D-FAN), for reference:"),
            _paper_table(),
        ]
    shown = [m for m in ALL_METRICS if any(s[m]["n"] for s in summary.values())]
    b += [
        ("h", 2, "Every metric (mean ± std)"),
        (
            "table",
            ["approach"] + [METRIC_INFO[m][0] for m in shown],
            [[a] + [_pm(s[m], _digits(m)) for m in shown] for a, s in summary.items()],
        ),
    ]
    if failed:
        b += [
            ("h", 2, "Failed results"),
            (
                "table",
                ["run", "case", "approach", "error"],
                [[r["run"], r["case"], r["approach"], str(r["error"])] for r in failed],
            ),
        ]
    b.append(("h", 2, "Figures"))
    box_metrics = [m for m in (heads + [m for m in GT_METRICS if m not in heads]) if m in shown]
    for m in box_metrics:
        fn = f"box_{m}.png"
        _figure(
            b, figures.box_plot(table_rows, m, out / fn), fn, f"{METRIC_INFO[m][0]} per approach"
        )
    lm = [h for h in heads if h in shown]
    _figure(
        b,
        figures.refs_plot(rows, lm, out / "n_refs.png"),
        "n_refs.png",
        "Metric against the number of reference images (Figure 6)",
    )
    _figure(
        b,
        figures.size_plot(rows, lm, out / "size.png"),
        "size.png",
        "Metric per occlusion size (Figure 8)",
    )
    _figure(
        b,
        figures.regions_plot(rows, heads[0], out / "regions.png"),
        "regions.png",
        f"{METRIC_INFO[heads[0]][0]} per occluded facial structure (Figure 9)",
    )
    ranked = rank_cases(rows, heads[0])
    k = min(cfg.n_grid, len(ranked))
    for name, keys in (("best", ranked[:k]), ("worst", ranked[::-1][:k])):
        title = f"{name} {k} cases by {METRIC_INFO[heads[0]][0]} (mean over approaches)"
        _figure(
            b, figures.grid(rows, keys, heads[0], out / f"{name}.png", title), f"{name}.png", title
        )
    return b, summary


def _identity_note(rows: list[dict]) -> str:
    """What the identity distance is, and for how many results it fell back or is missing."""
    scored = [r for r in rows if r["status"] == "ok" and r["has_clean"]]
    missing = sum(not math.isfinite(r["identity"]) for r in scored)
    fallback = sum(r["identity_fallback"] or 0 for r in scored)
    text = (
        "Identity distance: Euclidean distance between dlib's 128-d face-recognition embeddings "
        "of the result and its ground truth (dlib: the same person below 0.6); images under 256 "
        "px are upsampled to 256 first (occjax.eval.identity)."
    )
    if fallback:
        text += (
            f" No face was detected in {fallback} of the {2 * len(scored)} images compared: "
            "there the whole image served as the face box."
        )
    if missing:
        text += f" No usable face for {missing} of {len(scored)} results: left out."
    return text


def _figure(blocks: list, skipped: str | None, fn: str, caption: str) -> None:
    if skipped is None:
        blocks.append(("img", fn, caption))
    else:
        blocks.append(("p", f"Skipped: {caption}: {skipped}."))


def to_markdown(blocks: list) -> str:
    lines = []
    for blk in blocks:
        if blk[0] == "h":
            lines += ["#" * blk[1] + " " + blk[2], ""]
        elif blk[0] == "p":
            lines += [blk[1], ""]
        elif blk[0] == "table":
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            lines.append("| " + " | ".join(cell(h) for h in blk[1]) + " |")
            lines.append("|" + "---|" * len(blk[1]))
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in blk[2]] + [""]
        elif blk[0] == "img":
            lines += [f"![{blk[2]}]({blk[1]})", ""]
    return "\n".join(lines)


def to_html(blocks: list) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>occjax evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
        "img{max-width:100%}</style></head><body>",
    ]
    for blk in blocks:
        if blk[0] == "h":
            parts.append(f"<h{blk[1]}>{e(blk[2])}</h{blk[1]}>")
        elif blk[0] == "p":
            parts.append(f"<p>{e(blk[1])}</p>")
        elif blk[0] == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in blk[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in blk[2]
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif blk[0] == "img":
            parts.append(
                f"<figure><img src='{e(blk[1])}' alt='{e(blk[2])}'>"
                f"<figcaption>{e(blk[2])}</figcaption></figure>"
            )
    parts.append(
        "<p>Data: <a href='metrics.csv'>metrics.csv</a>, <a href='metrics.json'>"
        "metrics.json</a>, <a href='summary.json'>summary.json</a>, "
        "<a href='report.md'>report.md</a>.</p></body></html>"
    )
    return "\n".join(parts)


def write_report(
    rows: list[dict], out_dir: str | Path, eval_cfg: EvalConfig, cfg: ReportConfig = ReportConfig()
) -> Path:
    """Write every output file for already evaluated rows; returns out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(rows, out)
    blocks, summary = build_blocks(rows, out, eval_cfg, cfg)
    (out / "summary.json").write_text(
        json.dumps(
            _jsonable(
                {
                    "eval_config": dataclasses.asdict(eval_cfg),
                    "report_config": dataclasses.asdict(cfg),
                    "paper_table_iii": PAPER_TABLE_III,
                    "skipped_metrics": skipped_of(rows),
                    "approaches": summary,
                }
            ),
            indent=1,
        )
    )
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "index.html").write_text(to_html(blocks))
    return out


def evaluate(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    eval_cfg: EvalConfig | None = None,
    cfg: ReportConfig | None = None,
) -> list[dict]:
    """Read the runs, compute every metric, write the report; returns the per-case rows."""
    eval_cfg = eval_cfg or EvalConfig()
    cfg = cfg or ReportConfig()
    names = run_display_names(run_dirs)
    records = [rec for d in run_dirs for rec in read_results(d)]
    if not records:
        raise ValueError(f"no results in {[str(d) for d in run_dirs]}")
    rows = evaluate_records(records, eval_cfg, names)
    write_report(rows, out_dir, eval_cfg, cfg)
    return rows
