"""XLA compile options for the programs users wait on (the inversion and tuning steps).

On CPU, XLA hands chains of convolutions and element-wise ops to YNNPACK as one fused subgraph
("__ynn_fusion"). For LPIPS-VGG's backward pass at 64 px that fusion is slow: a profile of the
faces64 step at batch 1 put ~half of its thread time in two fusions, each one VGG block's three
input-gradient convolutions with the unit-norm, ReLU and max-pool gradients, running at ~17-60
GFLOP/s where the same convolutions alone reach 100-190. With the fusion off, XLA runs each
convolution by itself: faces64's step is 1.7x faster at batch 1 and 1.4x at batch 8.

Where it applies, and why only there (benchmarks/NOTES.md, issue 27):
- steps that run LPIPS-VGG (its five taps, unit-normalised; faces64's perceptual network). The
  steps with idinvert's VGG (ffhq256, the 64 px fixture models) gained nothing measurable, so they
  keep XLA's defaults;
- not with `batch_invariant=True`: without the fusion, XLA's convolutions give other last bits in a
  1-device and a 4-device process, and that mode promises the same bits in both;
- on CPU only, and per program: anything else a user compiles keeps XLA's defaults.
"""

from __future__ import annotations

from typing import Any

import jax

# XLA:CPU's DebugOptions: an empty list of YNN fusion kinds turns the YNN fusion pass off
CPU_STEP_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def step_options(perceptual: Any = None, invariant: bool = False) -> dict[str, Any] | None:
    """Compile options of a step whose perceptual term runs the Flax module `perceptual` (None: no
    perceptual term), on the default backend; None means XLA's defaults."""
    if invariant or jax.default_backend() != "cpu":
        return None
    if getattr(perceptual, "kind", None) != "lpips":
        return None
    return dict(CPU_STEP_OPTIONS)


def step_jit(f, perceptual: Any = None, invariant: bool = False, **kw):
    """`jax.jit(f, **kw)` with `step_options(perceptual, invariant)`."""
    return jax.jit(f, compiler_options=step_options(perceptual, invariant), **kw)
