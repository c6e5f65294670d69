"""Shared machinery of the checkpoint converters: safe reading, key tables, one error for all problems.

Each checkpoint family (one module in `converters/`) declares a `Family`: a table of rules, each a
regular expression over source keys and a layout transform (or `None` for buffers the network
rebuilds itself, such as blur kernels). Every source key must match exactly one rule; the converted
shapes are then checked against the architecture the network module infers from them, so a missing,
unexpected or mis-shaped key is reported together with all the others in a single error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occjax.params import BundleError, check_shapes, sha256_file, shapes

Transform = Callable[[np.ndarray], np.ndarray]


class ConversionError(BundleError):
    """A checkpoint cannot be converted: wrong file, wrong family, or keys that do not fit."""


# ---- layout transforms (source -> ours) ---------------------------------------------------------


def keep(a: np.ndarray) -> np.ndarray:
    return a


def oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    """torch conv weight [out,in,kh,kw] -> [kh,kw,in,out]."""
    if a.ndim != 4:
        raise ValueError(f"expected a 4-d conv weight, got shape {a.shape}")
    return a.transpose(2, 3, 1, 0)


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    """A [1,C,H,W] constant or noise buffer -> [1,H,W,C]."""
    if a.ndim != 4:
        raise ValueError(f"expected a 4-d NCHW tensor, got shape {a.shape}")
    return a.transpose(0, 2, 3, 1)


def out_in_to_in_out(a: np.ndarray) -> np.ndarray:
    """torch dense weight [out,in] -> [in,out]."""
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d dense weight, got shape {a.shape}")
    return a.T


def torch_weight(a: np.ndarray) -> np.ndarray:
    """A conv ([out,in,kh,kw]) or dense ([out,in]) weight, by rank, to [kh,kw,in,out] / [in,out]."""
    if a.ndim == 4:
        return oihw_to_hwio(a)
    if a.ndim == 2:
        return out_in_to_in_out(a)
    raise ValueError(f"expected a 2-d or 4-d weight, got shape {a.shape}")


def blur_kernel_121_ok(key: str, a: np.ndarray) -> str | None:
    """The fixed StyleGAN [1,2,1] blur buffer [C,1,3,3] (rebuilt by the network, so only checked)."""
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    ok = a.ndim == 4 and a.shape[1:] == (1, 3, 3) and np.allclose(a, k[None, None], atol=1e-7)
    return None if ok else f"{key}: expected the fixed [1,2,1] blur kernel"


@dataclass(frozen=True)
class Rule:
    pattern: str  # regular expression, full match on the source key
    transform: Transform | None  # None: a buffer the network rebuilds (checked, then dropped)
    check: Callable[[str, np.ndarray], str | None] | None = None  # returns a problem or None


@dataclass(frozen=True)
class Family:
    name: str  # e.g. "idinvert_generator"
    role: str  # generator | encoder | perceptual | discriminator
    rules: tuple[Rule, ...]
    # network hooks (from the occjax module): spec from converted shapes, expected converted shapes
    spec_from_shapes: Callable[[Mapping[str, tuple[int, ...]]], Any]
    param_shapes: Callable[[Any], dict[str, tuple[int, ...]]]
    # keys whose presence identifies the family among all families
    signature: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    # source-only buffers (dropped by a None rule) that a strict load still requires
    dropped_keys: Callable[[Any], set[str]] = lambda spec: set()

    def matches(self, keys: set[str]) -> bool:
        return bool(self.signature) and all(k in keys for k in self.signature)


def must_be_zero(key: str, a: np.ndarray) -> str | None:
    return (
        None if np.all(np.asarray(a) == 0) else f"{key} must be 0 (got {np.asarray(a).ravel()[:4]})"
    )


# ---- reading ------------------------------------------------------------------------------------


def read_torch_state_dict(path: str | Path, subkey: str | None = None) -> dict[str, np.ndarray]:
    """Read a .pth state dict as float32 numpy arrays, refusing anything but plain tensors.

    `torch.load(weights_only=True)` refuses pickles that name other globals (which could run code);
    a top-level dict holding the state dict under `subkey` (StyleNAT's "d") is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"{path}: reading .pth checkpoints needs PyTorch: pip install 'occjax[torch]' "
            "(or convert once with scripts/convert.py and load the bundle)"
        ) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise ConversionError(
                f"{path}: refused: the pickle names objects other than tensors "
                f"(it could execute code), so it is not a plain state dict ({msg[:200]})"
            ) from None
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({msg[:200]})") from None
    return state_dict_to_numpy(obj, str(path), subkey)


def state_dict_to_numpy(obj: Any, where: str, subkey: str | None = None) -> dict[str, np.ndarray]:
    import torch

    if isinstance(obj, Mapping) and subkey is not None and subkey in obj:
        obj = obj[subkey]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(
            f"{where}: not a state dict (a dict of tensors); got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        hint = f' (a checkpoint with the state dict under "{subkey}"?)' if subkey else ""
        raise ConversionError(
            f"{where}: not a plain state dict: non-tensor entries {bad[:8]}{hint}"
        )
    return {str(k): v.detach().cpu().to(torch.float32).numpy() for k, v in obj.items()}


# ---- conversion ---------------------------------------------------------------------------------


def convert_state_dict(
    family: Family, src: Mapping[str, np.ndarray], where: str = "checkpoint"
) -> tuple[dict[str, np.ndarray], Any]:
    """Apply the family's key table, check everything, return (converted flat params, spec)."""
    compiled = [(re.compile(r.pattern), r) for r in family.rules]
    out: dict[str, np.ndarray] = {}
    unexpected, ambiguous, problems = [], [], []
    for key, value in src.items():
        hits = [r for rx, r in compiled if rx.fullmatch(key)]
        if not hits:
            unexpected.append(key)
            continue
        if len(hits) > 1:
            ambiguous.append(key)
            continue
        rule = hits[0]
        if rule.check is not None and (msg := rule.check(key, value)):
            problems.append(msg)
        if rule.transform is None:
            continue
        try:
            out[key] = np.ascontiguousarray(rule.transform(np.asarray(value, np.float32)))
        except ValueError as e:
            problems.append(f"{key}: {e}")
    lines = []
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(sorted(unexpected)))
    if ambiguous:
        lines.append(f"  matched by several rules ({len(ambiguous)}): " + ", ".join(ambiguous))
    if problems:
        lines.append(f"  wrong values or shapes ({len(problems)}): " + "; ".join(problems))
    try:
        spec = family.spec_from_shapes(shapes(out))
    except (KeyError, ValueError, IndexError) as e:
        lines.append(f"  cannot infer the {family.name} architecture: {e}")
        spec = None
    if spec is not None:
        try:
            check_shapes(where, shapes(out), family.param_shapes(spec))
        except BundleError as e:
            lines.extend(str(e).splitlines()[1:])
        gone = sorted(family.dropped_keys(spec) - set(src))
        if gone:
            lines.append(f"  missing buffers ({len(gone)}): " + ", ".join(gone))
    if lines:
        raise ConversionError(f"{where}: does not fit {family.name}\n" + "\n".join(lines))
    return out, spec


def detect_family(families: tuple[Family, ...], keys: set[str]) -> Family | None:
    for fam in families:
        if fam.matches(keys):
            return fam
    return None


def source_info(path: str | Path) -> dict:
    path = Path(path)
    return {
        "source": str(path),
        "source_sha256": sha256_file(path),
        "source_bytes": path.stat().st_size,
    }
