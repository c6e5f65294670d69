"""The demo as a new user meets it: `python scripts/invert.py` from a fresh clone of this repo with
an empty occjax cache (cold), then the same command again (warm: compiled programs and reference
codes from the cache). Wall = the whole process, Python start and imports included; `timings` are
run.json's. The packages are the ones installed (pip's own install time is not part of it).

    python benchmarks/demo_cold_warm.py --out benchmarks/results/cpu_demo_cache_cold_warm.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _error_table(stdout: str) -> list[str]:
    """The demo's printed in-mask error table (approach, MSE, PSNR dB), one string per row."""
    lines = stdout.splitlines()
    start = next((i for i, ln in enumerate(lines) if "PSNR dB" in ln), None)
    if start is None:
        return []
    rows = []
    for ln in lines[start + 1 :]:
        if not ln.strip():
            break
        rows.append(" ".join(ln.split()))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", nargs="+", default=["cold", "warm"])
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="occjax_demo_"))
    clone = work / "occjax"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {**os.environ, "OCCJAX_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(clone)}
    runs = {}
    for name in args.runs:
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        cmd = [sys.executable, "scripts/invert.py", "--out", str(work / name), "--no-progress"]
        p = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(p.stdout + p.stderr)
        info = json.loads((work / name / "run.json").read_text())
        runs[name] = {
            "wall_s": round(wall, 2),
            "load_avg_start": " ".join(f"{x:.2f}" for x in load0),
            "load_avg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "timings": {k: round(v, 3) for k, v in info["timings"].items()},
            "psnr": _error_table(p.stdout),
        }
        print(name, runs[name], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()  # fmt: skip
    doc = {"what": __doc__.splitlines()[0], "commit": commit, "date_utc": time.strftime("%Y-%m-%d"), "runs": runs}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
