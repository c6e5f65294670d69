"""The inversion engine: B independent inversions optimised at once under one compiled step.

Each problem b has its own target, mask, references (padded to a common count, with a validity
mask) and its own weights, sigma, k, x0 and Adam hyper-parameters: these are traced arrays, so
changing them never recompiles. What is static is only the structure: which terms exist at all in
the batch, the mask mode, the prior norm, the discriminator loss form, the number of steps per call.

Per step, as idinvert's `invert` (and the paper's code) does: x_rec = G(z); the loss terms are
evaluated at z; the gradient of their sum over the batch (= each problem's own gradient, since every
term is per sample and D scores each image alone) drives an Adam step (optax's, with per-problem
learning rate and betas injected as [B, 1, 1] arrays). A problem whose loss, gradient or update
turns non-finite is frozen at its last finite code and flagged; the others go on. The batch can be
split over devices (`shard_map`); the networks' variables are replicated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from occjax import losses as L
from occjax import noise as N
from occjax import xla
from occjax.config import InvertConfig

Array = jax.Array
TERMS = ("reconstruction", "perceptual", "encoder_reg", "prior", "discriminator", "total")
# the update rule; each problem's learning rate, betas and eps live in its state (see `init_state`)
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=0.01)


class EngineState(NamedTuple):
    codes: Array  # [B, L, D]
    opt: Any  # optax state of `ADAM`: moments [B, L, D], per-problem hyper-parameters [B, 1, 1]
    alive: Array  # [B] bool: False once a problem's loss, gradient or update was non-finite
    # the generator's noise maps, optimised with the codes (`occjax.noise`; Static.use_noise):
    # [B, 1, T], else None (the generator's fixed buffers); Adam then optimises (codes, noise)
    noise: Array | None = None


@dataclass(frozen=True)
class Static:
    """Everything that shapes the compiled step (hashable, static under jit): the networks'
    configured Flax modules (None where a term is off) and the terms' forms."""

    gen: Any
    enc: Any
    perc: Any
    disc: Any
    mask_mode: str
    prior_norm: str
    disc_loss: str
    use_perceptual: bool
    use_reg: bool
    use_prior: bool
    use_disc: bool
    record: bool
    steps: int  # steps per call
    compute_dtype: str = "float32"  # networks' weights and activations; codes and losses float32
    use_noise: bool = False  # noise maps optimised (some problem has noise_reg_weight > 0)


def hyper_from_configs(configs: list[InvertConfig]) -> dict[str, np.ndarray]:
    """Per-problem traced loss hyper-parameters, each [B] (prior_w < 0 means adaptive lambda3)."""

    def arr(f):
        return np.asarray([f(c) for c in configs], np.float32)

    return {
        "rec_w": arr(lambda c: c.reconstruction_weight),
        "perc_w": arr(lambda c: c.perceptual_weight),
        "reg_w": arr(lambda c: c.encoder_reg_weight),
        "disc_w": arr(lambda c: c.discriminator_weight),
        "prior_w": arr(
            lambda c: 0.0 if not c.prior else (-1.0 if c.prior_weight is None else c.prior_weight)
        ),
        "sigma": arr(lambda c: c.sigma),
        "scale": arr(lambda c: c.scale),
        "shift": arr(lambda c: c.shift),
        "delta": arr(lambda c: c.robust_delta),
        "noise_w": arr(lambda c: c.noise_reg_weight),
    }


def state_dtype(compute_dtype: str):
    """The dtype of codes, Adam state and losses: float64 with float64 compute, else float32."""
    if compute_dtype == "float64":
        if jnp.zeros((), jnp.float64).dtype != jnp.float64:
            raise ValueError("compute_dtype float64 needs 64-bit JAX: run under jax.enable_x64()")
        return jnp.float64
    return jnp.float32


def init_state(z0, configs: list[InvertConfig], noise0=None) -> EngineState:
    """Codes z0 [B, L, D] (and noise maps [B, 1, T] to optimise with them, or None) and a fresh Adam
    state with each problem's lr, betas and eps."""
    sd = state_dtype(configs[0].compute_dtype)
    z0 = jnp.asarray(z0, sd)
    noise0 = None if noise0 is None else jnp.asarray(noise0, sd)

    def col(f):
        return jnp.asarray([f(c) for c in configs], jnp.float32)[:, None, None]  # [B, 1, 1]

    tx = optax.inject_hyperparams(optax.adam)(
        learning_rate=col(lambda c: c.lr),
        b1=col(lambda c: c.beta1),
        b2=col(lambda c: c.beta2),
        eps=col(lambda c: c.eps),
    )
    params = z0 if noise0 is None else (z0, noise0)
    return EngineState(z0, tx.init(params), jnp.ones(z0.shape[0], bool), noise0)


