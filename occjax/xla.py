"""XLA compile options for the programs users wait on (the inversion and tuning steps).

On CPU, XLA hands chains of convolutions and element-wise ops to YNNPACK as one fused subgraph
("__ynn_fusion"). For LPIPS-VGG's backward pass at 64 px that fusion is slow: a profile of the
faces64 step at batch 1 put ~half of its thread time in two fusions, each VGG block's three
input-gradient convolutions with their ReLU and max-pool gradients, running at ~17-60 GFLOP/s where
the same convolutions alone reach 100-190. With the fusion off, XLA runs each convolution by itself:
faces64's step is 1.7x faster at batch 1 and 1.4x at batch 8, ffhq256's and the 64 px fixture
models' steps are unchanged (benchmarks/NOTES.md, issue 27). The option is per program, not
process-wide, so anything else a user compiles keeps XLA's defaults.
"""

from __future__ import annotations

from typing import Any

import jax

# XLA:CPU's DebugOptions: an empty list of YNN fusion kinds turns the YNN fusion pass off
CPU_STEP_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def step_options() -> dict[str, Any] | None:
    """Compile options for a step program on the default backend (None: XLA's defaults)."""
    return dict(CPU_STEP_OPTIONS) if jax.default_backend() == "cpu" else None


def step_jit(f, **kw):
    """`jax.jit(f, **kw)` with `step_options()`."""
    return jax.jit(f, compiler_options=step_options(), **kw)
