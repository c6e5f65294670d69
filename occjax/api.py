"""`occjax.invert`: the public inversion call, in five steps a reader can follow:
validate the inputs, get the references' codes, prepare the device inputs, run the steps, collect.

    res = occjax.invert(models, targets, masks, references, config="prior", record=True)
    res.codes [B, L, D]; res.images [B, 3, H, W]; res.trace.codes [steps, B, L, D];
    res.trace.losses {term: [steps, B]} (evaluated before each step's update)

Inputs are NCHW float32 in [-1, 1] at the model's resolution; masks [B, 1, H, W] with 1 = occluded.
`references` is a list of B entries, each None, reference photos [R_b, 3, H, W] (inverted once with
the model's `baseline` preset and cached on disk when `reference_cache` is given) or precomputed
codes [R_b, L, D]. `config` is an approach name (its preset with the model's recommended values),
an InvertConfig (used as given) or a list of B of either (a hyper-parameter grid runs as one batch).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from occjax import engine, starts
from occjax import layers as L
from occjax import noise as N
from occjax import references as refs_mod
from occjax.config import InvertConfig
from occjax.options import Options
from occjax.validate import as_images, as_masks


@dataclass
class Trace:
    codes: np.ndarray | None  # [steps, B, L, D], the code after each step (record=True)
    losses: dict[str, np.ndarray]  # term -> [steps, B], before each step's update
    grad_norm: np.ndarray  # [steps, B]


@dataclass
class InvertResult:
    codes: np.ndarray  # [B, L, D] after the last step
    images: np.ndarray  # [B, 3, H, W] in (-1, 1)
    init_codes: np.ndarray  # [B, L, D], where the steps started (InvertConfig.init)
    final_losses: dict[str, np.ndarray]  # term -> [B], at the final codes
    flagged: np.ndarray  # [B] bool: loss or gradient turned non-finite (code frozen)
    occluded_pct: np.ndarray  # [B], as the configs measure it
    n_refs: np.ndarray  # [B]
    trace: Trace | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # per problem: why a prior approach ran as the baseline (no references), else None
    fallback: list[str | None] = field(default_factory=list)
    # the optimised noise maps (noise_reg_weight > 0): {layer ("synthesis/b8_conv0"): [B, h, w]};
    # a problem of the batch with weight 0 keeps the model's fixed map; None: no noise optimised
    noise: dict[str, np.ndarray] | None = None


@dataclass
class Problems:
    """Validated inputs of one call: targets [B,3,H,W], masks [B,1,H,W] {0,1}, one config each,
    the occluded percentage each config measures [B], optional initial codes [B,L,D]."""

    targets: np.ndarray
    masks: np.ndarray
    configs: list[InvertConfig]
    pct: np.ndarray
    init_codes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.configs)

    def take(self, idx) -> Problems:
        idx = list(idx)
        z0 = None if self.init_codes is None else self.init_codes[idx]
        cfgs = [self.configs[i] for i in idx]
        return Problems(self.targets[idx], self.masks[idx], cfgs, self.pct[idx], z0)


# ---- 1. validate ---------------------------------------------------------------------------------


def occluded_percentage(mask: np.ndarray, measure: str) -> float:
    from occjax.occlusion.measure import occluded_percentage as measure_fn

    return measure_fn(np.asarray(mask) > 0.5, measure)


def resolve_configs(models, config, b: int) -> list[InvertConfig]:
    """One InvertConfig per problem: an approach name is its preset with the model's recommended
    values (`models.preset`); an InvertConfig is used as given; None is "baseline"."""

    def one(c):
        if c is None:
            return models.preset("baseline")
        if isinstance(c, str):
            return models.preset(c)
        if isinstance(c, InvertConfig):
            return c
        raise TypeError(f"config: expected an approach name or an InvertConfig, got {type(c)}")

    if config is None or isinstance(config, str | InvertConfig):
        return [one(config)] * b
    cfgs = [one(c) for c in config]
    if len(cfgs) != b:
        raise ValueError(f"config: got {len(cfgs)} configs for {b} problems")
    return cfgs


def validate(models, targets, masks, config, init_codes=None) -> Problems:
    res = models.resolution
    targets = as_images(targets, "targets", res)
    b = targets.shape[0]
    cfgs = resolve_configs(models, config, b)
    masks = as_masks(masks, b, res)
    pct = np.asarray(
        [occluded_percentage(m[0], c.occlusion_measure) for m, c in zip(masks, cfgs)], np.float32
    )
    z0 = None
    if init_codes is not None:
        z0 = np.asarray(init_codes, np.float32)
        if z0.shape != (b, *models.code_shape):
            raise ValueError(f"init_codes: expected [{b}, {models.code_shape}], got {z0.shape}")
        if not np.isfinite(z0).all():
            raise ValueError("init_codes: some values are NaN or infinite")
    return Problems(targets, masks, cfgs, pct, z0)


# ---- 2. reference codes --------------------------------------------------------------------------


def invert_references(
    models,
    images: np.ndarray,
    steps: int = 100,
    cache: str | Path | None = None,
    chunk_size: int | None = None,
    devices=None,
    progress: bool = False,
    batch_invariant: bool = False,
) -> tuple[np.ndarray, int]:
    """Codes [N, L, D] of reference photos [N, 3, H, W], inverted with the model's `baseline`
    (`occjax.references`); with `cache`, stored on disk keyed by image, weights and settings.
    Returns (codes, number of cache hits)."""
    opts = Options(devices, chunk_size, batch_invariant, progress, cache)
    return refs_mod.invert_photos(models, images, steps, opts)


def reference_codes(
    models, references, problems: Problems, opts: Options
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """The references of each problem as codes, padded: ([B, R, L, D], validity [B, R]), and
    each problem's fallback (why a prior approach runs as the baseline; None if it does not)."""
    b = len(problems)
    if not any(c.uses_prior for c in problems.configs):
        z = np.zeros((b, 1, *models.code_shape), np.float32)
        return z, np.zeros((b, 1), np.float32), [None] * b
    steps = max(c.reference_steps for c in problems.configs)
    codes = refs_mod.as_codes(models, references, b, steps, opts)
    fallback = [
        "no references: the prior has nothing to pull towards, so this ran as the baseline"
        if c.uses_prior and len(r) == 0
        else None
        for c, r in zip(problems.configs, codes)
    ]
    if any(fallback):
        idx = [i for i, f in enumerate(fallback) if f]
        warnings.warn(
            f"invert: problem(s) {idx} use the prior but have no references; they ran as the "
            "baseline (InvertResult.fallback says which)",
            stacklevel=3,
        )
    padded, valid = refs_mod.pad(codes, models.code_shape)
    return padded, valid, fallback


