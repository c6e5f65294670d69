"""The inversion engine: B independent inversions optimised at once under one compiled step.

Each problem b has its own target, mask, references (padded to a common count, with a validity
mask) and its own weights, sigma, k, x0 and learning rate: these are traced arrays, so changing
them never recompiles. What is static is only the structure: which terms exist at all in the batch,
the mask mode, the prior norm, the discriminator loss form, the number of steps per call.

Per step, as idinvert's `invert` (and the paper's code) does: x_rec = G(z); the loss terms are
evaluated at z; the gradient of their sum over the batch (= each problem's own gradient, since every
term is per sample and D scores each image alone) drives a torch-style Adam step. A problem whose
loss or gradient turns non-finite is frozen at its last finite code and flagged; the others go on.
The batch is sharded over the local devices (`jax.sharding`), and results do not depend on that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from occjax import encoder as E
from occjax import generator as G
from occjax import losses as L
from occjax import vgg as V
from occjax.config import InvertConfig

Array = jax.Array
TERMS = ("reconstruction", "perceptual", "encoder_reg", "prior", "discriminator", "total")


@dataclass(frozen=True)
class Static:
    """Everything that shapes the compiled step (hashable, static under jit)."""

    gen: Any
    enc: Any
    vgg: Any
    disc_family: str | None
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
    batch_invariant: bool = False  # one problem at a time inside the step (see `_step`)
    compute_dtype: str = "float32"  # networks' weights and activations; codes and losses float32


def hyper_from_configs(configs: list[InvertConfig]) -> dict[str, np.ndarray]:
    """Per-problem traced hyper-parameters, each [B] (prior_w < 0 means adaptive lambda3)."""

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
        "lr": arr(lambda c: c.lr),
        "beta1": arr(lambda c: c.beta1),
        "beta2": arr(lambda c: c.beta2),
        "eps": arr(lambda c: c.eps),
    }


def _discriminate(params, x, st: Static):
    from occjax.models import NETWORKS

    # group of 1: every sample is scored alone (as at batch 1), so no result depends on the batch
    return NETWORKS[st.disc_family].discriminate(params, x, st.disc, group_size=1)


def _net(f, st: Static):
    """A network call in the step's compute dtype (weights are cast in `params_for`), float32 out."""
    cd = jnp.dtype(st.compute_dtype)
    return lambda p, x: f(p, x.astype(cd)).astype(jnp.float32)


def loss_terms(z: Array, params: dict, data: dict, hyper: dict, st: Static) -> dict[str, Array]:
    """Every term per sample [B] at codes z [B, L, D], and the weighted total."""
    x = data["target"]
    vis = data["visible"]
    synth = _net(lambda p, w: G.synthesis(p, w, st.gen), st)
    x_rec = synth(params["g"], z)
    zero = jnp.zeros(z.shape[0], z.dtype)
    terms = {"reconstruction": L.reconstruction(x, x_rec, vis, st.mask_mode)}
    total = hyper["rec_w"] * terms["reconstruction"]
    if st.use_perceptual:
        feats = _net(lambda p, im: V.features(p, im, st.vgg), st)
        f_rec = feats(params["v"], L.perceptual_input(x_rec, vis, st.mask_mode))
        terms["perceptual"] = L.perceptual(data["feat_target"], f_rec)
        total = total + hyper["perc_w"] * terms["perceptual"]
    else:
        terms["perceptual"] = zero
    if st.use_reg:
        enc = _net(lambda p, im: E.encode(p, im, st.enc), st)
        terms["encoder_reg"] = L.encoder_reg(z, enc(params["e"], x_rec))
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
        disc = _net(lambda p, im: _discriminate(p, im, st), st)
        terms["discriminator"] = L.adversarial(disc(params["d"], x_rec), st.disc_loss)
        total = total + hyper["disc_w"] * terms["discriminator"]
    else:
        terms["discriminator"] = zero
    terms["total"] = total
    return terms


def _adam(z, g, m, v, t, hyper):
    """torch.optim.Adam (no weight decay), same operation order; per-problem lr/betas/eps."""
    b1 = hyper["beta1"][:, None, None]
    b2 = hyper["beta2"][:, None, None]
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * jnp.square(g)
    bc1 = 1 - b1**t
    bc2 = 1 - b2**t
    denom = jnp.sqrt(v) / jnp.sqrt(bc2) + hyper["eps"][:, None, None]
    step = hyper["lr"][:, None, None] / bc1
    return z - step * (m / denom), m, v


