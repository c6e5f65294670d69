"""Op counts of the compiled ffhq256 `baseline` step (one step, batch 1): what XLA runs, to compare
two trees' programs without timing them (timings on a shared CPU swing by 10-20 %).

    python benchmarks/hlo_ops.py --hlo /tmp/after.hlo --json benchmarks/results/hlo_ops.json

Counts convolutions, fusions, copies, transposes, dots and broadcasts in the optimised HLO text
(fused computations included) and, with --hlo, writes that text.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_meta, write_json  # noqa: E402

OPS = ("convolution", "fusion", "copy", "transpose", "dot", "broadcast", "reduce-window")


@dataclass(frozen=True)
class Args:
    hlo: Path | None = None
    """Write the optimised HLO text here."""
    json: Path | None = None


def main(args: Args) -> dict:
    import jax
    import numpy as np

    import occjax
    from occjax import api, engine
    from occjax.random_init import random_models

    models = random_models("ffhq256", seed=0)
    res, b = models.resolution, 1
    rng = np.random.default_rng(0)
    targets = rng.uniform(-1, 1, (b, 3, res, res)).astype(np.float32)
    masks = np.zeros((b, 1, res, res), np.float32)
    masks[:, :, res // 3 : res // 2, res // 4 : 3 * res // 4] = 1
    problems = api.validate(models, targets, masks, [occjax.preset("baseline", steps=1)] * b)
    problems.pct = np.full(b, 10.0, np.float32)
    refs = rng.normal(size=(b, 8, *models.code_shape)).astype(np.float32)
    prep = api.prepare(models, problems, refs, np.ones((b, 8), np.float32), devices=1)
    st = dataclasses.replace(prep.static, steps=1)
    run = jax.jit(engine._run_steps, static_argnames=("st",))
    txt = run.lower(prep.state, prep.variables, prep.data, prep.hyper, st=st).compile().as_text()
    if args.hlo:
        args.hlo.write_text(txt)
    found = collections.Counter(re.findall(r"= \S+ (\w[\w-]*)\(", txt))
    out = {"env": env_meta(), "ops": {k: found[k] for k in OPS}}
    print(out["ops"])
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
