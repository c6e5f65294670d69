"""Where the codes start (InvertConfig.init: w_avg, the encoder, the best of N mapped samples) and
NVlabs projector's noise regularisation (noise_reg_weight), measured on synthetic occlusions; and
StyleGAN2's step time at 256 px beside idinvert ffhq256's, interleaved in one run.

    python benchmarks/stylegan2_init_noise.py --json benchmarks/results/stylegan2_init_noise.json

Random weights only: no real StyleGAN2 weights can be downloaded here. "stylegan2_64" is a seeded
random StyleGAN2 (occjax.random_init.random_stylegan2: NVlabs' initialisation, noise strengths 0.1
N(0, 1) so that the noise reaches the image); faces64 is the built-in (trained) DCGAN, whose code is
z (no w_avg, no noise: 'mapped' is the best of N random z, compared with its encoder's start).

Synthetic cases: a clean image is generated from a random z (the model's own sampling, truncation
included), a procedural hand (occjax.occlusion.starter_occluders) is pasted on its 256 px upsample
at a landmark of faces64's face template ("medium" size band), and the model restores it from the
visible pixels. Per setting: the masked reconstruction loss at the start and after the steps (the
objective's visible-pixel MSE), the in-mask PSNR of the restoration against the clean image (RGB in
[-1, 1] clipped, peak-to-peak 2), the start's cost (seconds of a 0-step call: choosing the start
and the final evaluation) and ms per step (a timed call of `steps` steps minus the 0-step call, after
a warm-up call that compiles). os.getloadavg() is recorded before and after each part (the CPU is
shared).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from _common import env_meta, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Config:
    targets: int = 4
    """Synthetic cases per model (one batch)."""
    steps: int = 100
    """Adam steps per StyleGAN2 inversion (the presets' 100)."""
    faces64_steps: int = 40
    """Adam steps per faces64 inversion (its step costs ~4x StyleGAN2 64 px's: LPIPS)."""
    samples: tuple[int, ...] = (16, 64)
    """init_samples of the 'mapped' settings."""
    noise_weight: float = 1e5
    """noise_reg_weight of the noise settings (NVlabs projector's regularize_noise_weight)."""
    noise_lr: float = 0.1
    """Learning rate of the second w_avg pair without / with noise (NVlabs projector's initial
    learning rate; the presets' 0.01 moves the noise maps little in 100 steps)."""
    faces64: bool = True
    """Also run the built-in faces64 (DCGAN: encoder vs mapped)."""
    speed256: bool = True
    """Also time StyleGAN2 at 256 px beside idinvert ffhq256 (random weights, batch 1)."""
    speed_steps: int = 2
    """Steps per timed call of the 256 px comparison."""
    speed_rounds: int = 2
    """Interleaved rounds of the 256 px comparison (the median is reported)."""
    seed: int = 0
    json: Path | None = None


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def face_landmarks_256() -> np.ndarray:
    """faces64's mean face layout (its bundle's face_template) in 256 px coordinates: where the
    hands are placed on any model's images (random-weight images have no face to detect)."""
    from occjax.models import resolve_bundle
    from occjax.params import read_bundle_doc

    doc = read_bundle_doc(resolve_bundle("faces64"))
    return np.asarray(doc["face_template"], np.float64) * 256


def synthetic_cases(models, n: int, seed: int):
    """(targets [n,3,H,W], masks [n,1,H,W], clean [n,3,H,W]): generated images with a hand pasted."""
    from PIL import Image

    from occjax.io import resize_rgb, to_uint8
    from occjax.occlusion import occlude_from_pool, starter_occluders

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, models.z_dim)).astype(np.float32)
    clean = np.clip(np.asarray(models.generate(z)), -1, 1)
    pool = [o for o in starter_occluders(0, hands=6) if o.kind == "hand"]
    lm, res = face_landmarks_256(), models.resolution
    targets, masks = [], []
    for x in clean:
        up = np.asarray(Image.fromarray(to_uint8(x)).resize((256, 256), Image.LANCZOS))
        o = occlude_from_pool(up, lm, pool, rng, "medium", tries=10)
        if o is None:
            raise RuntimeError("could not place a medium hand")
        m = np.asarray(Image.fromarray(o.mask).resize((res, res), Image.BILINEAR)) > 127
        m = m.astype(np.float32)[None]
        t = resize_rgb(Image.fromarray(o.image), res)
        targets.append(np.where(m > 0, t, x).astype(np.float32))
        masks.append(m)
    return np.stack(targets), np.stack(masks), clean


