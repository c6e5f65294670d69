"""Report figures (matplotlib, Agg): box plots, metric vs n_refs, per size, per facial region, grids.

Every figure function takes the per-case rows of `occjax.eval.runs.evaluate_records` (only rows with
status "ok" are used), writes one PNG and returns None, or writes nothing and returns a one-line
reason when there is no data for it, so that the report never holds an empty figure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from occjax.eval.runs import METRIC_INFO, load_mask, load_rgb

PAPER_ORDER = ("enc", "baseline", "disc", "prior", "prior_disc")
SIZE_ORDER = ("small", "medium", "large")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def approach_order(names) -> list[str]:
    """The paper's approaches first, in its order, then any others sorted."""
    names = set(names)
    return [a for a in PAPER_ORDER if a in names] + sorted(names - set(PAPER_ORDER))


def _color(apps: list[str], a: str) -> str:
    """A fixed colour per approach across every subplot."""
    return f"C{apps.index(a) % 10}"


def _ok(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "ok"]


def values(rows: list[dict], metric: str, **where) -> np.ndarray:
    """Finite values of `metric` over ok rows matching every field == value in `where`."""
    v = [r[metric] for r in _ok(rows) if all(r.get(k) == x for k, x in where.items())]
    v = np.asarray([x for x in v if x is not None and math.isfinite(x)], np.float64)
    return v


def _label(metric: str) -> str:
    return METRIC_INFO.get(metric, (metric, True))[0]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def box_plot(rows: list[dict], metric: str, path: Path) -> str | None:
    """One box per approach (like the paper's Figures 4 and 5)."""
    apps = [
        a
        for a in approach_order(r["approach"] for r in rows)
        if len(values(rows, metric, approach=a))
    ]
    if not apps:
        return f"no finite values of {metric}"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.3 * len(apps) + 2, 3.6))
    data = [values(rows, metric, approach=a) for a in apps]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(apps) + 1), [f"{a}\n(n={len(d)})" for a, d in zip(apps, data)])
    ax.set_ylabel(_label(metric))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return None


def _grouped_bars(ax, groups: list[str], apps: list[str], stats) -> None:
    """stats(group, approach) -> (mean, std, n); grouped bars with std error bars."""
    width = 0.8 / max(len(apps), 1)
    for k, a in enumerate(apps):
        ms = [stats(g, a) for g in groups]
        x = np.arange(len(groups)) + (k - (len(apps) - 1) / 2) * width
        ax.bar(
            x,
            [m[0] for m in ms],
            width,
            yerr=[m[1] for m in ms],
            capsize=2,
            label=a,
            color=_color(apps, a),
        )
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _stats(v: np.ndarray) -> tuple[float, float, int]:
    if not len(v):
        return math.nan, 0.0, 0
    return float(v.mean()), float(v.std()), len(v)


def refs_plot(rows: list[dict], metrics: list[str], path: Path) -> str | None:
    """Mean ± std of each metric against n_refs, one line per approach (the paper's Figure 6)."""
    ns = sorted({r["n_refs"] for r in _ok(rows) if r.get("n_refs") is not None})
    metrics = [m for m in metrics if len(values(rows, m))]
    if len(ns) < 2 or not metrics:
        return (
            f"runs cover {len(ns)} value(s) of n_refs ({ns}); this figure needs runs with 2 or more"
        )
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    apps = approach_order(r["approach"] for r in rows)
    for ax, m in zip(axes[0], metrics):
        for a in apps:
            st = [(n, *_stats(values(rows, m, approach=a, n_refs=n))) for n in ns]
            st = [s for s in st if s[3]]
            if st:
                ax.errorbar(
                    [s[0] for s in st],
                    [s[1] for s in st],
                    [s[2] for s in st],
                    marker="o",
                    capsize=3,
                    label=a,
                    color=_color(apps, a),
                )
        ax.set_xlabel("number of reference images")
        ax.set_ylabel(_label(m))
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    return None


def _size_groups(rows: list[dict]) -> list[str]:
    sizes = {str(r["size"]) for r in _ok(rows) if r.get("size")}
    return [s for s in SIZE_ORDER if s in sizes] + sorted(sizes - set(SIZE_ORDER))


