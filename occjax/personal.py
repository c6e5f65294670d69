"""Personalised restoration: the references teach the generator the person.

Pivotal tuning (PTI, Roich et al. 2021) with a reference set (MyStyle, Nitzan et al. 2022): each
problem b gets its own copy theta_b of the generator's parameters, tuned jointly with the target's
code z_b on
  - its references, each at its pivot (its code inverted by the frozen model's `baseline`), and
  - the target's visible pixels, at z_b (initialised by the frozen model's `baseline` on the target),
with a regulariser that keeps theta_b a face generator (a relative L2 distance to the original
weights, `anchor_weight`, and/or PTI's locality term on random codes, `locality_weight`). The
restored image is G_{theta_b}(z_b).

Vectorised like the engine: the B problems' (theta_b, z_b, Adam moments, alive) are one pytree with
a leading batch axis, and one compiled step `vmap`s the per-problem step over it (a problem's
weights never see another's gradient). Learning rates, loss weights and which layers move
(`PersonalConfig.tune`, a per-layer multiplier of the weights' learning rate) are traced [B]
arrays. A problem whose loss, gradient or update turns non-finite is frozen at its last finite
state and flagged. `chunk_size` caps problems per compiled call; `devices` shards the batch
(`shard_map`, as the engine).

    res = occjax.invert(models, targets, masks, references=photos, config="personal")
    mine = occjax.personalize(models, photos)   # one person's model: Models, saveable as a bundle
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from occjax import layers as L
from occjax import xla
from occjax.models import Models
from occjax.networks.build import Network
from occjax.options import Options

Array = jax.Array
TERMS = ("target", "references", "anchor", "locality", "total")


@dataclass(frozen=True)
class PersonalConfig:
    """The `personal` approach (a model's recommended values: bundle.json's "personal", read by
    `personal_config`)."""

    approach: str = "personal"
    steps: int = 100
    """Joint steps on the weights copy and the target's code."""
    lr: float = 0.02
    """Adam learning rate of the target's code."""
    weight_lr: float = 1e-3
    """Adam learning rate of the generator's weights copy (faces64's validation split: 1e-4, 3e-4,
    1e-3, 3e-3 gave 20.6, 20.9, 21.3, 20.9 dB in the mask; benchmarks/NOTES.md)."""
    target_weight: float = 1.0
    """Weight of the target's visible pixels (MSE + perceptual_weight * perceptual)."""
    reference_weight: float = 1.0
    """Weight of the references at their pivots (mean over the references)."""
    perceptual_weight: float = 0.0
    """The perceptual distance's weight inside each image term (LPIPS-VGG for faces64). 0: pixels
    only, which on faces64's validation split restored 0.7 dB better inside the mask than 1.0, at
    a third of the step time (the tuned weights fit the pixels they are shown; LPIPS pulls them
    towards texture)."""
    anchor_weight: float = 0.0
    """Relative L2 distance to the original weights: sum over tensors ||t - t0||^2 / ||t0||^2."""
    locality_weight: float = 0.0
    """PTI's locality: MSE between tuned and original generator at codes moved from the target's
    pivot towards random codes (`locality_alpha` of the way), `locality_codes` per step."""
    locality_alpha: float = 0.3
    locality_codes: int = 2
    tune: tuple[str, ...] = ()
    """Layers (top-level parameter groups of the generator, e.g. block0..block3, to_rgb) whose
    weights move; () = all."""
    init_steps: int = 50
    """Frozen `baseline` steps giving the target's pivot (0: the encoder's code)."""
    reference_steps: int = 50
    """Frozen `baseline` steps giving each reference's pivot."""
    seed: int = 0

    def __post_init__(self):
        nums = ("lr", "weight_lr", "target_weight", "reference_weight", "perceptual_weight")
        for n in (*nums, "anchor_weight", "locality_weight", "locality_alpha"):
            v = getattr(self, n)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"PersonalConfig: {n} must be finite and >= 0, got {v}")
        for n in ("steps", "init_steps", "reference_steps", "locality_codes"):
            if getattr(self, n) < 0:
                raise ValueError(f"PersonalConfig: {n} must be >= 0")

    @property
    def uses_references(self) -> bool:
        """Always: the weights are tuned on the reference photos (InvertConfig's twin property)."""
        return True