# ---- 3. prepare ------------------------------------------------------------------------------------


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


@dataclass
class Prepared:
    """Device-ready inputs of one compiled batch (padded to a multiple of the devices, sharded)."""

    state: engine.EngineState
    variables: dict
    data: dict
    hyper: dict
    static: engine.Static
    init_codes: np.ndarray  # [B, L, D], unpadded
    size: int  # B, the real problems (the rest is padding)
    mesh: Mesh | None = None
    invariant: bool = False  # batch_invariant: the step compiled with XLA's defaults (occjax.xla)


def prepare(
    models,
    problems: Problems,
    refs: np.ndarray,
    valid: np.ndarray,
    *,
    record: bool = False,
    opts: Options | None = None,
    devices=None,
) -> Prepared:
    """Initial codes (each config's `init`, unless given), target features (once, not every step),
    padding and sharding. `devices` is a shorthand for Options(devices=...)."""
    opts = opts or Options(devices=devices)
    b = len(problems)
    cfgs = problems.configs
    st = engine.static_for(models, cfgs, record, cfgs[0].steps)
    devs = opts.device_list()
    n_dev = min(len(devs), b)
    mesh = Mesh(np.array(devs[:n_dev]), ("batch",)) if n_dev > 1 else None
    bp = -(-b // n_dev) * n_dev
    variables = engine.variables_for(models, st)
    x = L.nchw_to_nhwc(jnp.asarray(problems.targets))
    vis = L.nchw_to_nhwc(jnp.asarray(1.0 - problems.masks))
    data = {"target": np.asarray(x), "visible": np.asarray(vis), "occluded_pct": problems.pct}
    if st.use_perceptual:
        feats = engine.target_features(variables["v"], x, vis, st)
        data["feat_target"] = jax.tree.map(np.asarray, feats)
    hyper = engine.hyper_from_configs(cfgs)
    if problems.init_codes is None:
        # each config's `init`: the encoder, w_avg over W+ (NVlabs' projector; 'auto' for a model
        # without an encoder) or the best of sampled codes (occjax.starts)
        z0 = starts.initial_codes(models, cfgs, variables, data, hyper, st)
    else:
        z0 = problems.init_codes
    if st.use_prior:
        data["refs"], data["ref_valid"] = refs, valid
    noise0 = N.initial(models.net("generator").variables, b) if st.use_noise else None
    data, hyper, z0p = (_pad_batch(t, b, bp) for t in (data, hyper, z0))
    noise0 = None if noise0 is None else _pad_batch(noise0, b, bp)
    cfgs_p = cfgs + [cfgs[0]] * (bp - b)
    state = engine.init_state(z0p, cfgs_p, noise0)
    if mesh is not None:
        state = jax.device_put(
            state, jax.tree.map(lambda s: NamedSharding(mesh, s), engine.state_specs(state))
        )
    data, hyper = _shard(data, mesh, True), _shard(hyper, mesh, True)
    variables = _shard(variables, mesh, False)
    return Prepared(state, variables, data, hyper, st, z0, b, mesh, opts.batch_invariant)


# ---- 4. run ----------------------------------------------------------------------------------------


def _call_sizes(steps: int, progress: bool) -> list[int]:
    if steps == 0:
        return []
    if not progress:
        return [steps]
    per = max(1, steps // 10)
    return [per] * (steps // per) + ([steps % per] if steps % per else [])


def run(prep: Prepared, progress: bool | Callable[[int], None] = False, desc: str = "invert"):
    """Every step of a prepared batch: (final state, trace pieces, seconds of the first call)."""
    st, state = prep.static, prep.state
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=st.steps, desc=desc, unit="step", leave=False)
    traces, done, first_s = [], 0, 0.0
    for n in _call_sizes(st.steps, bool(progress)):
        tc = time.perf_counter()
        one = dataclasses.replace(st, steps=n)
        state, tr = engine.run_steps(
            state, prep.variables, prep.data, prep.hyper, one, prep.mesh, invariant=prep.invariant
        )
        if not traces:
            jax.block_until_ready(state.codes)
            first_s = time.perf_counter() - tc
        traces.append(tr)
        done += n
        if bar is not None:
            bar.update(n)
        elif callable(progress):
            progress(done)
    if bar is not None:
        bar.close()
    return state, traces, first_s


# ---- 5. collect ------------------------------------------------------------------------------------


def collect(models, prep: Prepared, state, traces, valid, record: bool) -> InvertResult:
    """Final losses and images (float32 whatever the step computed in), unpadded results."""
    b, st = prep.size, prep.static
    variables = prep.variables
    if st.compute_dtype == "bfloat16":
        st = dataclasses.replace(st, compute_dtype="float32")
        variables = _shard(engine.variables_for(models, st), prep.mesh, False)
    final = engine.evaluate(
        state.codes,
        variables,
        prep.data,
        prep.hyper,
        dataclasses.replace(st, record=False),
        state.noise,
    )
    images = engine.synthesize(st.gen, variables["g"], state.codes, state.noise)
    pct = np.asarray(prep.data["occluded_pct"])[:b]
    trace = None
    if traces:
        cat = jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *traces)
        trace = Trace(
            codes=cat["codes"][:, :b] if record else None,
            losses={k: v[:, :b] for k, v in cat["losses"].items()},
            grad_norm=cat["grad_norm"][:, :b],
        )
    return InvertResult(
        codes=np.asarray(state.codes)[:b],
        images=np.asarray(L.nhwc_to_nchw(images))[:b],
        init_codes=np.asarray(prep.init_codes)[:b],
        final_losses={k: np.asarray(v)[:b] for k, v in final.items()},
        flagged=~np.asarray(state.alive)[:b],
        occluded_pct=pct,
        n_refs=valid[:b].sum(1).astype(np.int32),
        trace=trace,
        noise=None
        if state.noise is None
        else N.as_dict(np.asarray(state.noise)[:b], N.layout(variables["g"])),
    )


# ---- the call ------------------------------------------------------------------------------------


def invert(
    models,
    targets,
    masks=None,
    references: Sequence | None = None,
    config: str | InvertConfig | Sequence | None = None,
    record: bool = False,
    *,
    init_codes=None,
    devices=None,
    chunk_size: int | None = None,
    reference_cache: str | Path | None = None,
    progress: bool | Callable[[int], None] = False,
    batch_invariant: bool = False,
) -> InvertResult:
    """Invert B targets at once (see the module docstring).

    `devices`: None = every local device (the batch is sharded over them), an int, or a list;
    `chunk_size`: at most this many problems per compiled call (memory budget); `progress`: a tqdm
    bar over steps, or a callback(steps done); `batch_invariant`: each problem (and each of its
    references) is solved by the same batch-1 program it would get alone, so its result does not
    depend on the batch or the number of devices (slower: no batching). Without it, problems are
    batched, and a result differs from solving it alone by float rounding that Adam amplifies
    (README, "Batches, devices, determinism"); the same call is always bit-identical."""
    from occjax.personal import PersonalConfig, invert_personal

    single = config is None or isinstance(config, str | InvertConfig | PersonalConfig)
    cfg_list = [config] if single else config
    if any(c == "personal" or isinstance(c, PersonalConfig) for c in cfg_list):
        # the generator's weights are tuned per problem: occjax.personal runs it
        return invert_personal(
            models,
            targets,
            masks,
            references,
            config,
            devices=devices,
            chunk_size=chunk_size,
            reference_cache=reference_cache,
            progress=progress,
            init_codes=init_codes,
        )
    t0 = time.perf_counter()
    opts = Options(devices, chunk_size, batch_invariant, progress, reference_cache)
    problems = validate(models, targets, masks, config, init_codes)
    refs, valid, fallback = reference_codes(
        models, references, problems, dataclasses.replace(opts, progress=bool(progress))
    )
    t_refs = time.perf_counter() - t0
    b = len(problems)
    if batch_invariant:
        groups = [[i] for i in range(b)]  # one at a time: every problem's own batch-1 program
    else:
        size = b if chunk_size is None else chunk_size
        groups = [list(range(s, min(b, s + size))) for s in range(0, b, size)]
    names = "+".join(dict.fromkeys(c.approach for c in problems.configs))
    parts, first_s = [], 0.0
    t1 = time.perf_counter()
    for g in groups:
        sub = problems.take(g)
        r, v = _trim_refs(refs[g], valid[g])
        # batch-invariant: one device, so the program is the same whatever `devices` is
        one = dataclasses.replace(opts, devices=opts.device_list()[:1]) if batch_invariant else opts
        prep = prepare(models, sub, r, v, record=record, opts=one)
        desc = f"invert {names} x{b}" + (f" [{g[0] + 1}/{b}]" if len(groups) > 1 else "")
        state, traces, fs = run(prep, progress, desc)
        first_s = first_s or fs
        parts.append(collect(models, prep, state, traces, v, record))
    if len(parts) > 1 and any(p.noise is not None for p in parts):
        for p in parts:  # a group without noise weights: the model's fixed maps
            if p.noise is None:
                p.noise = N.fixed(models.net("generator").variables, len(p.codes))
    res = parts[0] if len(parts) == 1 else _concat(parts)
    res.fallback = fallback
    res.timings = {
        "references_s": t_refs,
        "first_call_s": first_s,
        "optimise_s": time.perf_counter() - t1,
        "total_s": time.perf_counter() - t0,
    }
    return res


def _trim_refs(refs: np.ndarray, valid: np.ndarray):
    """A group's references padded only to its own largest count (at least 1)."""
    r = max(1, int(valid.sum(1).max()))
    return refs[:, :r], valid[:, :r]


def _concat(parts: list[InvertResult]) -> InvertResult:
    def cat(get, axis=0):
        return np.concatenate([get(p) for p in parts], axis=axis)

    def term(losses: dict, k: str, like: np.ndarray) -> np.ndarray:
        # "noise_reg" exists only in groups that optimise noise maps: 0 elsewhere (as inside them)
        return losses[k] if k in losses else np.zeros_like(like)

    keys = list(dict.fromkeys(k for p in parts for k in p.final_losses))

    trace = None
    if parts[0].trace is not None:
        t0 = parts[0].trace
        trace = Trace(
            codes=None if t0.codes is None else cat(lambda p: p.trace.codes, 1),
            losses={
                k: cat(lambda p, k=k: term(p.trace.losses, k, p.trace.losses["total"]), 1)
                for k in keys
            },
            grad_norm=cat(lambda p: p.trace.grad_norm, 1),
        )
    return InvertResult(
        codes=cat(lambda p: p.codes),
        images=cat(lambda p: p.images),
        init_codes=cat(lambda p: p.init_codes),
        final_losses={
            k: cat(lambda p, k=k: term(p.final_losses, k, p.final_losses["total"])) for k in keys
        },
        flagged=cat(lambda p: p.flagged),
        occluded_pct=cat(lambda p: p.occluded_pct),
        n_refs=cat(lambda p: p.n_refs),
        trace=trace,
        noise=None
        if parts[0].noise is None
        else {k: cat(lambda p, k=k: p.noise[k]) for k in parts[0].noise},
    )
