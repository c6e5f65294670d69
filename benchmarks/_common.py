"""What every benchmark records beside its numbers, and how it writes them."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import occjax.cache

# every benchmark compiles through occjax's persistent compile cache (~/.cache/occjax; importing
# this module comes before anything compiles); bench_invert.py turns it off again unless --cache,
# so that its compile_s times compiling
occjax.cache.setup()


def env_meta() -> dict:
    """The software and machine a result came from."""
    import jax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_json(path: Path | None, obj) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, default=str))