def personal_config(models: Models, **overrides) -> PersonalConfig:
    """The model's recommended `personal` values (bundle.json's top-level "personal"; not in
    "defaults", which are InvertConfig fields), then `overrides`."""
    base = dict(models.info.get("personal", {}))
    if "tune" in base:
        base["tune"] = tuple(base["tune"])
    return PersonalConfig(**{**base, **overrides})


class PState(NamedTuple):
    theta: Any  # the generator's "params", each leaf [B, ...]
    z: Array  # [B, L, D]
    opt_theta: Any
    opt_z: Any
    alive: Array  # [B] bool


@dataclass(frozen=True)
class PStatic:
    gen: Any
    perc: Any
    n_loc: int
    use_loc: bool
    use_perc: bool = True


def layer_names(models: Models) -> tuple[str, ...]:
    return tuple(sorted(models.net("generator").variables["params"]))


def _hyper(models: Models, cfgs: list[PersonalConfig]) -> dict[str, np.ndarray]:
    names = layer_names(models)
    for c in cfgs:
        if bad := set(c.tune) - set(names):
            raise ValueError(f"PersonalConfig.tune: no layer(s) {sorted(bad)}; layers: {names}")

    def arr(f):
        return np.asarray([f(c) for c in cfgs], np.float32)

    mult = np.asarray([[1.0 if not c.tune or n in c.tune else 0.0 for n in names] for c in cfgs])
    return {
        "lr": arr(lambda c: c.lr),
        "weight_lr": arr(lambda c: c.weight_lr),
        "tw": arr(lambda c: c.target_weight),
        "rw": arr(lambda c: c.reference_weight),
        "pw": arr(lambda c: c.perceptual_weight),
        "aw": arr(lambda c: c.anchor_weight),
        "lw": arr(lambda c: c.locality_weight),
        "alpha": arr(lambda c: c.locality_alpha),
        "layers": mult.astype(np.float32),  # [B, n_layers]
    }


# ---- the per-problem step ------------------------------------------------------------------------


def _mse(a, b, w):
    """Weighted per-image mean squared error: a, b [N,H,W,3], w [N,H,W,1] -> [N]."""
    num = jnp.sum(jnp.square(a - b) * w, axis=(1, 2, 3))
    return num / jnp.maximum(jnp.sum(w, axis=(1, 2, 3)) * a.shape[-1], 1.0)


def _losses(theta, z, frozen, d, h, key, st: PStatic):
    """Every term for one problem: theta (its params), z [L, D]; d holds target [H,W,3], visible
    [H,W,1], refs [R,H,W,3], pivots [R,L,D], valid [R], feats (targets' + refs' perceptual
    features), pivot [L,D] (the target's frozen code)."""
    g = {**frozen["g"], "params": theta}
    codes = jnp.concatenate([z[None], d["pivots"]])  # [1+R, L, D]
    imgs = st.gen.apply(g, codes, method="synthesis")  # [1+R, H, W, 3]
    vis = jnp.concatenate([d["visible"][None], jnp.ones_like(d["refs"][..., :1])])
    goal = jnp.concatenate([d["target"][None], d["refs"]])
    per = _mse(imgs, goal, vis)  # [1+R]
    if st.use_perc:
        f = st.perc.apply(frozen["v"], imgs * vis, method="features")
        per = per + h["pw"] * st.perc.apply(frozen["v"], d["feats"], f, method="distance")
    valid = d["valid"]
    t = {"target": per[0], "references": jnp.sum(per[1:] * valid) / jnp.maximum(valid.sum(), 1.0)}
    t0 = frozen["g"]["params"]
    rel = jax.tree.map(
        lambda a, b: jnp.sum(jnp.square(a - b)) / (jnp.sum(jnp.square(b)) + 1e-12), theta, t0
    )
    t["anchor"] = sum(jax.tree.leaves(rel))
    if st.use_loc:
        r = jax.random.normal(key, (st.n_loc, *z.shape), z.dtype)
        zl = d["pivot"][None] + h["alpha"] * (r - d["pivot"][None])
        a = st.gen.apply(g, zl, method="synthesis")
        b = jax.lax.stop_gradient(st.gen.apply(frozen["g"], zl, method="synthesis"))
        t["locality"] = jnp.mean(jnp.square(a - b))
    else:
        t["locality"] = jnp.zeros((), z.dtype)
    t["total"] = (
        h["tw"] * t["target"]
        + h["rw"] * t["references"]
        + h["aw"] * t["anchor"]
        + h["lw"] * t["locality"]
    )
    return t


