"""What this machine's XLA kernels can do: the ceiling an inversion step can approach.

    python benchmarks/bench_kernels.py --json benchmarks/results/cpu_kernels.json

Measures the achieved GFLOP/s of a large float32 matmul and of the 3x3 convolutions at the shapes of
the ffhq256 generator, VGG16 and encoder (forward, and input gradient as the step computes it), each
at batch 1 and a larger batch, the minimum over `repeats` timed calls after a compiling one. If batch
1 already runs the convolutions near the machine's peak, batching cannot raise the throughput per
code much: the step's FLOPs per code do not shrink with the batch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import env_meta, write_json

# (label, H=W, in, out): one 3x3 conv per resolution of the networks' heaviest layers
CONVS = (
    ("g/16 512->512", 16, 512, 512),
    ("g/32 512->512", 32, 512, 512),
    ("g/64 256->256", 64, 256, 256),
    ("g/128 128->128", 128, 128, 128),
    ("g/256 64->64", 256, 64, 64),
    ("vgg/32 512->512", 32, 512, 512),
    ("enc/16 1024->1024", 16, 1024, 1024),
)
# faces64's LPIPS-VGG16 at 64 px: the step's heaviest convolutions (bench_invert.py's floor)
FACES64_CONVS = (
    ("vgg64/64 64->64", 64, 64, 64),
    ("vgg64/32 128->128", 32, 128, 128),
    ("vgg64/16 256->256", 16, 256, 256),
    ("vgg64/8 512->512", 8, 512, 512),
)


@dataclass(frozen=True)
class KernelBenchConfig:
    batches: str = "1,8"
    """Comma-separated batch sizes for the convolutions."""
    matmul: int = 4096
    """Side of the square float32 matmul that measures the machine's dense peak."""
    repeats: int = 5
    """Timed calls after the compiling one (the minimum is reported)."""
    json: Path | None = None
    """Write the results here."""


def _time(f, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def conv_rows(convs, batch: int, repeats: int, verbose: bool = True) -> list[dict]:
    """Achieved GFLOP/s of each 3x3 conv of `convs` at `batch`: forward, and forward + input
    gradient (as the step computes it), the minimum time over `repeats` calls after a compiling
    one."""
    import jax
    import jax.numpy as jnp

    from occjax import layers as nn

    conv = jax.jit(lambda x, w: nn.conv2d(x, w, padding=1))
    # a loss that needs the forward output, as the step's do (the gradient of a plain sum would not)
    dgrad = jax.jit(
        lambda x, w: jax.grad(lambda x: jnp.sum(jnp.square(nn.conv2d(x, w, padding=1))))(x)
    )
    rows = []
    for label, h, cin, cout in convs:
        w = jnp.full((3, 3, cin, cout), 0.01, jnp.float32)
        x = jnp.ones((batch, h, h, cin), jnp.float32)
        flops = 2 * batch * h * h * 9 * cin * cout
        t_f = _time(conv, x, w, repeats=repeats)
        t_b = _time(dgrad, x, w, repeats=repeats)  # forward + input gradient
        row = {
            "op": label,
            "batch": batch,
            "fwd_ms": round(t_f * 1e3, 3),
            "fwd_gflops": round(flops / t_f / 1e9, 1),
            "fwd_bwd_ms": round(t_b * 1e3, 3),
            "fwd_bwd_gflops": round(2 * flops / t_b / 1e9, 1),
        }
        rows.append(row)
        if verbose:
            print(
                f"{label:18s} batch {batch:2d}: forward {row['fwd_gflops']:6.1f} GFLOP/s, "
                f"forward+input-grad {row['fwd_bwd_gflops']:6.1f} GFLOP/s"
            )
    return rows


def main(argv=None) -> int:
    cfg = tyro.cli(KernelBenchConfig, args=argv)
    import jax
    import jax.numpy as jnp

    rows = []
    n = cfg.matmul
    a = jnp.ones((n, n), jnp.float32)
    s = _time(jax.jit(lambda a: a @ a), a, repeats=cfg.repeats)
    peak = 2 * n**3 / s / 1e9
    rows.append(
        {"op": f"matmul {n}", "batch": 1, "ms": round(s * 1e3, 3), "gflops": round(peak, 1)}
    )
    print(f"matmul {n}x{n}: {peak:.0f} GFLOP/s")
    for b in (int(v) for v in cfg.batches.split(",")):
        rows += conv_rows(CONVS, b, cfg.repeats)
    dev = jax.local_devices()[0]
    out = {
        "device": f"{dev.platform}:{dev.device_kind}",
        "matmul_gflops": round(peak, 1),
        "rows": rows,
        "env": env_meta(),
    }
    write_json(cfg.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
