"""Inversion speed and memory: compile time, median time per step, throughput, FLOPs, peak memory.

    python benchmarks/bench_invert.py --size ffhq256 --approach baseline --batch 1 --steps 5 --json out.json
    python benchmarks/bench_invert.py --size tiny --scaling 1,2,4,8 --json scaling.json

tiny = the 64 px fixture models (../shared; the demo's random model when absent); ffhq256 = seeded
random weights of the real shapes. Time per step is the median over `repeats` calls of `steps`
steps each, after a warm-up call that compiles (reported separately), with block_until_ready.
FLOPs per step come from XLA's cost analysis of one vectorised step; the floor is those FLOPs at
the best 3x3-conv throughput (forward + input gradient) that bench_kernels.py's code measures in
the same run at the same batch, and step / floor says how far the step is from it.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import env_meta, write_json


@dataclass(frozen=True)
class BenchConfig:
    size: str = "tiny"
    """Model: 'tiny' (64 px fixture models), 'ffhq256' (random weights, real shapes), 'faces64' (the built-in model)."""
    approach: str = "baseline"
    """Preset: enc, baseline, disc, prior, prior_disc."""
    batch: int = 1
    """Problems optimised at once."""
    steps: int = 5
    """Steps per timed call."""
    repeats: int = 3
    """Timed calls after the warm-up (compiling) call; the median per step is reported."""
    refs: int = 8
    """References per problem for the prior approaches."""
    devices: int = 1
    """Local devices to shard the batch over (XLA_FLAGS=--xla_force_host_platform_device_count=4 on CPU)."""
    precision: str = "highest"
    """Matmul/conv precision: 'highest' (float32), 'high' or 'default' (TF32 / bf16 passes on GPU)."""
    compute_dtype: str = "float32"
    """Networks' dtype inside the step: 'float32' or 'bfloat16' (codes and losses stay float32)."""
    scaling: str = ""
    """Comma-separated batch sizes for a scaling table (overrides --batch); stops at out-of-memory."""
    floor: bool = True
    """Also measure the floor: the step's FLOPs at the 3x3-conv throughput that bench_kernels.py's
    code reaches in this run at the step's batch (ffhq256: its networks' shapes; the 64 px models:
    VGG16's at 64 px), and report step / floor."""
    cache: bool = False
    """Use occjax's persistent compile cache (off by default: compile_s would time cache loads)."""
    json: Path | None = None
    """Write the results here (a list when --scaling is given)."""


def _models(size: str):
    import occjax
    from occjax.random_init import random_models

    if size == "ffhq256":
        return random_models("ffhq256", seed=0)
    if size == "faces64":
        return occjax.load_models(bundle="faces64")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "idinvert"
    files = {
        "generator": "styleganinv_tiny64_generator.pth",
        "encoder": "styleganinv_tiny64_encoder.pth",
        "perceptual": "vgg16_tiny_div8.pth",
        "discriminator": "styleganinv_tiny64_discriminator.pth",
    }
    if size == "tiny" and all((shared / f).is_file() for f in files.values()):
        try:
            return occjax.load_models(**{r: str(shared / f) for r, f in files.items()})
        except Exception:  # torch missing: fall back to the demo model of the same size
            pass
    return random_models("demo", seed=0)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device_memory_mb(dev) -> float | None:
    try:
        stats = dev.memory_stats()
    except Exception:
        return None
    return None if not stats else stats.get("peak_bytes_in_use", 0) / 2**20