ADAM = optax.scale_by_adam()


def _one_step(s: PState, frozen, d, h, key, st: PStatic):
    """One Adam step of one problem (vmapped over the batch)."""

    def total(theta, z):
        t = _losses(theta, z, frozen, d, h, key, st)
        return t["total"], t

    (_, terms), (g_th, g_z) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(s.theta, s.z)
    u_th, opt_th = ADAM.update(g_th, s.opt_theta)
    u_z, opt_z = ADAM.update(g_z, s.opt_z)
    names = sorted(u_th)
    scale = {n: -h["weight_lr"] * h["layers"][i] for i, n in enumerate(names)}
    u_th = {n: jax.tree.map(lambda u, n=n: u * scale[n], u_th[n]) for n in names}
    theta = optax.apply_updates(s.theta, u_th)
    z = s.z - h["lr"] * u_z
    leaves = [terms["total"], *jax.tree.leaves(g_th), g_z, *jax.tree.leaves(theta), z]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
    alive = s.alive & finite
    new = PState(theta, z, opt_th, opt_z, alive)
    new = jax.tree.map(lambda a, b: jnp.where(alive, a, b), new, s)._replace(alive=alive)
    return new, terms


def _batched_step(s, frozen, d, h, keys, st: PStatic):
    return jax.vmap(partial(_one_step, st=st), in_axes=(0, None, 0, 0, 0))(s, frozen, d, h, keys)


_RUNNERS: dict = {}


def _runner(st: PStatic, mesh):
    key = (st, mesh)
    if key not in _RUNNERS:
        f = partial(_batched_step, st=st)
        if mesh is not None:
            b = P("batch")
            f = jax.shard_map(
                f, mesh=mesh, in_specs=(b, P(), b, b, b), out_specs=(b, b), check_vma=False
            )
        _RUNNERS[key] = xla.step_jit(f, st.perc if st.use_perc else None)
    return _RUNNERS[key]


@partial(jax.jit, static_argnames=("gen",))
def _synth(gen, g_frozen, theta, z):
    """Each problem's image at its code with its own weights: [B, H, W, 3]."""

    def one(th, zz):
        return gen.apply({**g_frozen, "params": th}, zz[None], method="synthesis")[0]

    return jax.vmap(one)(theta, z)


@partial(jax.jit, static_argnames=("perc",))
def _features(perc, v, images):
    return perc.apply(v, images, method="features")


# ---- running a batch -----------------------------------------------------------------------------


