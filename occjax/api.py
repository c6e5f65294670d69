"""`occjax.invert`: the public inversion call (inputs, references, devices, chunks, progress).

    cfg = occjax.preset("prior")
    res = occjax.invert(models, targets, masks, references, config=cfg, record=True)
    res.codes [B, L, w_dim]; res.images [B, 3, H, W]; res.trace.codes [steps, B, L, w_dim];
    res.trace.losses {term: [steps, B]} (evaluated before each step's update)

Inputs are NCHW float32 in [-1, 1] at the model's resolution; masks [B, 1, H, W] with 1 = occluded.
`references` is a list of B entries, each None, reference photos [R_b, 3, H, W] (inverted once with
the `baseline` preset and cached on disk when `reference_cache` is given) or precomputed codes
[R_b, L, w_dim]. `config` is one InvertConfig or a list of B (one per problem: a hyper-parameter grid
runs as one batch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from occjax import engine, nn
from occjax.config import InvertConfig, preset
from occjax.params import atomic_write_bytes


@dataclass
class Trace:
    codes: np.ndarray | None  # [steps, B, L, D], the code after each step (record=True)
    losses: dict[str, np.ndarray]  # term -> [steps, B], before each step's update
    grad_norm: np.ndarray  # [steps, B]


@dataclass
class InvertResult:
    codes: np.ndarray  # [B, L, D] after the last step
    images: np.ndarray  # [B, 3, H, W] in (-1, 1)
    init_codes: np.ndarray  # [B, L, D], the encoder's codes
    final_losses: dict[str, np.ndarray]  # term -> [B], at the final codes
    flagged: (
        np.ndarray
    )  # [B] bool: loss or gradient turned non-finite (code frozen at its last finite value)
    occluded_pct: np.ndarray  # [B], as the configs measure it
    n_refs: np.ndarray  # [B]
    trace: Trace | None = None
    timings: dict[str, float] = field(default_factory=dict)


def occluded_percentage(mask: np.ndarray, measure: str) -> float:
    from occjax.occlusion.measure import occluded_percentage as measure_fn

    return measure_fn(np.asarray(mask) > 0.5, measure)


def _as_images(x, what: str, res: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{what}: expected NCHW images [N, 3, H, W] in [-1, 1], got shape {x.shape}"
        )
    if x.shape[2:] != (res, res):
        raise ValueError(
            f"{what}: images are {x.shape[2]}x{x.shape[3]} but the generator makes {res}x{res}; "
            "resize them first (occjax.io.load_image does)"
        )
    return x


def _as_masks(masks, b: int, res: int) -> np.ndarray:
    if masks is None:
        return np.zeros((b, 1, res, res), np.float32)
    m = np.asarray(masks, np.float32)
    if m.ndim == 3:
        m = m[:, None]
    if m.shape != (b, 1, res, res):
        raise ValueError(f"masks: expected [{b}, 1, {res}, {res}] (1 = occluded), got {m.shape}")
    return (m > 0.5).astype(np.float32)


def _configs(config, b: int) -> list[InvertConfig]:
    if config is None:
        config = preset("baseline")
    if isinstance(config, InvertConfig):
        return [config] * b
    cfgs = list(config)
    if len(cfgs) != b:
        raise ValueError(f"config: got {len(cfgs)} configs for {b} problems")
    return cfgs


def _device_list(devices) -> list:
    if devices is None:
        return jax.local_devices()
    if isinstance(devices, int):
        return jax.local_devices()[:devices]
    return list(devices)


def _shard(tree, mesh: Mesh | None, batch_axis: bool):
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    spec = P("batch") if batch_axis else P()
    return jax.device_put(tree, NamedSharding(mesh, spec))


def _pad_batch(tree, b: int, to: int):
    """Pad the leading axis from b to `to` by repeating the first problem (results are dropped)."""
    if to == b:
        return tree
    return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[:1], to - b, axis=0)]), tree)


def _call_sizes(steps: int, progress: bool) -> list[int]:
    if steps == 0:
        return []
    if not progress:
        return [steps]
    per = max(1, steps // 10)
    return [per] * (steps // per) + ([steps % per] if steps % per else [])


# ---- reference codes -----------------------------------------------------------------------------


def reference_key(image: np.ndarray, models_id: str, cfg: InvertConfig) -> str:
    settings = json.dumps(asdict(cfg), sort_keys=True)
    h = hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes())
    h.update(models_id.encode())
    h.update(settings.encode())
    return h.hexdigest()[:32]


def invert_references(
    models,
    images: np.ndarray,
    steps: int = 100,
    cache: str | Path | None = None,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Codes [N, L, D] of reference photos [N, 3, H, W], inverted with the `baseline` preset.

    With `cache`, each code is stored as <cache>/<key>.npy, key = sha256(image content, model
    weights, settings): re-runs and references shared between targets cost nothing.
    Returns (codes, number of cache hits).
    """
    from occjax.models import models_hash

    cfg = preset("baseline", steps=steps)
    images = _as_images(images, "references", models.resolution)
    mid = models_hash(models)
    keys = [reference_key(im, mid, cfg) for im in images]
    out: dict[str, np.ndarray] = {}
    cache = Path(cache) if cache is not None else None
    if cache is not None:
        for k in set(keys):
            f = cache / f"{k}.npy"
            if f.is_file():
                out[k] = np.load(f, allow_pickle=False)
    hits = sum(k in out for k in keys)
    todo = [i for i, k in enumerate(keys) if k not in out and keys.index(k) == i]
    if todo:
        res = invert(
            models,
            images[todo],
            config=cfg,
            chunk_size=chunk_size,
            devices=devices,
            progress=progress,
        )
        for i, code in zip(todo, res.codes):
            out[keys[i]] = code
            if cache is not None:
                buf = io.BytesIO()
                np.save(buf, code)
                atomic_write_bytes(cache / f"{keys[i]}.npy", buf.getvalue())
    return np.stack([out[k] for k in keys]), hits