def in_mask_psnr(images, clean, masks) -> np.ndarray:
    """PSNR over the occluded pixels (all channels), images in [-1, 1] (clipped): [N]."""
    a, b = np.clip(images, -1, 1), np.clip(clean, -1, 1)
    se = np.square(a - b).mean(axis=1)  # [N, H, W]
    m = masks[:, 0] > 0.5
    mse = (se * m).sum(axis=(1, 2)) / np.maximum(m.sum(axis=(1, 2)), 1)
    return 10 * np.log10(4.0 / np.maximum(mse, 1e-12))


def run_setting(models, name: str, cfg, targets, masks, clean) -> dict:
    """One setting on every case, through occjax.api's steps: prepare (the start; timed a second
    time, warm), the start's losses and images, one step (compiles), the other steps (timed)."""
    import jax

    from occjax import api, engine

    problems = api.validate(models, targets, masks, cfg)
    refs = np.zeros((len(targets), 1, *models.code_shape), np.float32)
    valid = np.zeros((len(targets), 1), np.float32)
    api.prepare(models, problems, refs, valid)  # compiles what choosing the start needs
    t = time.perf_counter()
    prep = api.prepare(models, problems, refs, valid)
    jax.block_until_ready(prep.state.codes)
    start_s = time.perf_counter() - t
    start = api.collect(models, prep, prep.state, [], valid, False)
    state, tr0 = engine.run_steps(
        prep.state, prep.variables, prep.data, prep.hyper, dataclasses.replace(prep.static, steps=1)
    )
    jax.block_until_ready(state.codes)
    t = time.perf_counter()
    rest = dataclasses.replace(prep.static, steps=cfg.steps - 1)
    state, tr = engine.run_steps(state, prep.variables, prep.data, prep.hyper, rest)
    jax.block_until_ready(state.codes)
    ms = 1000 * (time.perf_counter() - t) / max(cfg.steps - 1, 1)
    res = api.collect(models, prep, state, [], valid, False)
    psnr0 = in_mask_psnr(start.images, clean, masks)
    psnr = in_mask_psnr(res.images, clean, masks)
    w_avg_wins = None
    if cfg.init == "mapped":
        from occjax.starts import mean_code

        mean = mean_code(models)
        if mean is not None:
            w_avg_wins = int(np.all(res.init_codes == mean, axis=(1, 2)).sum())
    row = {
        "setting": name,
        "init": cfg.init,
        "init_samples": cfg.init_samples if cfg.init == "mapped" else None,
        "init_psi": cfg.init_psi if cfg.init == "mapped" else None,
        "lr": cfg.lr,
        "noise_reg_weight": cfg.noise_reg_weight,
        "start_masked_loss": float(start.final_losses["reconstruction"].mean()),
        "final_masked_loss": float(res.final_losses["reconstruction"].mean()),
        "final_masked_loss_per_case": [
            round(float(v), 5) for v in res.final_losses["reconstruction"]
        ],
        "start_in_mask_psnr_db": float(psnr0.mean()),
        "in_mask_psnr_db": float(psnr.mean()),
        "in_mask_psnr_per_case": [round(float(v), 3) for v in psnr],
        "start_s": round(start_s, 3),
        "ms_per_step": round(ms, 2),
        "ms_per_code_step": round(ms / len(targets), 2),
        "w_avg_chosen": w_avg_wins,
    }
    if "noise_reg" in res.final_losses:
        row["final_noise_reg"] = float(res.final_losses["noise_reg"].mean())
    print(
        f"  {name:22s} loss {row['start_masked_loss']:.4f} -> {row['final_masked_loss']:.4f}  "
        f"PSNR {row['start_in_mask_psnr_db']:.2f} -> {row['in_mask_psnr_db']:.2f} dB  "
        f"start {start_s:.2f} s  {row['ms_per_step']:.1f} ms/step",
        flush=True,
    )
    return row