def tune(
    models: Models,
    data: dict[str, np.ndarray],
    cfgs: list[PersonalConfig],
    *,
    opts: Options | None = None,
    progress=False,
) -> tuple[PState, dict[str, np.ndarray], float]:
    """Tune B weight copies and codes. data: target [B,H,W,3], visible [B,H,W,1], refs
    [B,R,H,W,3], pivots [B,R,L,D], valid [B,R], pivot [B,L,D] (the target's initial code).
    Returns (final state, per-step losses {term: [steps, B]}, seconds of the first step)."""
    opts = opts or Options()
    gnet, vnet = models.net("generator"), models.net("perceptual")
    b = data["target"].shape[0]
    steps = cfgs[0].steps
    if any(c.steps != steps for c in cfgs):
        raise ValueError("personal: the problems of one batch must share `steps`")
    use_loc = any(c.locality_weight > 0 for c in cfgs)
    use_perc = any(c.perceptual_weight > 0 for c in cfgs)
    st = PStatic(gnet.module, vnet.module, max(c.locality_codes for c in cfgs), use_loc, use_perc)
    frozen = {"g": gnet.variables, "v": vnet.prepared("float32")}
    # the goals' perceptual features, once: [B, 1+R, ...]
    goal = np.concatenate([(data["target"] * data["visible"])[:, None], data["refs"]], 1)
    flat = goal.reshape(-1, *goal.shape[2:])
    feats = jnp.zeros((b,), jnp.float32)  # unused without the perceptual term
    if use_perc:
        f = _features(vnet.module, frozen["v"], flat)
        feats = jax.tree.map(lambda a: a.reshape(b, -1, *a.shape[1:]), f)
    d = {k: jnp.asarray(data[k]) for k in ("target", "visible", "refs", "pivots", "valid", "pivot")}
    d["feats"] = feats
    h = jax.tree.map(jnp.asarray, _hyper(models, cfgs))
    theta0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (b, *a.shape)), gnet.variables["params"])
    z0 = jnp.asarray(data["pivot"])
    state = PState(
        theta0,
        z0,
        jax.vmap(ADAM.init)(theta0),
        jax.vmap(ADAM.init)(z0),
        jnp.ones(b, bool),
    )
    devs = opts.device_list()
    n_dev = min(len(devs), b)
    mesh = None
    if n_dev > 1 and b % n_dev == 0:
        mesh = Mesh(np.array(devs[:n_dev]), ("batch",))
        put = partial(jax.device_put, device=NamedSharding(mesh, P("batch")))
        state, d, h = put(state), put(d), put(h)
        frozen = jax.device_put(frozen, NamedSharding(mesh, P()))
    run = _runner(st, mesh)
    seeds = np.asarray([c.seed for c in cfgs], np.uint32)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"personal x{b}", unit="step", leave=False)
    trace, first_s = [], 0.0
    for i in range(steps):
        tc = time.perf_counter()
        k = jax.vmap(lambda kk, i=i: jax.random.fold_in(kk, i))(keys)
        state, terms = run(state, frozen, d, h, k)
        if i == 0:
            jax.block_until_ready(state.z)
            first_s = time.perf_counter() - tc
        trace.append(terms)
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(i + 1)
    if bar is not None:
        bar.close()
    losses = {t: np.stack([np.asarray(x[t]) for x in trace]) for t in TERMS} if trace else {}
    return state, losses, first_s


def _to_nhwc(x):
    return np.asarray(L.nchw_to_nhwc(jnp.asarray(x)))


