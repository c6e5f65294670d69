"""Checkpoint converters: PyTorch `.pth` files (and idinvert's TF pickle) -> occjax bundles.

`convert_file(path, role)` reads one checkpoint, recognises its family from its keys, applies that
family's key table and returns the converted parameters with the inferred architecture;
`write_bundle(folder, converted)` writes them as safetensors plus `bundle.json`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters import encoder, generator, stylegan_discriminator, vgg
from converters.common import (
    ConversionError,
    Family,
    convert_state_dict,
    detect_family,
    read_torch_state_dict,
    source_info,
)
from occjax.params import ROLES, save_flat, sha256_file, spec_to_json, write_bundle_json


def _families() -> tuple[Family, ...]:
    fams = [stylegan_discriminator.FAMILY, generator.FAMILY, encoder.FAMILY, vgg.FAMILY]
    try:
        from converters import stylenat

        fams.insert(0, stylenat.FAMILY)
    except ImportError:  # pragma: no cover - only while the StyleNAT port is absent
        pass
    return tuple(fams)


FAMILIES = _families()
DEFAULT_FAMILY = {
    "generator": generator.FAMILY,
    "encoder": encoder.FAMILY,
    "perceptual": vgg.FAMILY,
    "discriminator": stylegan_discriminator.FAMILY,
}


@dataclass
class Converted:
    role: str
    family: str
    spec: Any
    params: dict[str, np.ndarray]  # flat, checkpoint names, our layouts
    info: dict[str, Any]


def convert_state(role: str, src: dict[str, np.ndarray], where: str) -> tuple[Family, dict, Any]:
    """Recognise the family of a state dict given for `role` and convert it."""
    if role not in ROLES:
        raise ValueError(f"unknown network role {role!r}; expected one of {ROLES}")
    fam = detect_family(FAMILIES, set(src))
    if fam is not None and fam.role != role:
        raise ConversionError(
            f"{where}: this is a {fam.description} checkpoint ({fam.name}), "
            f"but it was given as the {role}"
        )
    fam = fam or DEFAULT_FAMILY[role]  # unrecognised: the detailed key report of the role's family
    flat, spec = convert_state_dict(fam, src, where)
    return fam, flat, spec


def convert_file(path: str | Path, role: str) -> Converted:
    t0 = time.perf_counter()
    src = read_torch_state_dict(path, subkey="d" if role == "discriminator" else None)
    fam, flat, spec = convert_state(role, src, str(path))
    info = source_info(path)
    info.update(
        tensors=len(flat),
        parameters=int(sum(v.size for v in flat.values())),
        convert_s=round(time.perf_counter() - t0, 3),
    )
    return Converted(role, fam.name, spec, flat, info)


def write_bundle(folder: str | Path, converted: dict[str, Converted]) -> dict[str, dict]:
    """Write one safetensors file per role and bundle.json; returns the bundle description."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for role, c in converted.items():
        fname = f"{role}.safetensors"
        save_flat(folder / fname, c.params)
        entries[role] = {
            "family": c.family,
            "file": fname,
            "sha256": sha256_file(folder / fname),
            "spec": spec_to_json(c.spec),
            **c.info,
        }
    write_bundle_json(folder, entries)
    return entries


__all__ = ["ConversionError", "Converted", "convert_file", "convert_state", "write_bundle"]