def _update(z, m, v, t, alive, params, data, hyper, st: Static):
    """One step for a batch of problems: loss terms, gradient, Adam, NaN freeze. t: steps done + 1."""

    def total(zz):
        terms = loss_terms(zz, params, data, hyper, st)
        return jnp.sum(terms["total"]), terms

    (_, terms), grad = jax.value_and_grad(total, has_aux=True)(z)
    z_new, m_new, v_new = _adam(z, grad, m, v, t.astype(z.dtype), hyper)
    finite = jnp.isfinite(terms["total"]) & jnp.all(jnp.isfinite(grad), axis=(1, 2))
    finite = finite & jnp.all(jnp.isfinite(z_new), axis=(1, 2))
    alive = alive & finite
    keep = alive[:, None, None]
    out = {"losses": terms, "grad_norm": jnp.sqrt(jnp.sum(jnp.square(grad), axis=(1, 2)))}
    z, m, v = (jnp.where(keep, a, b) for a, b in ((z_new, z), (m_new, m), (v_new, v)))
    return (z, m, v, alive), out


def _step(carry, _, params, data, hyper, st: Static):
    z, m, v, t, alive = carry
    t = t + 1
    if st.batch_invariant:
        # one problem at a time: every problem runs the same batch-1 program whatever B is, so its
        # numbers are bit-identical to solving it alone (batched XLA kernels round differently and
        # Adam amplifies last-bit differences)
        def one(args):
            zb, mb, vb, ab, db, hb = jax.tree.map(lambda a: a[None], args)
            return jax.tree.map(lambda a: a[0], _update(zb, mb, vb, t, ab, params, db, hb, st))

        (z, m, v, alive), out = jax.lax.map(one, (z, m, v, alive, data, hyper))
    else:
        (z, m, v, alive), out = _update(z, m, v, t, alive, params, data, hyper, st)
    if st.record:
        out["codes"] = z
    return (z, m, v, t, alive), out


def _run_steps(state, params, data, hyper, st: Static):
    step = partial(_step, params=params, data=data, hyper=hyper, st=st)
    if (
        st.steps == 1 and not st.batch_invariant
    ):  # no loop at all (XLA:CPU keeps even a length-1 scan as a slower while loop)
        state, out = step(state, None)
        return state, jax.tree.map(lambda a: a[None], out)
    return jax.lax.scan(step, state, None, st.steps)


_RUNNERS: dict = {}  # (donate, mesh, static) -> jitted runner


def _runner(donate: bool, mesh, st: Static):
    key = (donate, mesh, st)
    if key not in _RUNNERS:

        def f(state, params, data, hyper):
            return _run_steps(state, params, data, hyper, st)

        if mesh is not None:
            # every device runs the same program on its own problems (they never interact), so a
            # problem's numbers do not depend on how the batch is split over devices
            b, rep = P("batch"), P()
            f = jax.shard_map(
                f,
                mesh=mesh,
                in_specs=((b, b, b, rep, b), rep, b, b),
                out_specs=((b, b, b, rep, b), P(None, "batch")),
                check_vma=False,
            )
        _RUNNERS[key] = jax.jit(f, donate_argnums=(0,) if donate else ())
    return _RUNNERS[key]


def compiled_count() -> int:
    """Compiled step programs so far (a traced hyper-parameter change must not add one)."""
    return sum(r._cache_size() for r in _RUNNERS.values())


def run_steps(state, params, data, hyper, st: Static, mesh=None, host_loop: bool | None = None):
    """`st.steps` Adam steps from state (z, m, v, t, alive); returns the new state and the per-step
    trace. The steps are one `lax.scan` under one jit, except on CPU (`host_loop`, default there),
    where XLA:CPU runs a while-loop body ~1.5x slower than the same ops at top level (measured:
    1.64 s vs 1.09 s per ffhq256 baseline step), so the compiled single step is called from Python
    (same numbers; one dispatch per step is negligible at these step times). With a mesh, the batch
    axis is split over its devices (shard_map). Buffers are donated where supported (not CPU)."""
    donate = jax.default_backend() != "cpu"
    if host_loop is None:  # batch-invariant mode keeps the scan: its numbers were checked in it
        host_loop = jax.default_backend() == "cpu" and not st.batch_invariant
    if not host_loop or st.steps <= 1:
        return _runner(donate, mesh, st)(state, params, data, hyper)
    one = _runner(donate, mesh, dataclasses.replace(st, steps=1))
    outs = []
    for _ in range(st.steps):
        state, out = one(state, params, data, hyper)
        outs.append(out)
    return state, jax.tree.map(lambda *a: jnp.concatenate(a), *outs)


@partial(jax.jit, static_argnames=("st",))
def evaluate(z, params, data, hyper, st: Static):
    """The loss terms at z (e.g. after the last step) without an update."""
    f = lambda z, d, h: loss_terms(z, params, d, h, st)  # noqa: E731
    return _maybe_per_sample(f, st.batch_invariant, z, data, hyper)