def _reference_codes(models, references, cfgs, chunk_size, devices, cache, progress):
    b = len(cfgs)
    g = models.net("generator").spec
    shape = (g.num_layers, g.w_dim)
    if references is None or not any(c.uses_prior for c in cfgs):
        return np.zeros((b, 1, *shape), np.float32), np.zeros((b, 1), np.float32)
    if len(references) != b:
        raise ValueError(
            f"references: expected a list of {b} entries (one per target), got {len(references)}"
        )
    codes: list[np.ndarray | None] = [None] * b
    photos, owners = [], []
    for i, r in enumerate(references):
        if r is None or len(r) == 0:
            codes[i] = np.zeros((0, *shape), np.float32)
            continue
        r = np.asarray(r, np.float32)
        if r.ndim == 3 and r.shape[1:] == shape:
            codes[i] = r
        elif r.ndim == 4:
            photos.append(_as_images(r, f"references[{i}]", g.resolution))
            owners.append(i)
        else:
            raise ValueError(
                f"references[{i}]: expected photos [R, 3, H, W] or codes [R, {shape[0]}, {shape[1]}], got {r.shape}"
            )
    if photos:
        steps = max(c.reference_steps for c in cfgs)
        allc, _ = invert_references(
            models, np.concatenate(photos), steps, cache, chunk_size, devices, progress
        )
        start = 0
        for i, ph in zip(owners, photos):
            codes[i] = allc[start : start + len(ph)]
            start += len(ph)
    r_max = max(1, max(len(c) for c in codes))
    padded = np.zeros((b, r_max, *shape), np.float32)
    valid = np.zeros((b, r_max), np.float32)
    for i, c in enumerate(codes):
        padded[i, : len(c)] = c
        valid[i, : len(c)] = 1
    return padded, valid


@dataclass
class Prepared:
    """Device-ready inputs of one compiled batch (padded to a multiple of the devices, sharded)."""

    state: tuple  # (codes, adam m, adam v, step, alive)
    params: dict
    data: dict
    hyper: dict
    static: engine.Static
    init_codes: np.ndarray  # [B, L, D], unpadded
    mesh: Mesh | None = None