def quality(models, settings: dict, cfg: Config) -> dict:
    targets, masks, clean = synthetic_cases(models, cfg.targets, cfg.seed)
    pct = float(masks.mean() * 100)
    out = {"model": models.name, "cases": cfg.targets, "occluded_pct_image_mean": round(pct, 2),
           "load_before": load(), "rows": []}  # fmt: skip
    for name, c in settings.items():
        out["rows"].append(run_setting(models, name, c, targets, masks, clean))
    out["load_after"] = load()
    return out


def speed_256(cfg: Config) -> dict:
    """ms per step at batch 1, StyleGAN2 256 px (config-f shapes) and idinvert ffhq256, the
    settings interleaved round by round; the compiled programs warmed up first."""
    import jax

    from occjax import api, engine
    from occjax.random_init import random_models

    sg2 = random_models("stylegan2_256")
    ffhq = random_models("ffhq256", roles=("generator", "encoder", "perceptual"))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32)
    mask = np.zeros((1, 1, 256, 256), np.float32)
    mask[..., 100:180, 60:200] = 1
    n = cfg.speed_steps
    settings = {
        "stylegan2_256 baseline (reconstruction only)": (sg2, sg2.preset("baseline", steps=n)),
        "stylegan2_256 baseline + noise_reg": (
            sg2, sg2.preset("baseline", steps=n, noise_reg_weight=cfg.noise_weight)),
        "ffhq256 baseline (+ VGG perceptual + encoder reg)": (ffhq, ffhq.preset("baseline", steps=n)),
        "ffhq256 reconstruction only": (
            ffhq, ffhq.preset("baseline", steps=n, perceptual_weight=0.0, encoder_reg_weight=0.0)),
    }  # fmt: skip
    preps = {}
    for name, (m, c) in settings.items():
        p = api.validate(m, x, mask, c)
        refs, valid = np.zeros((1, 1, *m.code_shape), np.float32), np.zeros((1, 1), np.float32)
        prep = api.prepare(m, p, refs, valid)
        t = time.perf_counter()
        state, _ = engine.run_steps(prep.state, prep.variables, prep.data, prep.hyper, prep.static)
        jax.block_until_ready(state.codes)
        print(f"  warm-up {name}: {time.perf_counter() - t:.1f} s", flush=True)
        preps[name] = (prep, state)
    times: dict[str, list[float]] = {k: [] for k in settings}
    loads = [load()]
    for _ in range(cfg.speed_rounds):
        for name, (prep, state) in preps.items():
            t = time.perf_counter()
            state, _ = engine.run_steps(state, prep.variables, prep.data, prep.hyper, prep.static)
            jax.block_until_ready(state.codes)
            times[name].append(round(1000 * (time.perf_counter() - t) / n, 1))
            preps[name] = (prep, state)
        loads.append(load())
        print(f"  round: { {k: v[-1] for k, v in times.items()} } load {loads[-1]}", flush=True)
    return {
        "batch": 1,
        "steps_per_call": n,
        "ms_per_step_median": {k: statistics.median(v) for k, v in times.items()},
        "ms_per_step_all": times,
        "load_per_round": loads,
        "generator_parameters_m": {"stylegan2_256": _params(sg2), "ffhq256": _params(ffhq)},
        "synthesis_forward_gflop": {"stylegan2_256": _gflop(sg2), "ffhq256": _gflop(ffhq)},
    }