def invert_personal(
    models: Models,
    targets,
    masks=None,
    references=None,
    config: PersonalConfig | str | list | None = None,
    *,
    devices=None,
    chunk_size: int | None = None,
    reference_cache=None,
    progress=False,
    init_codes=None,
):
    """`occjax.invert(..., config="personal")`: per-problem pivotal tuning (see the module
    docstring). `references`: a list of B entries of reference photos [R_b, 3, H, W] (photos are
    needed: the weights are tuned on their pixels); returns an `InvertResult`."""
    import warnings

    from occjax.api import InvertResult, Trace, invert, invert_references
    from occjax.validate import as_images, as_masks

    t0 = time.perf_counter()
    res = models.resolution
    targets = as_images(targets, "targets", res)
    b = targets.shape[0]
    masks = as_masks(masks, b, res)
    if config is None or isinstance(config, str | PersonalConfig):
        cfgs = [config] * b
    else:
        cfgs = list(config)
    cfgs = [personal_config(models) if c in (None, "personal") else c for c in cfgs]
    if len(cfgs) != b or not all(isinstance(c, PersonalConfig) for c in cfgs):
        raise ValueError(f"personal: expected {b} PersonalConfig (or 'personal'), got {config!r}")
    references = [None] * b if references is None else list(references)
    if len(references) != b:
        raise ValueError(f"references: got {len(references)} entries for {b} targets")
    photos = []
    for i, r in enumerate(references):
        if r is None:
            photos.append(np.zeros((0, 3, res, res), np.float32))
            continue
        r = np.asarray(r, np.float32)
        if r.ndim != 4 or r.shape[1] != 3:
            raise ValueError(
                f"references[{i}]: `personal` tunes on the references' pixels, so it needs photos "
                f"[R, 3, {res}, {res}], got shape {r.shape}"
            )
        photos.append(as_images(r, f"references[{i}]", res) if len(r) else r)
    fallback = [
        "no references: the weights were tuned on the target's visible pixels only"
        if len(p) == 0
        else None
        for p in photos
    ]
    if any(fallback):
        warnings.warn(
            "invert: personal problem(s) without references tune on the target alone "
            "(InvertResult.fallback says which)",
            stacklevel=3,
        )
    opts = Options(devices, chunk_size, False, bool(progress), reference_cache)
    # the pivots: the frozen model's baseline on every reference, and on the targets (masked)
    allp = np.concatenate(photos) if sum(len(p) for p in photos) else None
    r_steps = max(c.reference_steps for c in cfgs)
    ref_codes = np.zeros((0, *models.code_shape), np.float32)
    if allp is not None:
        ref_codes, _ = invert_references(
            models, allp, r_steps, reference_cache, chunk_size, devices, bool(progress)
        )
    init_steps = max(c.init_steps for c in cfgs)
    if init_codes is None:
        base = models.preset("baseline", steps=init_steps)
        pre = invert(models, targets, masks, None, base, devices=devices, chunk_size=chunk_size)
        init_codes = pre.codes
    init_codes = np.asarray(init_codes, np.float32)
    if init_codes.shape != (b, *models.code_shape):
        raise ValueError(f"init_codes: expected [{b}, {models.code_shape}], got {init_codes.shape}")
    t_refs = time.perf_counter() - t0
    n = [len(p) for p in photos]
    rmax = max(1, max(n))
    refs = np.zeros((b, rmax, res, res, 3), np.float32)
    pivots = np.zeros((b, rmax, *models.code_shape), np.float32)
    valid = np.zeros((b, rmax), np.float32)
    off = 0
    for i, p in enumerate(photos):
        if len(p):
            refs[i, : len(p)] = _to_nhwc(p)
            pivots[i, : len(p)] = ref_codes[off : off + len(p)]
            valid[i, : len(p)] = 1
        off += len(p)
    data = {
        "target": _to_nhwc(targets),
        "visible": _to_nhwc(1.0 - masks),
        "refs": refs,
        "pivots": pivots,
        "valid": valid,
        "pivot": init_codes,
    }
    size = b if chunk_size is None else chunk_size
    t1 = time.perf_counter()
    codes, images, flagged, losses, first_s = [], [], [], [], 0.0
    gnet = models.net("generator")
    for s in range(0, b, size):
        sl = slice(s, min(b, s + size))
        part = {k: v[sl] for k, v in data.items()}
        state, tr, fs = tune(models, part, cfgs[sl], opts=opts, progress=progress)
        first_s = first_s or fs
        img = _synth(gnet.module, gnet.variables, state.theta, state.z)
        codes.append(np.asarray(state.z))
        images.append(np.asarray(L.nhwc_to_nchw(img)))
        flagged.append(~np.asarray(state.alive))
        losses.append(tr)
    trace = None
    if losses[0]:
        trace = Trace(None, {k: np.concatenate([x[k] for x in losses], 1) for k in TERMS}, None)
    from occjax.api import occluded_percentage

    final = {k: v[-1] for k, v in trace.losses.items()} if trace else {}
    out = InvertResult(
        codes=np.concatenate(codes),
        images=np.concatenate(images),
        init_codes=init_codes,
        final_losses=final,
        flagged=np.concatenate(flagged),
        occluded_pct=np.asarray([occluded_percentage(m[0], "box") for m in masks], np.float32),
        n_refs=np.asarray(n, np.int32),
        trace=trace,
        fallback=fallback,
    )
    out.timings = {
        "references_s": t_refs,
        "first_call_s": first_s,
        "optimise_s": time.perf_counter() - t1,
        "total_s": time.perf_counter() - t0,
    }
    return out


