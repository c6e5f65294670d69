"""StyleGAN2 checkpoints, either format, to converted networks: NVlabs `.pkl` (restricted
unpickler, `converters/stylegan2_nvlabs.py`) or rosinality `.pt` (`converters/stylegan2_rosinality.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from converters.common import ConversionError, convert_state_dict, source_info


def convert_stylegan2(path: str | Path) -> dict:
    """{"generator": Converted, "discriminator": Converted (if the file keeps one)}, ready for
    `converters.write_bundle`; each `info` holds the source, its sha256 and the conversion time."""
    from converters import stylegan2_rosinality as ros

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    t0 = time.perf_counter()
    if path.suffix == ".pkl":
        from converters import stylegan2_nvlabs as nv

        srcs, fams = nv.read_nvlabs(path), {"generator": nv.G_FAMILY, "discriminator": nv.D_FAMILY}
    else:
        srcs, fams = ros.read_rosinality(path), {"generator": ros.G_FAMILY, "discriminator": ros.D_FAMILY}  # fmt: skip
    clamp = srcs.pop("conv_clamp", None)
    return {
        role: convert_role(path, role, fams[role], src, clamp, t0) for role, src in srcs.items()
    }


def convert_role(path: Path, role: str, fam, src: dict, clamp: float | None = None, t0=None):
    """One StyleGAN2 network's state dict (either format) -> `Converted`; a generator without a
    tracked w_avg gets the mean of its mapping (`mapped_w_avg`)."""
    from converters import Converted

    t0 = time.perf_counter() if t0 is None else t0
    w_avg_missing = role == "generator" and not any(k in src for k in ("latent_avg", "mapping.w_avg"))  # fmt: skip
    if w_avg_missing:  # a placeholder so the strict table passes; replaced below
        src = {**src, "latent_avg": np.zeros(src["style.1.weight"].shape[0], np.float32)}
    flat, net = convert_state_dict(fam, src, f"{path} ({role})")
    module = net.module if clamp is None else net.module.clone(conv_clamp=clamp)
    info = source_info(path)
    if w_avg_missing:
        flat["buffers/w_avg"] = mapped_w_avg(module, net.variables)
        info["w_avg"] = "mean of the mapping over 10000 z (seed 0): the checkpoint has none"
    info.update(
        tensors=len(flat),
        parameters=int(sum(v.size for v in flat.values())),
        convert_s=round(time.perf_counter() - t0, 3),
    )
    return Converted(role, fam.name, module, flat, info)


def convert_torch_file(path: Path, role: str, fam, src: dict):
    """A StyleGAN2 network recognised in a torch file given for one role (`converters.convert_file`,
    `load_models(generator="x.pt")`): a rosinality checkpoint's g_ema / d, or a bare state dict of
    either format. A rosinality generator takes the checkpoint's top-level latent_avg as w_avg.
    (An NVlabs state dict carries no conv_clamp: the network pickle, through `convert_stylegan2`,
    does.)"""
    from converters import stylegan2_rosinality as ros

    t0 = time.perf_counter()
    if role == "generator" and fam is ros.G_FAMILY and "latent_avg" not in src:
        avg = ros.checkpoint_latent_avg(path)
        if avg is not None:
            src = {**src, "latent_avg": avg}
    return convert_role(Path(path), role, fam, src, None, t0)


def mapped_w_avg(module, variables, n: int = 10000, seed: int = 0) -> np.ndarray:
    """The mean of the mapping over n z ~ N(0, 1) (what NVlabs tracks in training and
    rosinality's mean_latent estimates): [w_dim]."""
    import jax

    z = jax.random.normal(jax.random.key(seed), (n, module.z_dim))
    w = module.apply(variables, z, method="mapping")[:, 0]
    return np.asarray(w.mean(axis=0), np.float32)


def networks(converted: dict) -> dict:
    """The converted networks as occjax `Network`s (for tests and scripts; bundles load the same)."""
    import jax.numpy as jnp
    from jax import tree

    from occjax.networks.build import Network
    from occjax.params import unflatten

    return {
        r: Network(c.family, c.module, tree.map(jnp.asarray, unflatten(c.variables)), c.info)
        for r, c in converted.items()
    }
