"""Synthetic identity benchmark: how much each approach recovers inside a synthetic occlusion.

    python scripts/synthetic_benchmark.py --out runs/synthetic            # the embedded demo model
    python scripts/synthetic_benchmark.py --models DIR --identities 32 --steps 100

Writes <out>/table.md, results.json and run_same/ run_other/ folders (results.jsonl + PNGs) that
`scripts/evaluate.py --runs <out>/run_same <out>/run_other` can report on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tyro

from occjax.eval.synthetic import SyntheticConfig, markdown_table, run_benchmark


@dataclass(frozen=True)
class BenchmarkArgs:
    out: Path = Path("runs/synthetic")
    """Output folder."""
    models: Path | None = None
    """Converted model bundle folder (default: the embedded random demo model)."""
    demo_seed: int = 0
    """Seed of the random demo model (when --models is not given)."""
    bench: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Benchmark settings."""


def main(args: BenchmarkArgs) -> dict:
    if args.models is not None:
        from occjax.models import load_models

        models = load_models(bundle=args.models)
    else:
        from occjax.random_init import random_models

        models = random_models("demo", args.demo_seed)
    out = run_benchmark(models, args.bench, args.out)
    print(markdown_table(out["summary"]))
    print(f"identities: {out['identity_source']}; {out['time_s']:.1f}s -> {args.out}/table.md")
    return out


if __name__ == "__main__":
    main(tyro.cli(BenchmarkArgs))
