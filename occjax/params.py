"""Variable trees: flat <-> nested, converted bundles on disk, shape checks.

A network's variables are a Flax variable dict, nested by collection and module path
(variables["params"]["mapping"]["dense0"]["kernel"]); flat, the same paths are joined with "/"
("params/mapping/dense0/kernel"). A converted bundle is a folder with one safetensors file per
network role (flat paths as keys) and `bundle.json`: per network its family, architecture config,
file sha256 and source (file, sha256, licence); the model's recommended inversion settings
("defaults"); attribution. Loading needs neither torch nor pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROLES = ("generator", "encoder", "perceptual", "discriminator")
BUNDLE_JSON = "bundle.json"
BUNDLE_VERSION = 2
SEP = "/"


class BundleError(ValueError):
    """A converted bundle is missing, incomplete or inconsistent."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a/b/c": leaf}."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + SEP))
        else:
            out[key] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a/b/c": leaf} -> nested dict."""
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *parents, last = key.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"key {key!r} collides with a leaf at {p!r}")
        node[last] = v
    return out


def shapes(flat: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(np.shape(v)) for k, v in flat.items()}


def check_shapes(
    what: str, got: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> None:
    """Raise one error listing every missing, unexpected and mis-shaped key."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(
        f"{k}: got {tuple(got[k])}, expected {tuple(expected[k])}"
        for k in set(got) & set(expected)
        if tuple(got[k]) != tuple(expected[k])
    )
    if missing or unexpected or wrong:
        lines = [f"{what}: parameters do not match the architecture"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        if wrong:
            lines.append(f"  wrong shape ({len(wrong)}): " + "; ".join(wrong))
        raise BundleError("\n".join(lines))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_flat(
    path: str | os.PathLike, flat: Mapping[str, np.ndarray], dtype: str = "float32"
) -> None:
    """Write flat variables as safetensors, float32 or float16 (`load_flat` gives float32)."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=dtype)) for k, v in flat.items()}
    atomic_write_bytes(path, save(arrays))


def load_flat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return {k: v.astype(np.float32, copy=False) for k, v in load_file(str(path)).items()}
    except Exception as e:  # safetensors raises its own error types
        raise BundleError(f"{path}: not a readable safetensors file ({e})") from None


def config_to_json(module: Any) -> dict:
    """A configured Flax module's settings (its dataclass fields) as JSON."""
    skip = ("parent", "name")
    return {
        f.name: getattr(module, f.name) for f in dataclasses.fields(module) if f.name not in skip
    }


def write_bundle_json(folder: str | os.PathLike, doc: Mapping[str, Any]) -> None:
    """bundle.json: {"networks": {role: entry}, optional "defaults", "name", "attribution"}."""
    doc = {"occjax_bundle": BUNDLE_VERSION, **doc}
    atomic_write_bytes(Path(folder) / BUNDLE_JSON, json.dumps(doc, indent=2).encode())


def read_bundle_doc(folder: str | os.PathLike) -> dict[str, Any]:
    """The whole bundle.json of a bundle folder (checked: version 2, a "networks" table)."""
    folder = Path(folder)
    path = folder / BUNDLE_JSON
    if not folder.is_dir():
        raise BundleError(
            f"model bundle {folder}: no such folder (make one with scripts/convert.py)"
        )
    if not path.is_file():
        raise BundleError(f"{folder} is not a converted bundle: {BUNDLE_JSON} is missing")
    try:
        doc = json.loads(path.read_text())
        version = doc.get("occjax_bundle")
        if not isinstance(doc["networks"], dict):
            raise TypeError("networks is not a table")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{path}: unreadable bundle description ({e})") from None
    if version != BUNDLE_VERSION:
        raise BundleError(
            f"{folder}: bundle format {version}, this occjax reads format {BUNDLE_VERSION} "
            "(parameter paths changed); convert the checkpoints again with scripts/convert.py"
        )
    return doc


def bundle_hash(folder: str | os.PathLike) -> str:
    """A short content hash of a bundle: the sha256 of its description (which holds every file's sha256)."""
    return hashlib.sha256((Path(folder) / BUNDLE_JSON).read_bytes()).hexdigest()[:16]
