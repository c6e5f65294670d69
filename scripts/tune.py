"""Grid search of k, x0, discriminator weight and sigma (the paper's Table I) on a validation set.

    python scripts/tune.py --out runs/tune                              # synthetic set, demo model
    python scripts/tune.py --dataset DATA/val --models BUNDLE --steps 100 --chunk-size 32

Every photo's whole grid runs as one vectorised batch. Writes <out>/table.md, table.csv,
table.json (metric mean/std per grid point, best first) and chosen.json (the selected values).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from occjax.config import preset
from occjax.eval import tune


@dataclass(frozen=True)
class TuneArgs:
    out: Path = Path("runs/tune")
    """Output folder."""
    dataset: Path | None = None
    """Validation set in the paper layout (default: the synthetic identity set)."""
    models: Path | None = None
    """Converted model bundle folder (default: the embedded random demo model)."""
    steps: int = 100
    """Adam steps per inversion."""
    reference_steps: int = 100
    """Baseline steps that invert each reference photo."""
    chunk_size: int | None = None
    """At most this many grid points per compiled call (memory budget)."""
    max_cases: int | None = None
    """Use at most this many validation cases."""
    synthetic_identities: int = 4
    """Cases of the synthetic set (no --dataset)."""
    synthetic_refs: int = 3
    """References per synthetic identity."""
    seed: int = 0
    """Seed of the synthetic set and the demo model."""
    grid: tune.Grid = field(default_factory=tune.Grid)
    """The grid's values."""


def main(args: TuneArgs) -> dict:
    from occjax.eval.lpips import LPIPS

    if args.models is not None:
        from occjax.models import load_models

        models = load_models(bundle=args.models)
    else:
        from occjax.random_init import random_models

        models = random_models("demo", args.seed)
    if args.dataset is not None:
        cases = tune.load_dataset(args.dataset, models.resolution, args.max_cases)
        if not cases:
            raise SystemExit(f"tune: no cases found under {args.dataset}")
    else:
        n = args.synthetic_identities
        if args.max_cases is not None:
            n = min(n, args.max_cases)
        cases = tune.synthetic_cases(models, n, args.synthetic_refs, args.seed)
    metric = tune.selection_metric(cases)
    note = (
        "Local LPIPS inside the occlusion vs ground truth."
        if metric == "local_lpips"
        else "No ground truth: LPIPS of the VISIBLE pixels vs the occluded input (fidelity only)."
    )
    base = preset("prior_disc", steps=args.steps, reference_steps=args.reference_steps)
    points = tune.grid_points(args.grid)
    configs = tune.grid_configs(args.grid, base)
    t0 = time.perf_counter()
    scores = tune.run_grid(models, cases, configs, LPIPS("vgg"), args.chunk_size)
    rows = tune.table_rows(points, scores, metric)
    note += f" {len(cases)} cases x {len(points)} grid points, {args.steps} steps."
    chosen = tune.write_outputs(args.out, rows, metric, len(cases), note)
    print(tune.markdown(rows[:10], metric, note))
    print(f"chosen: {chosen['values']} ({time.perf_counter() - t0:.1f}s) -> {args.out}/chosen.json")
    return dataclasses.asdict(args) | {"chosen": chosen}


if __name__ == "__main__":
    main(tyro.cli(TuneArgs))
