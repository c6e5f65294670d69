"""The run folder's `results.jsonl`: crash-safe appends, resume, merge.

Each record is appended as one full line in a single write, then flushed and fsync'ed; a torn last
line (the process killed mid-write) is cut off when the file is opened again, so no line is ever
half-written or duplicated. Other files are written atomically (occjax.params.atomic_write_bytes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from occjax.params import atomic_write_bytes

RESULTS = "results.jsonl"


def read_records(path: Path) -> list[dict]:
    """Complete JSON lines of a results file (a torn or corrupt line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and "case" in rec and "approach" in rec:
            out.append(rec)
    return out


def repair(path: Path) -> None:
    """Cut a torn last line (no trailing newline) so the next append starts a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        atomic_write_bytes(path, data[:cut])


def finished(path: Path, retry_failed: bool = False) -> set[tuple[str, str]]:
    """(case, approach) pairs already recorded (ok, and failed unless retry_failed)."""
    latest: dict[tuple[str, str], str] = {}
    for r in read_records(path):
        latest[(r["case"], r["approach"])] = r.get("status", "ok")
    return {k for k, s in latest.items() if s == "ok" or not retry_failed}


class ResultsWriter:
    def __init__(self, run_dir: Path):
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


def merge(run_dirs: list[Path], out: Path) -> list[dict]:
    """Combine the runs' results into <out>/results.jsonl (last record per (case, approach) wins;
    relative output paths are rewritten relative to `out`). Returns the merged records."""
    out = Path(out).resolve()
    merged: dict[tuple[str, str], dict] = {}
    for d in run_dirs:
        d = Path(d).resolve()
        if not (d / RESULTS).is_file():
            raise FileNotFoundError(f"--merge {d}: no {RESULTS} in it")
        for r in read_records(d / RESULTS):
            for k in ("restored", "encoder", "pasted", "side_by_side"):
                if r.get(k):
                    r[k] = os.path.relpath(d / r[k], out)
            merged[(r["case"], r["approach"])] = r
    recs = sorted(merged.values(), key=lambda r: (r["case"], r["approach"]))
    body = "".join(json.dumps(r) + "\n" for r in recs).encode()
    atomic_write_bytes(out / RESULTS, body)
    return recs
