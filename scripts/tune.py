"""Grid search of k, x0, discriminator weight and sigma (the paper's Table I) on a validation set.

    python scripts/tune.py --out runs/tune          # the built-in faces64, synthetic validation split
    python scripts/tune.py --dataset DATA/val --models BUNDLE --steps 100 --chunk-size 32

Every photo's whole grid runs as one vectorised batch (the model's `prior_disc` preset, or `prior`
for a model without a discriminator, whose grid has no discriminator weight). Writes
<out>/table.md, table.csv, table.json (metric mean/std per grid point, best first) and
chosen.json (the selected values).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from occjax.eval import tune


@dataclass(frozen=True)
class TuneArgs:
    out: Path = Path("runs/tune")
    """Output folder."""
    dataset: Path | None = None
    """Validation set in the paper layout (default: the synthetic identity set)."""
    models: str = "faces64"
    """Model: a converted bundle folder or a built-in name ("random" for small random networks)."""
    steps: int | None = None
    """Adam steps per inversion (default: the model's)."""
    reference_steps: int | None = None
    """Baseline steps that invert each reference photo (default: the model's)."""
    chunk_size: int | None = None
    """At most this many grid points per compiled call (memory budget)."""
    max_cases: int | None = None
    """Use at most this many validation cases."""
    synthetic_identities: int = 4
    """People of the synthetic validation split (no --dataset); one case per person and size."""
    synthetic_refs: int = 3
    """References per synthetic person."""
    synthetic_sizes: tuple[str, ...] = ("small", "medium", "large")
    """Occlusion sizes of the synthetic cases."""
    seed: int = 0
    """Seed of the synthetic set and the demo model."""
    grid: tune.Grid = field(default_factory=tune.Grid)
    """The grid's values."""


def main(args: TuneArgs) -> dict:
    from occjax.eval.lpips import LPIPS

    if args.models == "random":
        from occjax.random_init import random_models

        models = random_models("demo", args.seed)
    else:
        from occjax.models import load_models

        models = load_models(bundle=args.models)
    if args.dataset is not None:
        cases = tune.load_dataset(args.dataset, models.resolution, args.max_cases)
        if not cases:
            raise SystemExit(f"tune: no cases found under {args.dataset}")
    else:
        n = args.synthetic_identities
        if args.max_cases is not None:
            n = min(n, args.max_cases)
        cases = tune.synthetic_cases(
            models, n, args.synthetic_refs, args.seed, sizes=args.synthetic_sizes
        )
    metric = tune.selection_metric(cases)
    note = (
        "Local LPIPS inside the occlusion vs ground truth."
        if metric == "local_lpips"
        else "No ground truth: LPIPS of the VISIBLE pixels vs the occluded input (fidelity only)."
    )
    over = {
        k: v for k, v in (("steps", args.steps), ("reference_steps", args.reference_steps)) if v
    }
    base = models.preset("prior" if models.unsupported("prior_disc") else "prior_disc", **over)
    points = tune.grid_points(args.grid, base)
    configs = tune.grid_configs(args.grid, base)
    t0 = time.perf_counter()
    scores = tune.run_grid(models, cases, configs, LPIPS("vgg"), args.chunk_size)
    rows = tune.table_rows(points, scores, metric)
    note += f" {len(cases)} cases x {len(points)} grid points, {base.steps} steps, {base.approach}."
    chosen = tune.write_outputs(args.out, rows, metric, len(cases), note)
    print(tune.markdown(rows[:10], metric, note))
    print(f"chosen: {chosen['values']} ({time.perf_counter() - t0:.1f}s) -> {args.out}/chosen.json")
    return dataclasses.asdict(args) | {"chosen": chosen}


if __name__ == "__main__":
    main(tyro.cli(TuneArgs))