def state_specs(state: EngineState):
    """shard_map specs of a state: leaves with a batch axis split over "batch", scalars replicated."""
    return jax.tree.map(lambda a: P("batch") if jnp.ndim(a) else P(), state)


def _net(f, st: Static):
    """A network call in the step's compute dtype (variables are cast by `Network.prepared`), its
    outputs in the state dtype (float32, or float64 with float64 compute)."""
    cd, sd = jnp.dtype(st.compute_dtype), state_dtype(st.compute_dtype)
    out = partial(jax.tree.map, lambda a: a.astype(sd))
    return lambda v, *xs: out(f(v, *jax.tree.map(lambda a: a.astype(cd), xs)))


def perceptual_features(st: Static, variables, x: Array, visible: Array):
    """The perceptual network's features of the (masked) images x [B,H,W,3]."""
    feats = _net(lambda v, im: st.perc.apply(v, im, method="features"), st)
    return feats(variables, L.perceptual_input(x, visible, st.mask_mode))


def generator_variables(gen_variables: dict, noise: Array | None):
    """The generator's variables, with the problems' noise maps [B, 1, T] (if any) in place of its
    buffers."""
    if noise is None:
        return gen_variables
    return N.substitute(gen_variables, noise, N.layout(gen_variables))


def loss_terms(
    z: Array, variables: dict, data: dict, hyper: dict, st: Static, noise: Array | None = None
) -> dict[str, Array]:
    """Every term per sample [B] at codes z [B, L, D] (and noise maps [B, 1, T] when they are
    optimised), and the weighted total."""
    x = data["target"]
    vis = data["visible"]
    synth = _net(lambda v, code: st.gen.apply(v, code, method="synthesis"), st)
    x_rec = synth(generator_variables(variables["g"], noise), z)
    zero = jnp.zeros(z.shape[0], z.dtype)
    terms = {"reconstruction": L.reconstruction(x, x_rec, vis, st.mask_mode, hyper["delta"])}
    total = hyper["rec_w"] * terms["reconstruction"]
    if st.use_perceptual:
        f_rec = perceptual_features(st, variables["v"], x_rec, vis)
        dist = st.perc.apply(variables["v"], data["feat_target"], f_rec, method="distance")
        terms["perceptual"] = dist.astype(state_dtype(st.compute_dtype))
        total = total + hyper["perc_w"] * terms["perceptual"]
    else:
        terms["perceptual"] = zero
    if st.use_reg:
        enc = _net(lambda v, im: st.enc.apply(v, im), st)
        terms["encoder_reg"] = L.encoder_reg(z, enc(variables["e"], x_rec))
        total = total + hyper["reg_w"] * terms["encoder_reg"]
    else:
        terms["encoder_reg"] = zero
    if st.use_prior:
        terms["prior"] = L.gaussian_prior(
            z, data["refs"], data["ref_valid"], hyper["sigma"], st.prior_norm
        )
        adaptive = L.adaptive_weight(data["occluded_pct"], hyper["scale"], hyper["shift"])
        lam3 = jnp.where(hyper["prior_w"] < 0, adaptive, hyper["prior_w"])
        total = total + lam3 * terms["prior"]
    else:
        terms["prior"] = zero
    if st.use_disc:
        # group of 1: every sample is scored alone (as at batch 1), so no result depends on the batch
        disc = _net(lambda v, im: st.disc.apply(v, im, group_size=1), st)
        terms["discriminator"] = L.adversarial(disc(variables["d"], x_rec), st.disc_loss)
        total = total + hyper["disc_w"] * terms["discriminator"]
    else:
        terms["discriminator"] = zero
    if noise is not None:  # NVlabs projector's autocorrelation penalty (a term only when optimised;
        # 0 for a problem of the batch whose maps stay fixed, as when no problem optimises them)
        reg = N.regularizer(N.split(noise, N.layout(variables["g"]))).astype(z.dtype)
        terms["noise_reg"] = jnp.where(hyper["noise_w"] > 0, reg, 0.0).astype(z.dtype)
        total = total + hyper["noise_w"] * terms["noise_reg"]
    terms["total"] = total
    return terms