def _maybe_per_sample(f, invariant: bool, *xs):
    """f over the leading axis, one sample at a time when batch-invariant (see `_step`)."""
    if not invariant:
        return f(*xs)

    def one(a):
        return jax.tree.map(lambda r: r[0], f(*jax.tree.map(lambda t: t[None], a)))

    return jax.lax.map(one, xs)


@partial(jax.jit, static_argnames=("spec", "mode", "invariant"))
def target_features(vparams, x, visible, spec, mode, invariant=False):
    """VGG features of the (masked) targets, computed once per inversion, not every step."""
    f = lambda x, vis: V.features(vparams, L.perceptual_input(x, vis, mode), spec)  # noqa: E731
    return _maybe_per_sample(f, invariant, x, visible)


@partial(jax.jit, static_argnames=("spec", "invariant"))
def encode_nhwc(eparams, x, spec, invariant=False):
    return _maybe_per_sample(lambda x: E.encode(eparams, x, spec), invariant, x)


@partial(jax.jit, static_argnames=("spec", "invariant"))
def synthesize_nhwc(gparams, z, spec, invariant=False):
    return _maybe_per_sample(lambda z: G.synthesis(gparams, z, spec), invariant, z)


def static_for(
    models, configs: list[InvertConfig], record: bool, steps: int, batch_invariant: bool = True
) -> Static:
    """The union of the terms the batch needs, with the networks' specs."""
    c0 = configs[0]
    for c in configs[1:]:
        for f in (
            "mask_mode",
            "prior_norm",
            "disc_loss",
            "occlusion_measure",
            "steps",
            "compute_dtype",
        ):
            if getattr(c, f) != getattr(c0, f):
                raise ValueError(
                    f"configs of one batch must share {f!r} (it shapes the compiled step); "
                    f"got {getattr(c0, f)!r} and {getattr(c, f)!r}"
                )
    use_disc = any(c.uses_discriminator for c in configs)
    use_reg = any(c.encoder_reg_weight != 0 for c in configs) and steps > 0
    use_perc = any(c.perceptual_weight != 0 for c in configs)
    need = ["generator"] + (["encoder"] if use_reg else []) + (["perceptual"] if use_perc else [])
    need += ["discriminator"] if use_disc else []
    for role in need:
        models.net(role)
    d = models.nets.get("discriminator")
    return Static(
        gen=models.net("generator").spec,
        enc=models.net("encoder").spec if use_reg else None,
        vgg=models.net("perceptual").spec if use_perc else None,
        disc_family=d.family if (use_disc and d is not None) else None,
        disc=d.spec if (use_disc and d is not None) else None,
        mask_mode=c0.mask_mode,
        prior_norm=c0.prior_norm,
        disc_loss=c0.disc_loss,
        use_perceptual=use_perc,
        use_reg=use_reg,
        use_prior=any(c.uses_prior for c in configs),
        use_disc=use_disc,
        record=record,
        steps=steps,
        batch_invariant=batch_invariant,
        compute_dtype=c0.compute_dtype,
    )


def params_for(models, st: Static) -> dict:
    """The networks' parameters as the step uses them: prepared once (each module's `prepare` does
    the weight-only work, e.g. the kernels of the input gradients, that would otherwise run in every
    step), then cast to the compute dtype."""
    roles = {"g": "generator", "v": "perceptual", "e": "encoder", "d": "discriminator"}
    used = {"g": True, "v": st.use_perceptual, "e": st.use_reg, "d": st.use_disc}
    p = {k: _prepared(models.net(roles[k])) for k in roles if used[k]}
    if st.compute_dtype != "float32":  # cast once here, not every step
        cd = jnp.dtype(st.compute_dtype)
        p = jax.tree.map(lambda a: a.astype(cd) if jnp.issubdtype(a.dtype, jnp.floating) else a, p)
    return p


_PREPARE_JIT: dict = {}


def _prepared(net) -> dict:
    """`net.module.prepare(params, spec)`, jitted per (family, spec)."""
    key = (net.family, net.spec)
    if key not in _PREPARE_JIT:
        _PREPARE_JIT[key] = jax.jit(partial(net.module.prepare, spec=net.spec))
    return _PREPARE_JIT[key](net.params)


def init_state(z0: Array) -> tuple:
    zeros = jnp.zeros_like(z0)
    return (z0, zeros, zeros, jnp.zeros((), jnp.int32), jnp.ones(z0.shape[0], bool))


__all__ = ["Static", "loss_terms", "run_steps", "evaluate", "TERMS"]
