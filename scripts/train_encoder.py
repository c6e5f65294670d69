"""Train occjax's encoder for a generator without one (the built-in faces64 DCGAN), reproducibly.

    python scripts/train_encoder.py --generator /path/to/bundle --out runs/encoder
    python scripts/train_encoder.py --generator faces64 --train.steps 8000 --train.seed 0

Writes <out>/encoder.safetensors and <out>/encoder.json (config, wall time, held-out PSNRs per
evaluation). `scripts/build_faces64.py` puts the result into the built-in bundle.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from occjax.encoder_training import TrainConfig, save, train


@dataclass(frozen=True)
class TrainArgs:
    generator: str = "faces64"
    """Bundle folder (or built-in name) holding the generator."""
    out: Path = Path("runs/encoder")
    """Output folder."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training settings."""


def main(args: TrainArgs) -> dict:
    from occjax.models import load_network, resolve_bundle

    gen = load_network("generator", resolve_bundle(args.generator))
    module, variables, record = train(gen, args.train)
    save(args.out, module, variables, record)
    print(f"trained in {record['wall_s']:.0f}s; final held-out: {record['final']} -> {args.out}")
    return record


if __name__ == "__main__":
    main(tyro.cli(TrainArgs))
    sys.exit(0)