def _where_alive(keep: Array, new, old):
    """Per problem, the new value where `keep`, the old one elsewhere (scalars: the new one)."""

    def pick(n, o):
        if jnp.ndim(n) == 0:
            return n
        return jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def _step(state: EngineState, _, variables, data, hyper, st: Static):
    """One Adam step for a batch of problems: loss terms, gradient, update, NaN freeze. With noise
    maps, Adam updates (codes, noise) together; a problem whose noise weight is > 0 then has its
    maps renormalised (zero mean, unit variance), the others keep their fixed maps."""

    def total(params):
        z, noise = params if st.use_noise else (params, None)
        terms = loss_terms(z, variables, data, hyper, st, noise)
        return jnp.sum(terms["total"]), terms

    params = (state.codes, state.noise) if st.use_noise else state.codes
    (_, terms), grads = jax.value_and_grad(total, has_aux=True)(params)
    updates, opt = ADAM.update(grads, state.opt, params)
    new_params = optax.apply_updates(params, updates)
    grad = grads[0] if st.use_noise else grads
    finite = jnp.isfinite(terms["total"])
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(new_params)):
        finite = (
            finite & jnp.all(jnp.isfinite(g), axis=(1, 2)) & jnp.all(jnp.isfinite(p), axis=(1, 2))
        )
    alive = state.alive & finite
    if st.use_noise:
        z, noise = new_params
        lay = N.layout(variables["g"])
        noise = N.join(N.normalise(N.split(noise, lay))).astype(noise.dtype)
        noise = jnp.where((hyper["noise_w"] > 0)[:, None, None], noise, state.noise)
    else:
        z, noise = new_params, None
    new = EngineState(z, opt, alive, noise)
    new = _where_alive(alive, new, state)._replace(alive=alive)
    out = {"losses": terms, "grad_norm": jnp.sqrt(jnp.sum(jnp.square(grad), axis=(1, 2)))}
    if st.record:
        out["codes"] = new.codes
    return new, out


def _run_steps(state, variables, data, hyper, st: Static):
    step = partial(_step, variables=variables, data=data, hyper=hyper, st=st)
    if st.steps == 1:  # no loop at all (XLA:CPU keeps even a length-1 scan as a slower while loop)
        state, out = step(state, None)
        return state, jax.tree.map(lambda a: a[None], out)
    return jax.lax.scan(step, state, None, st.steps)


_RUNNERS: dict = {}  # (donate, mesh, static, state structure, invariant) -> jitted runner


def _runner(donate: bool, mesh, st: Static, state: EngineState, invariant: bool = False):
    key = (donate, mesh, st, jax.tree.structure(state), invariant)
    if key not in _RUNNERS:

        def f(state, variables, data, hyper):
            return _run_steps(state, variables, data, hyper, st)

        if mesh is not None:
            # every device runs the same program on its own problems (they never interact)
            b, rep = P("batch"), P()
            f = jax.shard_map(
                f,
                mesh=mesh,
                in_specs=(state_specs(state), rep, b, b),
                out_specs=(state_specs(state), P(None, "batch")),
                check_vma=False,
            )
        perc = st.perc if st.use_perceptual else None
        _RUNNERS[key] = xla.step_jit(f, perc, invariant, donate_argnums=(0,) if donate else ())
    return _RUNNERS[key]


def compiled_count() -> int:
    """Compiled step programs so far (a traced hyper-parameter change must not add one)."""
    return sum(r._cache_size() for r in _RUNNERS.values())


def run_steps(
    state,
    variables,
    data,
    hyper,
    st: Static,
    mesh=None,
    host_loop: bool | None = None,
    invariant: bool = False,
):
    """`st.steps` Adam steps from `state`; returns the new state and the per-step trace. The steps
    are one `lax.scan` under one jit, except on CPU (`host_loop`, default there), where XLA:CPU runs
    a while-loop body ~1.5x slower than the same ops at top level, so the compiled single step is
    called from Python (same numbers). With a mesh, the batch axis is split over its devices.
    Buffers are donated where supported (not CPU). `invariant`: compiled with XLA's defaults
    (`batch_invariant`, occjax.xla)."""
    donate = jax.default_backend() != "cpu"
    if host_loop is None:
        host_loop = jax.default_backend() == "cpu"
    if not host_loop or st.steps <= 1:
        return _runner(donate, mesh, st, state, invariant)(state, variables, data, hyper)
    one = _runner(donate, mesh, dataclasses.replace(st, steps=1), state, invariant)
    outs = []
    for _ in range(st.steps):
        state, out = one(state, variables, data, hyper)
        outs.append(out)
    return state, jax.tree.map(lambda *a: jnp.concatenate(a), *outs)