def prepare(
    models, targets, masks, refs, valid, pct, cfgs, record, init_codes, devices, batch_invariant
) -> Prepared:
    """Encoder initialisation, target features (once, not every step), padding and sharding."""
    b = targets.shape[0]
    steps = cfgs[0].steps
    batch_invariant = bool(batch_invariant)
    st = engine.static_for(models, cfgs, record, steps, batch_invariant)
    devs = _device_list(devices)
    n_dev = min(len(devs), b)
    mesh = Mesh(np.array(devs[:n_dev]), ("batch",)) if n_dev > 1 else None
    bp = -(-b // n_dev) * n_dev
    x = nn.nchw_to_nhwc(jnp.asarray(targets))
    vis = nn.nchw_to_nhwc(jnp.asarray(1.0 - masks))
    if init_codes is None:
        enc = models.net("encoder")
        z0 = np.asarray(engine.encode_nhwc(enc.params, x, enc.spec, batch_invariant))
    else:
        z0 = np.asarray(init_codes, np.float32)
    data = {"target": np.asarray(x), "visible": np.asarray(vis), "occluded_pct": pct}
    if st.use_perceptual:
        data["feat_target"] = np.asarray(
            engine.target_features(
                models.net("perceptual").params, x, vis, st.vgg, st.mask_mode, batch_invariant
            )
        )
    if st.use_prior:
        data["refs"], data["ref_valid"] = refs, valid
    hyper = engine.hyper_from_configs(cfgs)
    data, hyper, z0p = (_pad_batch(t, b, bp) for t in (data, hyper, z0))
    data, hyper = _shard(data, mesh, True), _shard(hyper, mesh, True)
    params = _shard(engine.params_for(models, st), mesh, False)
    state = engine.init_state(_shard(jnp.asarray(z0p), mesh, True))
    if mesh is not None:
        state = (*state[:4], _shard(np.ones(bp, bool), mesh, True))
    return Prepared(state, params, data, hyper, st, z0, mesh)


# ---- the call ------------------------------------------------------------------------------------


def invert(
    models,
    targets,
    masks=None,
    references: Sequence | None = None,
    config: InvertConfig | Sequence[InvertConfig] | None = None,
    record: bool = False,
    *,
    init_codes=None,
    devices=None,
    chunk_size: int | None = None,
    reference_cache: str | Path | None = None,
    progress: bool | Callable[[int], None] = False,
    batch_invariant: bool = False,
) -> InvertResult:
    """Invert B targets at once (see the module docstring). `devices`: None = every local device
    (the batch is sharded over them), an int, or a list; `chunk_size`: at most this many problems
    per compiled call (memory budget); `progress`: a tqdm bar over steps, or a callback(steps done);
    `batch_invariant`: solve the problems one at a time inside the compiled step, so each result is
    bit-identical to solving it alone (slower: ~2x per step on CPU, and it serialises the batch on
    accelerators); off by default, when results equal solving alone up to float rounding, which
    Adam amplifies to ~1e-3 over tens of steps."""
    t0 = time.perf_counter()
    res = models.resolution
    targets = _as_images(targets, "targets", res)
    b = targets.shape[0]
    cfgs = _configs(config, b)
    masks = _as_masks(masks, b, res)
    pct = np.asarray(
        [occluded_percentage(m[0], c.occlusion_measure) for m, c in zip(masks, cfgs)], np.float32
    )
    refs, valid = _reference_codes(
        models, references, cfgs, chunk_size, devices, reference_cache, bool(progress)
    )
    t_refs = time.perf_counter() - t0
    if chunk_size is not None and b > chunk_size:
        parts = [
            invert(
                models,
                targets[s : s + chunk_size],
                masks[s : s + chunk_size],
                [refs[i][valid[i] > 0] for i in range(s, min(b, s + chunk_size))]
                if any(c.uses_prior for c in cfgs)
                else None,
                cfgs[s : s + chunk_size],
                record,
                init_codes=None
                if init_codes is None
                else np.asarray(init_codes)[s : s + chunk_size],
                devices=devices,
                progress=progress,
                batch_invariant=batch_invariant,
            )
            for s in range(0, b, chunk_size)
        ]
        return _concat(parts, pct, valid.sum(1))
    prep = prepare(
        models, targets, masks, refs, valid, pct, cfgs, record, init_codes, devices, batch_invariant
    )
    state, params, data, hyper, st, z0 = (
        prep.state,
        prep.params,
        prep.data,
        prep.hyper,
        prep.static,
        prep.init_codes,
    )
    steps, batch_invariant = st.steps, st.batch_invariant
    t1 = time.perf_counter()
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        names = "+".join(dict.fromkeys(c.approach for c in cfgs))
        bar = tqdm(total=steps, desc=f"invert {names} x{b}", unit="step", leave=False)
    traces, done, compile_s = [], 0, None
    for n in _call_sizes(steps, bool(progress)):
        tc = time.perf_counter()
        state, tr = engine.run_steps(
            state, params, data, hyper, dataclasses.replace(st, steps=n), prep.mesh
        )
        if compile_s is None:
            jax.block_until_ready(state[0])
            compile_s = time.perf_counter() - tc
        traces.append(tr)
        done += n
        if bar is not None:
            bar.update(n)
        elif callable(progress):
            progress(done)
    if bar is not None:
        bar.close()
    z = state[0]
    if st.compute_dtype != "float32":  # final losses and images in float32, whatever the step used
        st = dataclasses.replace(st, compute_dtype="float32")
        params = _shard(engine.params_for(models, st), prep.mesh, False)
    final = engine.evaluate(z, params, data, hyper, dataclasses.replace(st, record=False, steps=0))
    images = engine.synthesize_nhwc(params["g"], z, st.gen, batch_invariant)
    jax.block_until_ready(images)
    t2 = time.perf_counter()
    trace = None
    if traces:
        cat = jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *traces)
        trace = Trace(
            codes=cat["codes"][:, :b] if record else None,
            losses={k: v[:, :b] for k, v in cat["losses"].items()},
            grad_norm=cat["grad_norm"][:, :b],
        )
    return InvertResult(
        codes=np.asarray(z)[:b],
        images=np.asarray(nn.nhwc_to_nchw(images))[:b],
        init_codes=np.asarray(z0)[:b],
        final_losses={k: np.asarray(v)[:b] for k, v in final.items()},
        flagged=~np.asarray(state[4])[:b],
        occluded_pct=pct,
        n_refs=valid.sum(1).astype(np.int32),
        trace=trace if record or trace is not None else None,
        timings={
            "references_s": t_refs,
            "first_call_s": compile_s or 0.0,
            "optimise_s": t2 - t1,
            "total_s": time.perf_counter() - t0,
        },
    )


def _concat(parts: list[InvertResult], pct, n_refs) -> InvertResult:
    def cat(get):
        return np.concatenate([get(p) for p in parts])

    trace = None
    if parts[0].trace is not None:
        t0 = parts[0].trace
        trace = Trace(
            codes=None
            if t0.codes is None
            else np.concatenate([p.trace.codes for p in parts], axis=1),
            losses={
                k: np.concatenate([p.trace.losses[k] for p in parts], axis=1) for k in t0.losses
            },
            grad_norm=np.concatenate([p.trace.grad_norm for p in parts], axis=1),
        )
    return InvertResult(
        codes=cat(lambda p: p.codes),
        images=cat(lambda p: p.images),
        init_codes=cat(lambda p: p.init_codes),
        final_losses={k: cat(lambda p, k=k: p.final_losses[k]) for k in parts[0].final_losses},
        flagged=cat(lambda p: p.flagged),
        occluded_pct=pct,
        n_refs=np.asarray(n_refs, np.int32),
        trace=trace,
        timings={k: sum(p.timings.get(k, 0.0) for p in parts) for k in parts[0].timings},
    )