def size_plot(rows: list[dict], metrics: list[str], path: Path) -> str | None:
    """Mean ± std per occlusion size category (meta.size) and approach (the paper's Figure 8)."""
    groups = _size_groups(rows)
    metrics = [m for m in metrics if len(values(rows, m))]
    if not groups or not metrics:
        return "no case has meta.size (small / medium / large) with finite metric values"
    plt = _plt()
    apps = approach_order(r["approach"] for r in rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        _grouped_bars(
            ax, groups, apps, lambda g, a, m=m: _stats(values(rows, m, approach=a, size=g))
        )
        ax.set_xlabel("occlusion size")
        ax.set_ylabel(_label(m))
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    return None


def regions_plot(rows: list[dict], metric: str, path: Path) -> str | None:
    """Mean ± std of `metric` per occluded facial structure (meta.regions; a case counts for each
    of its regions) and approach (the paper's Figure 9)."""
    by_region: dict[str, list[dict]] = defaultdict(list)
    for r in _ok(rows):
        for reg in r.get("regions") or []:
            by_region[str(reg)].append(r)
    regions = sorted(g for g, rs in by_region.items() if len(values(rs, metric)))
    if not regions:
        return f"no case has meta.regions with finite {metric} values"
    plt = _plt()
    apps = approach_order(r["approach"] for r in rows)
    fig, ax = plt.subplots(figsize=(1.2 * len(regions) * max(1, len(apps) / 3) + 2.5, 3.8))
    cases = {g: len({(r["run"], r["case"]) for r in by_region[g]}) for g in regions}
    _grouped_bars(ax, regions, apps, lambda g, a: _stats(values(by_region[g], metric, approach=a)))
    ax.set_xticks(np.arange(len(regions)), [f"{g}\n({cases[g]} cases)" for g in regions])
    ax.set_xlabel("occluded facial structure")
    ax.set_ylabel(_label(metric))
    ax.legend(fontsize=8)
    _save(fig, path)
    return None


def grid(
    rows: list[dict], keys: list[tuple[str, str, float]], metric: str, path: Path, title: str
) -> str | None:
    """Image grid, one line per (run, case, score) in keys: target (mask outlined) | restored per
    approach (with its metric value) | clean ground truth when any case has one."""
    if not keys:
        return "no case with a finite score"
    apps = approach_order(r["approach"] for r in rows)
    index = {(r["run"], r["case"], r["approach"]): r for r in rows}
    with_clean = any(index.get((k[0], k[1], a), {}).get("clean") for k in keys for a in apps)
    cols = ["target"] + apps + (["clean"] if with_clean else [])
    plt = _plt()
    fig, axes = plt.subplots(
        len(keys), len(cols), figsize=(1.9 * len(cols), 2.2 * len(keys) + 0.5), squeeze=False
    )
    for i, (run, case, score) in enumerate(keys):
        case_rows = [index[(run, case, a)] for a in apps if (run, case, a) in index]
        first = case_rows[0]
        hw = None
        ok = [r for r in case_rows if r["status"] == "ok" and r.get("restored")]
        if ok:
            im = load_rgb(ok[0]["restored"])
            hw = im.shape[:2]
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            if i == 0:
                ax.set_title(col, fontsize=9)
            if col == "target":
                ax.imshow(load_rgb(first["target"], hw))
                if first.get("mask"):
                    shape = hw or load_rgb(first["target"]).shape[:2]
                    ax.contour(
                        load_mask(first["mask"], shape), levels=[0.5], colors="r", linewidths=0.6
                    )
                ax.text(
                    0,
                    -0.02,
                    f"{case} [{run}] score {score:.3f}",
                    fontsize=7,
                    transform=ax.transAxes,
                    va="top",
                )
            elif col == "clean":
                if first.get("clean"):
                    ax.imshow(load_rgb(first["clean"], hw))
            else:
                r = index.get((run, case, col))
                if r is not None and r["status"] == "ok" and r.get("restored"):
                    ax.imshow(load_rgb(r["restored"], hw))
                    v = r.get(metric, math.nan)
                    ax.text(0, -0.02, f"{v:.3f}", fontsize=7, transform=ax.transAxes, va="top")
                elif r is not None:
                    ax.text(0.5, 0.5, r["status"], ha="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return None
