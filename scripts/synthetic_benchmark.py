"""The method measured on faces: every approach, references of the same / another person, small /
medium / large hand occlusions, on generated people with known ground truth (the built-in model).

    python scripts/synthetic_benchmark.py --out runs/synthetic                    # faces64, test split
    python scripts/synthetic_benchmark.py --bench.split validation --bench.people 16
    python scripts/synthetic_benchmark.py --models DIR --out runs/synthetic_DIR

Writes <out>/table.md (condition x size x approach: local LPIPS, PSNR in the mask, identity
distance), results.json (every case) and examples.png. See `occjax.eval.synthetic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tyro

from occjax.eval.synthetic import SyntheticConfig, header, markdown_table, run_benchmark


@dataclass(frozen=True)
class BenchmarkArgs:
    out: Path = Path("runs/synthetic")
    """Output folder."""
    models: str = "faces64"
    """Model: a converted bundle folder or a built-in name ("random": small random networks)."""
    bench: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Benchmark settings."""


def main(args: BenchmarkArgs) -> dict:
    if args.models == "random":
        from occjax.random_init import random_models

        models = random_models("demo", 0)
    else:
        from occjax.models import load_models

        models = load_models(bundle=args.models)
    out = run_benchmark(models, args.bench, args.out)
    print(header(out) + markdown_table(out["summary"]))
    print(f"{out['time_s']:.0f}s -> {args.out}/table.md, {args.out}/examples.png")
    return out


if __name__ == "__main__":
    main(tyro.cli(BenchmarkArgs))
