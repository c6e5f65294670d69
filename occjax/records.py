"""A run folder's records: the results schema, its one reader, crash-safe appends, the settings
that made them, and merging.

`results.jsonl` holds one JSON object per line, one line per finished (case, approach):
  case, approach, status ("ok" | "failed"), error, settings_hash (this line's settings and model,
  `line_hash`), target (the user's photo), input (the photo as restored: model resolution, aligned
  with --align; run-relative), mask (the exact mask the restoration used, run-relative; null if none),
  mask_source ("file" | "auto"), mask_file (the user's mask file, absolute), mask_estimate (the
  estimate before its restoration margin, run-relative; --mask auto), refs, clean, restored,
  encoder, pasted, side_by_side, resolution, occluded_pct {box, image}, n_refs, losses, time_s,
  meta, and optionally screening, fallback.
Input paths (target, mask_file, refs, clean) are absolute; output paths are relative to the run
folder (`PATH_KEYS` lists every path key). A (case, approach) may have several lines (a failure
retried, a resume): the LATEST line wins, in every reader (`read_records`). A torn last line (the
process killed mid-write) is ignored by the reader and cut by the next writer.

`run.json["settings"]` holds what the lines were made with: `common` (model hash, alignment,
reference screening, mask estimation, ...) and one config per approach (every field of its
InvertConfig; `personal`'s PersonalConfig). Each line's
`settings_hash` is `line_hash(common, its approach's config)`. Re-running into a folder made with
other settings is refused (`check_settings`): results of two settings never mix in one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from occjax.params import atomic_write_bytes

RESULTS = "results.jsonl"
RUN_JSON = "run.json"
# every record key that holds a path: inputs are absolute, outputs relative to the run folder
PATH_KEYS = (
    "target",
    "input",
    "mask",
    "mask_file",
    "mask_estimate",
    "clean",
    "restored",
    "blended",
    "encoder",
    "pasted",
    "side_by_side",
)
LIST_PATH_KEYS = ("refs",)
# what the run writes into its folder (removed by --overwrite; nothing else is touched)
RUN_OUTPUTS = (RESULTS, RUN_JSON, "cases", "inputs", "reference_cache")


class RecordsError(ValueError):
    """A run folder that cannot be read or written as asked (one line for the user)."""


# ---- reading -------------------------------------------------------------------------------------


def _results_path(run: str | os.PathLike) -> Path:
    p = Path(run)
    return p if p.name == RESULTS or p.is_file() else p / RESULTS


def read_lines(run: str | os.PathLike) -> list[dict]:
    """Every complete record line, in file order (several per pair possible). A torn last line is
    skipped (a last line that parses is complete, newline or not); a corrupt line elsewhere raises
    RecordsError naming it."""
    path = _results_path(run)
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        rec = _record(line)
        if rec is None:
            raise RecordsError(f"{path}:{i}: not a JSON results record (case, approach)")
        out.append(rec)
    # the last line has no newline: complete if it parses (a file written by hand), else torn
    if (last := _record(lines[-1])) is not None:
        out.append(last)
    return out


def _record(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and "case" in rec and "approach" in rec else None


def read_records(run: str | os.PathLike, *, absolute: bool = False) -> list[dict]:
    """The records of a run: the LATEST line of each (case, approach), in the order the pairs
    first appeared. With `absolute`, output paths are made absolute and `run_dir` is added."""
    latest: dict[tuple[str, str], dict] = {}
    for rec in read_lines(run):
        latest[(rec["case"], rec["approach"])] = rec
    recs = list(latest.values())
    if absolute:
        run_dir = _results_path(run).parent.resolve()
        recs = [with_absolute_paths(r, run_dir) for r in recs]
    return recs


def with_absolute_paths(rec: dict, run_dir: Path) -> dict:
    """A copy of the record with every path absolute (relative ones are the run folder's)."""
    out = dict(rec, run_dir=str(run_dir))
    for k in PATH_KEYS:
        if out.get(k):
            out[k] = str((run_dir / out[k]).resolve())
    for k in LIST_PATH_KEYS:
        if out.get(k):
            out[k] = [str((run_dir / p).resolve()) for p in out[k]]
    return out


def finished(run: str | os.PathLike, retry_failed: bool = False) -> set[tuple[str, str]]:
    """(case, approach) pairs already recorded (ok, and failed unless retry_failed)."""
    return done_pairs(read_records(run), retry_failed)


def done_pairs(recs: list[dict], retry_failed: bool = False) -> set[tuple[str, str]]:
    """`finished` of records already read."""
    return {
        (r["case"], r["approach"])
        for r in recs
        if r.get("status", "ok") == "ok" or not retry_failed
    }


# ---- writing -------------------------------------------------------------------------------------


def repair(path: Path) -> None:
    """Before appending: end a complete last line that lacks its newline, cut a torn one."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        whole = _record(data[cut:]) is not None
        atomic_write_bytes(path, data + b"\n" if whole else data[:cut])


class ResultsWriter:
    """Appends one record per line, in one write, flushed and fsync'ed."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / RESULTS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=False, allow_nan=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- settings ------------------------------------------------------------------------------------


def _canonical(x) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def line_hash(common: dict, approach_config: dict) -> str:
    """The settings hash of one line: the run's common settings and its approach's config."""
    h = hashlib.sha256(_canonical(common).encode())
    h.update(b"\0" + _canonical(approach_config).encode())
    return h.hexdigest()[:16]


def read_settings(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("settings")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(unset)"), new.get(k, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif _canonical(a) != _canonical(b):
            out.append(f"{prefix}{k} {a} -> {b}")
    return out


def settings_diff(old: dict, new: dict) -> list[str]:
    """What differs between two runs' settings ("steps 100 -> 5", ...), approaches present in both
    compared field by field (an approach only one of them ran is no difference)."""
    out = _diff(old.get("common", {}), new.get("common", {}))
    oa, na = old.get("approaches", {}), new.get("approaches", {})
    for a in sorted(set(oa) & set(na)):
        out += [f"{a}.{d}" for d in _diff(oa[a], na[a])]
    return out


def check_settings(run_dir: str | os.PathLike, settings: dict) -> None:
    """Refuse (RecordsError) to add results made with `settings` to a folder whose records were
    made with other settings. Checks every line's own hash, so a folder's mixed lines are caught
    whatever its run.json says."""
    run_dir = Path(run_dir)
    recs = read_records(run_dir)
    if not recs:
        return
    old = read_settings(run_dir)
    common, approaches = settings["common"], settings["approaches"]
    stale = []
    for r in recs:
        cfg = approaches.get(r["approach"])
        if cfg is None and old is not None:
            cfg = old.get("approaches", {}).get(r["approach"])
        if cfg is None or r.get("settings_hash") != line_hash(common, cfg):
            stale.append(r)
    if not stale:
        return
    if old is None:
        what = "by another version of occjax (no settings recorded)"
    else:
        diffs = settings_diff(old, settings)
        what = "with other settings" + (f" ({'; '.join(diffs[:8])})" if diffs else "")
        if len(diffs) > 8:
            what = what[:-1] + f"; {len(diffs) - 8} more)"
    raise RecordsError(
        f"{run_dir} holds {len(stale)} result(s) made {what}; use another --out, or --overwrite "
        "to replace them"
    )


def merged_settings(old: dict | None, new: dict) -> dict:
    """run.json's settings after this run: its common settings, and the approaches of both."""
    if old is None:
        return new
    return {
        "common": new["common"],
        "approaches": {**old.get("approaches", {}), **new["approaches"]},
    }


def overwrite(run_dir: str | os.PathLike) -> None:
    """Remove what a run wrote into its folder (RUN_OUTPUTS), nothing else."""
    run_dir = Path(run_dir)
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


# ---- merging -------------------------------------------------------------------------------------


def relocate(rec: dict, src: Path, dst: Path) -> dict:
    """A copy of the record whose run-relative paths (relative to src) are relative to dst."""
    out = dict(rec)
    for k in PATH_KEYS:
        v = out.get(k)
        if v and not Path(v).is_absolute():
            out[k] = os.path.relpath(src / v, dst)
    for k in LIST_PATH_KEYS:
        if out.get(k):
            out[k] = [p if Path(p).is_absolute() else os.path.relpath(src / p, dst) for p in out[k]]
    return out


def merge(run_dirs: list[str | os.PathLike], out: str | os.PathLike) -> list[dict]:
    """Combine the runs' records into <out>/results.jsonl (the latest line of each pair wins, the
    runs taken in the order given; every run-relative path rewritten relative to `out`) and write
    <out>/run.json with the settings and the runs merged. Runs made with other settings than the
    first are refused (RecordsError). Returns the merged records."""
    out = Path(out).resolve()
    merged: dict[tuple[str, str], dict] = {}
    settings, first = None, None
    for d in run_dirs:
        d = Path(d).resolve()
        if not (d / RESULTS).is_file():
            raise RecordsError(f"--merge {d}: no {RESULTS} in it")
        s = read_settings(d)
        if s is not None:
            if settings is not None and (diffs := settings_diff(settings, s)):
                raise RecordsError(
                    f"--merge: {d} was made with other settings than {first} "
                    f"({'; '.join(diffs[:6])}); merge runs of the same settings"
                )
            settings = s if settings is None else merged_settings(settings, s)
            first = first or d
        for r in read_records(d):
            merged[(r["case"], r["approach"])] = relocate(r, d, out)
    sources = {Path(d).resolve() for d in run_dirs}
    if read_lines(out) and out not in sources:
        raise RecordsError(f"--out {out} already holds results; merge into a new folder")
    recs = sorted(merged.values(), key=lambda r: (r["case"], r["approach"]))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / RESULTS, "".join(json.dumps(r) + "\n" for r in recs).encode())
    doc = {"merged_from": [str(Path(d).resolve()) for d in run_dirs], "settings": settings}
    atomic_write_bytes(out / RUN_JSON, json.dumps(doc, indent=2).encode())
    return recs