def _gflop(models) -> float:
    """XLA's FLOP count of one synthesis forward pass (batch 1)."""
    import jax
    import jax.numpy as jnp

    g = models.net("generator")
    code = jnp.zeros((1, *models.code_shape), jnp.float32)
    f = jax.jit(lambda v, c: g.module.apply(v, c, method="synthesis"))
    cost = f.lower(g.variables, code).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return round(float(cost.get("flops", 0.0)) / 1e9, 2)


def _params(models) -> float:
    import jax

    leaves = jax.tree.leaves(models.net("generator").variables.get("params", {}))
    return round(sum(int(np.prod(a.shape)) for a in leaves) / 1e6, 2)


def main(cfg: Config) -> dict:
    import occjax
    from occjax.random_init import random_models

    t0 = time.perf_counter()
    rec = {
        "note": (
            "random weights only: no real StyleGAN2 weights can be downloaded here, so the StyleGAN2 "
            "numbers say how the options behave on a random-weight generator, not on faces; "
            "faces64 is a trained DCGAN (z codes, no noise inputs)"
        ),
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "env": env_meta(),
        "command": " ".join(["python", *sys.argv]),
    }
    sg2 = random_models("stylegan2_64", seed=0)
    base = sg2.preset("baseline", steps=cfg.steps)
    big = max(cfg.samples)
    settings = {"w_avg": dataclasses.replace(base, init="w_avg")}
    for n in cfg.samples:
        settings[f"mapped{n}"] = dataclasses.replace(base, init="mapped", init_samples=n)
    settings[f"mapped{big} psi0.7"] = dataclasses.replace(settings[f"mapped{big}"], init_psi=0.7)
    settings["w_avg + noise_reg"] = dataclasses.replace(
        settings["w_avg"], noise_reg_weight=cfg.noise_weight
    )
    settings[f"w_avg lr{cfg.noise_lr}"] = dataclasses.replace(settings["w_avg"], lr=cfg.noise_lr)
    settings[f"w_avg lr{cfg.noise_lr} + noise_reg"] = dataclasses.replace(
        settings["w_avg + noise_reg"], lr=cfg.noise_lr
    )
    print(f"stylegan2_64 (random weights), {cfg.targets} cases, {cfg.steps} steps, lr {base.lr}")
    rec["stylegan2_64"] = quality(sg2, settings, cfg)
    rec["stylegan2_64"]["lr"], rec["stylegan2_64"]["steps"] = base.lr, base.steps
    if cfg.faces64:
        f = occjax.load_models(bundle="faces64")
        fb = f.preset("baseline", steps=cfg.faces64_steps)
        fs = {"encoder": dataclasses.replace(fb, init="encoder")}
        for n in cfg.samples:
            fs[f"mapped{n}"] = dataclasses.replace(fb, init="mapped", init_samples=n)
        print(f"faces64 (DCGAN), {cfg.targets} cases, {fb.steps} steps, lr {fb.lr}")
        rec["faces64"] = quality(f, fs, cfg)
        rec["faces64"]["lr"], rec["faces64"]["steps"] = fb.lr, fb.steps
        try:
            occjax.invert(f, np.zeros((1, 3, 64, 64), np.float32), None,
                          config=f.preset("baseline", steps=1, noise_reg_weight=1.0))  # fmt: skip
        except ValueError as e:
            rec["faces64"]["noise_reg"] = f"not applicable: {e}"
    if cfg.speed256:
        print("256 px, batch 1, interleaved")
        rec["speed_256"] = speed_256(cfg)
    rec["total_s"] = round(time.perf_counter() - t0, 1)
    write_json(cfg.json, rec)
    return rec


if __name__ == "__main__":
    main(tyro.cli(Config))