def bench_one(models, cfg: BenchConfig, batch: int) -> dict:
    import jax
    import numpy as np

    import occjax
    from occjax import api, engine

    res = models.resolution
    rng = np.random.default_rng(0)
    targets = rng.uniform(-1, 1, (batch, 3, res, res)).astype(np.float32)
    masks = np.zeros((batch, 1, res, res), np.float32)
    masks[:, :, res // 3 : res // 2, res // 4 : 3 * res // 4] = 1
    icfg = occjax.preset(cfg.approach, steps=cfg.steps, compute_dtype=cfg.compute_dtype)
    cfgs = [icfg] * batch
    refs = rng.normal(size=(batch, cfg.refs, *models.code_shape)).astype(np.float32)
    valid = np.ones((batch, cfg.refs), np.float32)
    pct = np.full(batch, 10.0, np.float32)
    t0 = time.perf_counter()
    with jax.default_matmul_precision(cfg.precision):
        problems = api.validate(models, targets, masks, cfgs)
        problems.pct = pct
        prep = api.prepare(models, problems, refs, valid, devices=cfg.devices)
        setup_s = time.perf_counter() - t0
        st = prep.static
        if cfg.steps == 0:
            return {"approach": cfg.approach, "batch": batch, "note": "enc: no optimisation steps"}
        # FLOPs of one vectorised step (XLA's count)
        flat_st = dataclasses.replace(st, steps=1)
        lowered = jax.jit(engine._run_steps, static_argnames=("st",)).lower(
            prep.state, prep.variables, prep.data, prep.hyper, st=flat_st
        )
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", 0.0)) if cost else 0.0
        if prep.mesh is not None:  # sharded inputs: XLA counts one device's partition
            flops *= prep.mesh.size
        state = prep.state
        tc = time.perf_counter()
        state, _ = engine.run_steps(state, prep.variables, prep.data, prep.hyper, st, prep.mesh)
        jax.block_until_ready(state.codes)
        first_s = time.perf_counter() - tc
        times = []
        for _ in range(cfg.repeats):
            t = time.perf_counter()
            state, _ = engine.run_steps(state, prep.variables, prep.data, prep.hyper, st, prep.mesh)
            jax.block_until_ready(state.codes)
            times.append((time.perf_counter() - t) / cfg.steps)
    ms = statistics.median(times) * 1e3
    steady = ms * cfg.steps / 1e3
    dev = jax.local_devices()[0]
    return {
        "size": cfg.size,
        "approach": cfg.approach,
        "batch": batch,
        "devices": cfg.devices,
        "device": f"{dev.platform}:{dev.device_kind}",
        "precision": cfg.precision,
        "compute_dtype": cfg.compute_dtype,
        "steps_per_call": cfg.steps,
        "setup_s": round(setup_s, 3),
        "compile_s": round(max(first_s - steady, 0.0), 3),
        "first_call_s": round(first_s, 3),
        "ms_per_step_median": round(ms, 3),
        "ms_per_step_min": round(min(times) * 1e3, 3),  # the least disturbed call (shared hosts)
        "ms_per_step_all": [round(t * 1e3, 3) for t in times],
        "codes_steps_per_s": round(batch / (ms / 1e3), 3),
        "ms_per_code_step": round(ms / batch, 3),
        "flops_per_step": flops,
        "tflops_achieved": round(flops / (ms / 1e3) / 1e12, 4) if flops else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_device_mb": _device_memory_mb(dev),
        "refs": cfg.refs if st.use_prior else 0,
        "resolution": models.resolution,
    }


def floor(row: dict, cfg: BenchConfig) -> dict:
    """The step's floor on this machine: its FLOPs at the best forward + input-gradient throughput
    of the model's 3x3 convs at the same batch, measured now (bench_kernels.conv_rows)."""
    from bench_kernels import CONVS, FACES64_CONVS, conv_rows

    convs = CONVS if cfg.size == "ffhq256" else FACES64_CONVS  # the 64 px models: VGG at 64 px
    # 20+ calls: a batch-1 conv takes ~1-4 ms, and a min over 5 once came out 35 % low (09:35, idle)
    rows = conv_rows(convs, row["batch"], repeats=max(20, cfg.repeats), verbose=False)
    best = max(r["fwd_bwd_gflops"] for r in rows)
    floor_ms = row["flops_per_step"] / (best * 1e9) * 1e3
    return {
        "floor_conv_gflops": best,
        "floor_convs": rows,
        "floor_ms_per_step": round(floor_ms, 3),
        "step_over_floor": round(row["ms_per_step_median"] / floor_ms, 2) if floor_ms else None,
    }


def main(argv=None) -> int:
    cfg = tyro.cli(BenchConfig, args=argv)
    import occjax.cache

    occjax.cache.setup(enabled=cfg.cache)

    models = _models(cfg.size)
    batches = [int(b) for b in cfg.scaling.split(",")] if cfg.scaling else [cfg.batch]
    rows = []
    for b in batches:
        try:
            row = bench_one(models, cfg, b)
        except Exception as e:  # out of memory ends a scaling table
            if "RESOURCE_EXHAUSTED" in str(e) or isinstance(e, MemoryError):
                print(f"batch {b}: out of memory; stopping", file=sys.stderr)
                break
            raise
        if cfg.floor and row.get("flops_per_step"):
            row.update(floor(row, cfg))
        rows.append(row)
        print(
            f"{row['size']} {row['approach']} batch {b:3d}: {row['ms_per_step_median']:10.1f} ms/step "
            f"({row['ms_per_code_step']:.1f} ms per code-step), compile {row['compile_s']:.1f}s, "
            f"{(row['tflops_achieved'] or 0):.3f} TFLOP/s, peak RSS {row['peak_rss_mb']:.0f} MB"
        )
        if "floor_ms_per_step" in row:
            print(
                f"  {row['flops_per_step'] / 1e9:.2f} GFLOP per step; floor {row['floor_ms_per_step']:.1f} ms "
                f"at {row['floor_conv_gflops']:.0f} GFLOP/s (best 3x3 conv, forward + input gradient); "
                f"step / floor {row['step_over_floor']:.2f}"
            )
    meta = env_meta()
    for r in rows:
        r["env"] = meta
    write_json(cfg.json, rows if cfg.scaling else rows[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