@partial(jax.jit, static_argnames=("st",))
def evaluate(z, variables, data, hyper, st: Static, noise=None):
    """The loss terms at z (and noise maps, if optimised) without an update (e.g. after the last
    step)."""
    return loss_terms(z, variables, data, hyper, st, noise)


@partial(jax.jit, static_argnames=("st",))
def target_features(variables, x, visible, st: Static):
    """The perceptual features of the (masked) targets, computed once per inversion."""
    return perceptual_features(st, variables, x, visible)


@partial(jax.jit, static_argnames=("st",))
def encode(variables, x, st: Static):
    """Initial codes: the encoder of images x [B,H,W,3] (st.enc), in the state dtype."""
    return _net(lambda v, im: st.enc.apply(v, im), st)(variables, x)


@partial(jax.jit, static_argnames=("module",))
def synthesize(module, variables, z, noise=None):
    """Images [B,H,W,3] of codes z (with the problems' noise maps [B, 1, T], if given)."""
    return module.apply(generator_variables(variables, noise), z, method="synthesis")


def static_for(models, configs: list[InvertConfig], record: bool, steps: int) -> Static:
    """The union of the terms the batch needs, with the networks' modules."""
    c0 = configs[0]
    shared = ("mask_mode", "prior_norm", "disc_loss", "occlusion_measure", "steps", "compute_dtype")
    for c in configs[1:]:
        for f in shared:
            if getattr(c, f) != getattr(c0, f):
                raise ValueError(
                    f"configs of one batch must share {f!r} (it shapes the compiled step); "
                    f"got {getattr(c0, f)!r} and {getattr(c, f)!r}"
                )
    use_noise = any(c.uses_noise for c in configs)
    if use_noise and (why := N.unsupported(models)):
        raise ValueError(
            f"noise_reg_weight > 0 optimises the generator's per-layer noise maps, and {why}; "
            "set noise_reg_weight=0 for this model"
        )
    use_disc = any(c.uses_discriminator for c in configs)
    if use_disc and not models.has("discriminator"):
        names = sorted({c.approach for c in configs if c.uses_discriminator})
        raise ValueError(
            f"approach {', '.join(names)} needs a discriminator, and the model {models.name} "
            f"({models.family}) has none; use an approach without it (enc, baseline, prior)"
        )
    # evaluated for enc too (steps 0), so that totals compare across approaches
    use_reg = any(c.encoder_reg_weight != 0 for c in configs)
    use_perc = any(c.perceptual_weight != 0 for c in configs)
    need = {"g": "generator", "e": "encoder", "v": "perceptual", "d": "discriminator"}
    used = {"g": True, "e": use_reg, "v": use_perc, "d": use_disc}
    mods = {k: models.net(need[k]).module if used[k] else None for k in need}
    if not used["e"] and models.has("encoder"):  # the encoder also gives the initial codes
        mods["e"] = models.net("encoder").module
    return Static(
        gen=mods["g"],
        enc=mods["e"],
        perc=mods["v"],
        disc=mods["d"],
        mask_mode=c0.mask_mode,
        prior_norm=c0.prior_norm,
        disc_loss=c0.disc_loss,
        use_perceptual=use_perc,
        use_reg=use_reg,
        use_prior=any(c.uses_prior for c in configs),
        use_disc=use_disc,
        record=record,
        steps=steps,
        compute_dtype=c0.compute_dtype,
        use_noise=use_noise,
    )


ROLE_KEYS = {"g": "generator", "v": "perceptual", "e": "encoder", "d": "discriminator"}


def variables_for(models, st: Static) -> dict:
    """The networks' variables as the step uses them: prepared once per model (each layer's
    weight-only work, e.g. the kernels of the input gradients, that would otherwise run in every
    step; `Network.prepared`), in the compute dtype."""
    used = {"g": True, "v": st.use_perceptual, "e": st.enc is not None, "d": st.use_disc}
    return {
        k: models.net(role).prepared(st.compute_dtype) for k, role in ROLE_KEYS.items() if used[k]
    }


__all__ = ["EngineState", "Static", "loss_terms", "run_steps", "evaluate", "TERMS"]
