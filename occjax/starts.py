"""Where an inversion starts (`InvertConfig.init`): the encoder's code, the mean code, or the best
of a batch of sampled codes.

'mapped' draws `init_samples` z ~ N(0, I) (seed `init_seed`, so every problem of a seed has the same
candidates), maps them (W broadcast over W+; a generator whose code is z itself, the DCGAN, takes z),
truncates them towards the mean code by `init_psi`, adds the mean code itself where the generator
has one (so the start is never worse than 'w_avg' on the score below), and gives each target the
candidate with the lowest

    reconstruction_weight * reconstruction + perceptual_weight * perceptual

of its own config over its visible pixels (the mask mode of the config): the objective's data terms
at step 0, i.e. what the optimisation goes on to descend. The regularisers (encoder, prior,
discriminator) are left out: they say nothing about how well a candidate explains the photo, and the
prior's references are not the target. Candidates are synthesised once for all targets, in chunks
bounded by their pixel count; the perceptual features of (candidate x target mask) pairs, the costly
part when there is a perceptual network, run target by target (`lax.map`) inside one jitted call per
chunk. A model without a perceptual network (StyleGAN2 bundles) or a config with perceptual weight 0
selects by the masked mean squared error alone.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from occjax import engine
from occjax import losses as L

# the most candidate pixels synthesised at once (bounds the activations: 1024 candidates at 64 px,
# 64 at 256 px, 4 at 1024 px)
CHUNK_PIXELS = 2**22


def resolved(models, init: str) -> str:
    """The start an `init` setting gives on this model: "encoder", "w_avg" or "mapped" (raises a
    ValueError naming the missing network where the model cannot give it)."""
    if init == "auto":  # today's rule: the encoder, or w_avg for a model without one (StyleGAN2)
        if models.has("encoder"):
            return "encoder"
        if has_mean_code(models):
            return "w_avg"
        models.net("encoder")  # the usual "no encoder loaded" error
    if init == "encoder" and not models.has("encoder"):
        raise ValueError(
            f"init='encoder' needs an encoder, and the model {models.name} has none; use "
            "init='w_avg' or init='mapped'"
        )
    if init == "w_avg" and mean_code(models) is None:
        raise ValueError(
            f"init='w_avg': the {models.family} generator of {models.name} has no mean code (its "
            "code is z, not a mapped w); use init='mapped' (the best of sampled z) or 'encoder'"
        )
    return init


def has_mean_code(models) -> bool:
    """The generator defines `mean_code` (StyleGAN2: w_avg over W+, what 'auto' starts from)."""
    return models.has("generator") and hasattr(models.net("generator").module, "mean_code")


def mean_code(models) -> np.ndarray | None:
    """The generator's mean code [1, L, D]: w_avg over W+ (generators with a mapping network and a
    tracked w_avg), else None."""
    g = models.net("generator")
    if hasattr(g.module, "mean_code"):
        return np.asarray(g.apply(method="mean_code"), np.float32)
    w = g.variables.get("buffers", {}).get("w_avg")
    if w is None or not hasattr(g.module, "mapping"):
        return None
    return np.broadcast_to(np.asarray(w, np.float32), (1, *models.code_shape)).copy()


def sampled_codes(models, n: int, psi: float = 1.0, seed: int = 0) -> np.ndarray:
    """n codes [n, L, D] of z ~ N(0, I): mapped (no truncation of the model's own) then
    mean + psi (w - mean); a generator without a mapping network: psi z."""
    g = models.net("generator")
    z = jax.random.normal(jax.random.key(seed), (n, models.z_dim), jnp.float32)
    if hasattr(g.module, "mapping"):
        w = np.asarray(g.apply(z, method="mapping"), np.float32)
        mean = mean_code(models)
        center = np.zeros_like(w[:1]) if mean is None else mean
    else:
        w, center = np.asarray(g.apply(z, method="codes"), np.float32), 0.0
    return (center + np.float32(psi) * (w - center)).astype(np.float32)


def candidates(models, n: int, psi: float = 1.0, seed: int = 0) -> np.ndarray:
    """What 'mapped' chooses among: the mean code first (where the generator has one), then the n
    sampled codes: [n (+1), L, D]."""
    samples = sampled_codes(models, n, psi, seed)
    mean = mean_code(models)
    return samples if mean is None else np.concatenate([mean, samples])


@partial(jax.jit, static_argnames=("st",))
def candidate_scores(cand, variables, data, hyper, st: engine.Static):
    """[B, C]: each target's weighted reconstruction (+ perceptual) term at each candidate code
    (cand [C, L, D]; data and hyper of the B targets, as the engine's step takes them)."""
    synth = engine._net(lambda v, code: st.gen.apply(v, code, method="synthesis"), st)
    imgs = synth(variables["g"], cand)  # [C, H, W, 3], once for every target
    c = cand.shape[0]
    per = {"x": data["target"], "vis": data["visible"], "hyper": hyper}
    if st.use_perceptual:
        per["feat"] = data["feat_target"]

    def one(t):
        def rep(a):
            return jnp.broadcast_to(a[None], (c, *a.shape))

        vis = rep(t["vis"])
        delta = jnp.broadcast_to(t["hyper"]["delta"], (c,))
        s = t["hyper"]["rec_w"] * L.reconstruction(rep(t["x"]), imgs, vis, st.mask_mode, delta)
        if st.use_perceptual:
            f = engine.perceptual_features(st, variables["v"], imgs, vis)
            ft = jax.tree.map(rep, t["feat"])
            dist = st.perc.apply(variables["v"], ft, f, method="distance").astype(s.dtype)
            s = s + t["hyper"]["perc_w"] * dist
        return s

    return jax.lax.map(one, per)


def best_of(cand: np.ndarray, variables, data, hyper, st: engine.Static):
    """(index [B] of each target's best candidate, scores [B, C]), in chunks of candidates."""
    # only what the score reads shapes its program (not the step count, the regularisers, ...)
    st = dataclasses.replace(
        st, enc=None, disc=None, use_reg=False, use_prior=False, use_disc=False,
        record=False, steps=0, use_noise=False,
    )  # fmt: skip
    h, w = data["target"].shape[1:3]
    size = int(min(len(cand), max(1, CHUNK_PIXELS // (h * w))))
    pad = -len(cand) % size
    padded = np.concatenate([cand, np.repeat(cand[:1], pad, axis=0)]) if pad else cand
    scores = np.concatenate(
        [
            np.asarray(
                candidate_scores(jnp.asarray(padded[s : s + size]), variables, data, hyper, st)
            )
            for s in range(0, len(padded), size)
        ],
        axis=1,
    )[:, : len(cand)]
    # a non-finite score never wins (a candidate whose image overflows)
    return np.argmin(np.where(np.isfinite(scores), scores, np.inf), axis=1), scores


def initial_codes(models, configs, variables, data, hyper, st: engine.Static) -> np.ndarray:
    """The starting codes [B, L, D] of B problems, each by its config's `init` (problems that share
    an init setting are done together)."""
    b = len(configs)
    out = np.zeros((b, *models.code_shape), np.float32)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        kind = resolved(models, c.init)
        key = (kind, c.init_samples, c.init_psi, c.init_seed) if kind == "mapped" else (kind,)
        groups.setdefault(key, []).append(i)
    for key, idx in groups.items():
        sub = np.asarray(idx)
        if key[0] == "encoder":
            x = jnp.asarray(np.asarray(data["target"])[sub])
            out[sub] = np.asarray(engine.encode(variables["e"], x, st))
        elif key[0] == "w_avg":
            out[sub] = mean_code(models)
        else:
            cand = candidates(models, *key[1:])
            pick = jax.tree.map(lambda a, s=sub: jnp.asarray(np.asarray(a)[s]), (data, hyper))
            best, _ = best_of(cand, variables, *pick, st)
            out[sub] = cand[best]
    return out


__all__ = ["resolved", "mean_code", "sampled_codes", "candidates", "best_of", "initial_codes"]
