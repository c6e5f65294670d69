"""Shared machinery of the checkpoint converters: safe reading, key tables, one error for all problems.

Each checkpoint family (one module in `converters/`) declares a `Family`: a table of rules, each a
regular expression over source keys, the occjax variable path it goes to (a format string over the
expression's named groups, or a function of the match and the family's context; `None` for buffers
the network rebuilds itself, such as blur kernels, which are checked and dropped) and a layout
transform. Every source key must match exactly one rule and no two keys may give one path; the
converted variables are then checked against the architecture the network module builds, so a
missing, unexpected or mis-shaped key is reported together with all the others in a single error.
This is the only place (with the tables beside it) that knows checkpoint names.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occjax.params import BundleError, sha256_file, shapes

Transform = Callable[[np.ndarray], np.ndarray]


class ConversionError(BundleError):
    """A checkpoint cannot be converted: wrong file, wrong family, or keys that do not fit."""


# ---- layout transforms (source -> ours) ---------------------------------------------------------


def keep(a: np.ndarray) -> np.ndarray:
    return a


def flip_hw(a: np.ndarray) -> np.ndarray:
    """A [kh,kw,...] kernel flipped in both spatial dims."""
    return np.ascontiguousarray(a[::-1, ::-1])


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


Target = str | Callable[[re.Match, Any], "str | None"] | None


@dataclass(frozen=True)
class Rule:
    pattern: str  # regular expression, full match on the source key
    target: Target  # our variable path ("params/.../kernel", formatted with the named groups)
    transform: Transform = keep  # layout: source -> ours
    check: Callable[[str, np.ndarray], str | None] | None = None  # returns a problem or None


@dataclass(frozen=True)
class Family:
    name: str  # the occjax network family it converts to, e.g. "idinvert_generator"
    role: str  # generator | encoder | perceptual | discriminator
    rules: tuple[Rule, ...]
    # keys whose presence identifies the family among all families
    signature: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    # what the rules' callable targets need to know of the whole checkpoint (e.g. its last block)
    context: Callable[[Mapping[str, np.ndarray]], Any] = lambda src: None
    # source-only buffers (dropped by a None target) that a strict load still requires
    required: Callable[[Any, set[str]], set[str]] = lambda ctx, keys: set()

    def matches(self, keys: set[str]) -> bool:
        return bool(self.signature) and all(k in keys for k in self.signature)


def must_be_zero(key: str, a: np.ndarray) -> str | None:
    return (
        None if np.all(np.asarray(a) == 0) else f"{key} must be 0 (got {np.asarray(a).ravel()[:4]})"
    )


# ---- reading ------------------------------------------------------------------------------------

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

# what a pickle of numpy arrays may name (numpy 1.x and 2.x spellings)
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_mod, "_reconstruct")] = _multiarray._reconstruct
    NUMPY_GLOBALS[(_mod, "scalar")] = _multiarray.scalar


class Refused(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the `allowed` globals {(module, name): object}; any other global or
    persistent id is refused before anything from the file runs."""

    def __init__(self, file, allowed: dict[tuple[str, str], Any], **kw):
        super().__init__(file, **kw)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise Refused(f"the global {module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise Refused(f"a persistent id ({str(pid)[:60]})")


def read_torch_state_dict(path: str | Path, subkeys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read a .pth state dict as float32 numpy arrays, refusing anything but plain tensors.

    `torch.load(weights_only=True)` refuses pickles that name other globals (which could run code);
    a top-level dict holding the state dict under one of `subkeys` (StyleNAT's "d", a DCGAN
    training checkpoint's "netG_state_dict") is unwrapped.
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
    return state_dict_to_numpy(obj, str(path), subkeys)


def state_dict_to_numpy(
    obj: Any, where: str, subkeys: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    import torch

    for subkey in subkeys:
        if isinstance(obj, Mapping) and isinstance(obj.get(subkey), Mapping):
            obj = obj[subkey]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(
            f"{where}: not a state dict (a dict of tensors); got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        hint = (
            f" (a checkpoint with the state dict under one of {list(subkeys)}?)" if subkeys else ""
        )
        raise ConversionError(
            f"{where}: not a plain state dict: non-tensor entries {bad[:8]}{hint}"
        )
    return {str(k): v.detach().cpu().to(torch.float32).numpy() for k, v in obj.items()}


# ---- conversion ---------------------------------------------------------------------------------


def apply_rules(
    rules: tuple[Rule, ...],
    src: Mapping[str, np.ndarray],
    ctx: Any = None,
    where: str = "checkpoint",
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map every source key through the rules: (our flat variables, problems).

    A key no rule matches, a key several rules match, two keys giving one path, a failed check and
    a transform that refuses the array's shape are all problems; nothing is raised here."""
    compiled = [(re.compile(r.pattern), r) for r in rules]
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    unexpected, ambiguous, problems = [], [], []
    for key, value in src.items():
        hits = [(m, r) for rx, r in compiled if (m := rx.fullmatch(key))]
        if not hits:
            unexpected.append(key)
            continue
        if len(hits) > 1:
            ambiguous.append(key)
            continue
        m, rule = hits[0]
        if rule.check is not None and (msg := rule.check(key, value)):
            problems.append(msg)
        try:
            t = rule.target
            path = t(m, ctx) if callable(t) else (t.format(**m.groupdict()) if t else None)
            if path is None:
                continue
            if path in out:
                problems.append(f"{key} and {origin[path]} both give {path}")
                continue
            out[path] = np.ascontiguousarray(rule.transform(np.asarray(value, np.float32)))
            origin[path] = key
        except ValueError as e:
            problems.append(f"{key} {list(np.shape(value))}: {e}")
    lines = []
    if unexpected:
        lines.append(f"unexpected ({len(unexpected)}): " + ", ".join(sorted(unexpected)))
    if ambiguous:
        lines.append(f"matched by several rules ({len(ambiguous)}): " + ", ".join(ambiguous))
    if problems:
        lines.append(f"wrong values or shapes ({len(problems)}): " + "; ".join(problems))
    return out, lines


def source_key(rules: tuple[Rule, ...], path: str) -> str | None:
    """The source key that the rules would map onto our `path` (None if no template rule does):
    the rule's pattern with its named groups filled in from the path."""
    for r in rules:
        if not isinstance(r.target, str):
            continue
        rx = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(r.target))
        m = re.fullmatch(rx, path)
        if m:
            key = re.sub(r"\(\?P<(\w+)>[^()]*\)", lambda g, m=m: m[g[1]], r.pattern)
            return key.replace("\\.", ".")
    return None


def convert_state_dict(family: Family, src: Mapping[str, np.ndarray], where: str = "checkpoint"):
    """Apply the family's key table, check everything against the network's own variables, and
    return (flat variables, the occjax `Network`)."""
    from occjax.networks import family as network_family
    from occjax.networks.build import expected_shapes, network_from_flat

    ctx = family.context(src)
    flat, lines = apply_rules(family.rules, src, ctx, where)
    gone = sorted(family.required(ctx, set(src)) - set(src))
    if gone:
        lines.append(f"missing buffers ({len(gone)}): " + ", ".join(gone))
    try:
        module = network_family(family.name).config_from_shapes(shapes(flat))
    except (KeyError, ValueError, IndexError) as e:
        lines.append(f"cannot infer the {family.name} architecture: {e}")
        module = None
    if module is not None:
        want, got = expected_shapes(module), shapes(flat)

        def named(path: str) -> str:
            key = source_key(family.rules, path)
            return f"{key} ({path})" if key else path

        missing = [named(p) for p in sorted(set(want) - set(got))]
        extra = sorted(set(got) - set(want))
        wrong = [
            f"{named(p)}: got {got[p]}, expected {want[p]}"
            for p in sorted(set(got) & set(want))
            if got[p] != want[p]
        ]
        if missing:
            lines.append(f"missing ({len(missing)}): " + ", ".join(missing))
        if extra:
            lines.append(f"not in the architecture ({len(extra)}): " + ", ".join(extra))
        if wrong:
            lines.append(f"wrong shape ({len(wrong)}): " + "; ".join(wrong))
    if lines:
        raise ConversionError(f"{where}: does not fit {family.name}\n  " + "\n  ".join(lines))
    return flat, network_from_flat(family.name, flat, {}, where, config=None)


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
