"""Remove occlusions from face photos by GAN inversion (see `python scripts/invert.py --help`).

python scripts/invert.py                       # the embedded demo (random-weight model)
python scripts/invert.py --models models/ffhq256 --dataset ../shared/data/lfw_hand_samples
python scripts/invert.py --models models/ffhq256 --target p.png --mask m.png --refs a.png b.png
"""

from __future__ import annotations

import sys

import tyro

import occjax.cache
from occjax.cli import InvertCLI, main

if __name__ == "__main__":
    cfg = tyro.cli(InvertCLI)
    occjax.cache.setup(enabled=not cfg.no_cache)  # before anything compiles
    sys.exit(main(cfg))
