"""`personal`'s compiled step on faces64: seconds per step at batch B with R references, with and
without the perceptual term, interleaved (the step after the first, compile excluded).

    python benchmarks/personal_step.py --out benchmarks/results/cpu_personal_step.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def data_for(models, b: int, r: int, seed: int = 0) -> dict[str, np.ndarray]:
    res = models.resolution
    n, d = models.code_shape
    rng = np.random.default_rng(seed)
    return {
        "target": rng.uniform(-1, 1, (b, res, res, 3)).astype(np.float32),
        "visible": np.ones((b, res, res, 1), np.float32),
        "refs": rng.uniform(-1, 1, (b, r, res, res, 3)).astype(np.float32),
        "pivots": rng.normal(size=(b, r, n, d)).astype(np.float32),
        "valid": np.ones((b, r), np.float32),
        "pivot": rng.normal(size=(b, n, d)).astype(np.float32),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--refs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    import jax

    import occjax
    from occjax.personal import personal_config, tune

    models = occjax.load_models(bundle="faces64")
    rows = []
    for rnd in range(args.rounds):
        for b in args.batch:
            for pw in (0.0, 1.0):
                cfg = dataclasses.replace(personal_config(models), steps=args.steps, perceptual_weight=pw)  # fmt: skip
                data = data_for(models, b, args.refs)
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                st, _, first = tune(models, data, [cfg] * b)
                jax.block_until_ready(st.z)
                total = time.perf_counter() - t0
                per = (total - first) / (args.steps - 1)
                rows.append(
                    {"round": rnd, "batch": b, "refs": args.refs, "perceptual_weight": pw,
                     "first_step_s": round(first, 3), "s_per_step": round(per, 4),
                     "s_per_problem_step": round(per / b, 4), "load_avg_1min": load0}
                )  # fmt: skip
                print(rows[-1], flush=True)
    doc = {"what": __doc__.splitlines()[0], "device": str(jax.devices()[0]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