# ---- one person's model --------------------------------------------------------------------------


def personalize(
    models: Models, photos, config: PersonalConfig | None = None, *, progress=False
) -> Models:
    """One person's model (MyStyle's use): the generator tuned once on their photos [N, 3, H, W]
    at their pivots (no target), with the same regulariser; every other network is shared.
    `save_bundle(result, folder)` writes it; `load_models(bundle=folder)` reads it back."""
    from occjax.api import invert_references
    from occjax.validate import as_images

    cfg = config or personal_config(models)
    res = models.resolution
    photos = as_images(photos, "photos", res)
    codes, _ = invert_references(models, photos, cfg.reference_steps, progress=bool(progress))
    n = len(photos)
    data = {
        "target": np.zeros((1, res, res, 3), np.float32),
        "visible": np.zeros((1, res, res, 1), np.float32),
        "refs": _to_nhwc(photos)[None],
        "pivots": codes[None],
        "valid": np.ones((1, n), np.float32),
        "pivot": codes.mean(0, keepdims=True),
    }
    cfg1 = dataclasses.replace(cfg, target_weight=0.0, lr=0.0)
    state, _, _ = tune(models, data, [cfg1], progress=progress)
    gnet = models.net("generator")
    params = jax.tree.map(lambda a: a[0], state.theta)
    info = {**gnet.info, "personalized": {"photos": n, "config": dataclasses.asdict(cfg1)}}
    info.pop("sha256", None)
    tuned = Network(gnet.family, gnet.module, {**gnet.variables, "params": params}, info)
    nets = {**models.nets, "generator": tuned}
    minfo = {**models.info, "name": f"{models.name}-personal"}
    return Models(nets, None, models.defaults, minfo)


def save_bundle(models: Models, folder: str | Path) -> Path:
    """Write `models` as a bundle folder (one safetensors per network, bundle.json with the
    defaults and the model's info), readable by `load_models(bundle=folder)`."""
    from occjax.params import config_to_json, flatten, save_flat, sha256_file, write_bundle_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for role, net in models.nets.items():
        fname = f"{role}.safetensors"
        flat = {k: np.asarray(v) for k, v in flatten(net.variables).items()}
        save_flat(folder / fname, flat)
        keep = {k: v for k, v in net.info.items() if k not in ("bundle", "sha256", "file")}
        entries[role] = {
            **keep,
            "family": net.family,
            "file": fname,
            "dtype": "float32",
            "sha256": sha256_file(folder / fname),
            "config": config_to_json(net.module),
        }
    extra = {k: v for k, v in models.info.items() if k != "occjax_bundle"}
    write_bundle_json(folder, {**extra, "networks": entries, "defaults": models.defaults})
    return folder


__all__ = ["PersonalConfig", "invert_personal", "personal_config", "personalize", "save_bundle"]
