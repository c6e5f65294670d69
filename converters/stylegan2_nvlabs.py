"""NVlabs `stylegan2-ada-pytorch` network pickles (`ffhq.pkl`, `network-snapshot-*.pkl`): read
without their code, and their key tables.

The pickle holds `torch_utils.persistence` objects that embed their source; a plain unpickle would
import and run it. `read_nvlabs` resolves only a fixed set of globals: the persistence hook, which
here returns a record of the object's class name and state (the embedded `module_src` is never
compiled); torch's tensor/parameter rebuild functions and `torch.storage._load_from_bytes`, whose
nested legacy `torch.save` blobs are parsed here into numpy arrays (their own pickles restricted
to torch's storage-type names); `collections.OrderedDict`, `dnnlib.util.EasyDict` (a dict) and
numpy's scalars. Anything else (os.system, builtins.eval, ...) is refused before it is resolved.
State dicts are rebuilt from each module record's `_parameters` / `_buffers` / `_modules`; the
architecture is checked against the pickled init kwargs (`_init_kwargs`): unconditional (c_dim 0),
synthesis "skip", discriminator "resnet", mapping lr 0.01; `conv_clamp` is taken from them.
"""

from __future__ import annotations

import collections
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    NUMPY_GLOBALS,
    ConversionError,
    Family,
    Refused,
    RestrictedUnpickler,
    Rule,
    oihw_to_hwio,
    out_in_to_in_out,
    torch_weight,
)
from converters.stylegan2_rosinality import fir_ok

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}  # fmt: skip


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict (attribute access is never needed)."""


class Persistent:
    """What a persistence object becomes: its class name and pickled state; nothing is run."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            raise Refused("a persistence record without a state dict")
        self.class_name = str(meta.get("class_name"))
        self.state = meta["state"]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    if not isinstance(storage, np.ndarray):
        raise Refused("a tensor whose storage is not numeric data")
    item = storage.itemsize
    n = int(np.prod(size)) if len(size) else 1
    if n and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= storage.size:
        raise Refused("a tensor view outside its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _load_from_bytes(b: bytes) -> np.ndarray:
    """A legacy `torch.save` of one storage -> its elements as a 1-d numpy array. Layout: magic,
    protocol and sys-info pickles, the object pickle (a persistent id naming the storage type and
    element count), the pickled list of storage keys, then per key an int64 count and raw data."""
    if not isinstance(b, bytes):
        raise Refused("storage bytes that are not bytes")
    f = io.BytesIO(b)
    for _ in range(3):
        RestrictedUnpickler(f, {}).load()  # magic number, protocol version, sys info: plain data
    found: list[tuple[str, Any, int]] = []

    class Inner(RestrictedUnpickler):
        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and pid[0] == "storage"):
                raise Refused(f"a persistent id ({str(pid)[:60]})")
            _, stype, key, _loc, numel = pid[:5]
            if not isinstance(stype, _StorageType) or len(pid) > 5 and pid[5] is not None:
                raise Refused("a storage of an unknown type or a storage view")
            found.append((str(key), stype.dtype, int(numel)))
            return found[-1]

    allowed = {("torch", n): _StorageType(n) for n in STORAGE_DTYPES}
    obj = Inner(f, allowed).load()
    keys = RestrictedUnpickler(f, {}).load()
    if len(found) != 1 or obj is not found[0] or keys != [found[0][0]]:
        raise Refused("a storage blob that holds more than one plain storage")
    _, dtype, numel = found[0]
    (count,) = struct.unpack("<q", f.read(8))
    data = f.read(count * np.dtype(dtype).itemsize)
    if count != numel or len(data) != count * np.dtype(dtype).itemsize:
        raise Refused("a truncated storage")
    return np.frombuffer(data, dtype).copy()


ALLOWED: dict[tuple[str, str], Any] = {
    **NUMPY_GLOBALS,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persistent,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


def state_dict(obj: Persistent, prefix: str = "") -> dict[str, np.ndarray]:
    """torch's state_dict of a module record: parameters, persistent buffers, sub-modules."""
    st = obj.state
    out = {}
    skip = st.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for k, v in (st.get(group) or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = np.asarray(v, np.float32)
    for k, m in (st.get("_modules") or {}).items():
        if m is not None:
            if not isinstance(m, Persistent):
                raise ConversionError(f"{prefix}{k}: a module of a class that is not persistent")
            out.update(state_dict(m, f"{prefix}{k}."))
    return out


def read_nvlabs(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{"generator": G_ema's state dict, "discriminator": D's}, with the architecture checked
    against the pickled init kwargs; `conv_clamp` (or None) under the key "__conv_clamp__"."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f, ALLOWED).load()
    except Refused as e:
        raise ConversionError(f"{path}: refused: the pickle names {e} (it could execute code); "
                              "only NVlabs stylegan2-ada-pytorch network pickles are read") from None  # fmt: skip
    except Exception as e:
        raise ConversionError(f"{path}: not a readable network pickle ({type(e).__name__}: {str(e)[:200]})") from None  # fmt: skip
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), Persistent):
        raise ConversionError(f"{path}: no G_ema network in the pickle (keys {list(data)[:8] if isinstance(data, dict) else type(data).__name__})")  # fmt: skip
    g = data["G_ema"]
    kw = g.state.get("_init_kwargs") or {}
    problems = []
    if g.class_name != "Generator":
        problems.append(f"G_ema is a {g.class_name}, not a Generator")
    if kw.get("c_dim", 0):
        problems.append(f"conditional generator (c_dim {kw['c_dim']}) is not supported")
    syn = dict(kw.get("synthesis_kwargs") or {})
    if syn.get("architecture", "skip") != "skip":
        problems.append(f"synthesis architecture {syn['architecture']!r}: only 'skip'")
    if dict(kw.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01) != 0.01:
        problems.append("mapping lr_multiplier other than 0.01")
    out = {"generator": state_dict(g)}
    d = data.get("D")
    if isinstance(d, Persistent):
        dkw = d.state.get("_init_kwargs") or {}
        if dkw.get("c_dim", 0) or dkw.get("architecture", "resnet") != "resnet":
            problems.append("discriminator: only unconditional 'resnet' is supported")
        if dict(dkw.get("epilogue_kwargs") or {}).get("mbstd_num_channels", 1) != 1:
            problems.append("discriminator: mbstd_num_channels other than 1")
        out["discriminator"] = state_dict(d)
    if problems:
        raise ConversionError(f"{path}: " + "; ".join(problems))
    clamp = syn.get("conv_clamp")
    out["conv_clamp"] = None if clamp is None else float(clamp)
    return out


def const(a: np.ndarray) -> np.ndarray:
    if a.ndim != 3:
        raise ValueError(f"expected a [C,4,4] constant, got shape {a.shape}")
    return a.transpose(1, 2, 0)[None]


def noise(a: np.ndarray) -> np.ndarray:
    if a.ndim != 2:
        raise ValueError(f"expected a [res,res] noise, got shape {a.shape}")
    return a[None, :, :, None]


def one(a: np.ndarray) -> np.ndarray:
    if a.size != 1:
        raise ValueError(f"expected one value, got shape {a.shape}")
    return a.reshape(1)


SB = r"synthesis\.b(?P<r>\d+)\.(?P<l>conv0|conv1|torgb)"
SP = "params/synthesis/b{r}_{l}"
G_RULES = (
    Rule(r"mapping\.fc(?P<i>\d+)\.weight", "params/mapping/fc{i}/kernel", out_in_to_in_out),
    Rule(r"mapping\.fc(?P<i>\d+)\.bias", "params/mapping/fc{i}/bias"),
    Rule(r"mapping\.w_avg", "buffers/w_avg"),
    Rule(r"synthesis\.b4\.const", "params/synthesis/const", const),
    Rule(rf"{SB}\.weight", f"{SP}/kernel", oihw_to_hwio),
    Rule(rf"{SB}\.bias", f"{SP}/bias"),
    Rule(rf"{SB}\.noise_strength", f"{SP}/noise_strength", one),
    Rule(rf"{SB}\.noise_const", "buffers/synthesis/b{r}_{l}/noise", noise),
    Rule(rf"{SB}\.affine\.weight", f"{SP}/affine/kernel", out_in_to_in_out),
    Rule(rf"{SB}\.affine\.bias", f"{SP}/affine/bias"),
    Rule(r"synthesis\.b\d+(\.(conv0|conv1|torgb))?\.resample_filter", None, check=fir_ok),
)
DB = r"b(?P<r>\d+)\.(?P<l>fromrgb|conv0|conv1|skip|conv|fc|out)"
D_RULES = (
    Rule(rf"{DB}\.weight", "params/b{r}_{l}/kernel", torch_weight),
    Rule(rf"{DB}\.bias", "params/b{r}_{l}/bias"),
    Rule(r"b\d+(\.(fromrgb|conv0|conv1|skip|conv))?\.resample_filter", None, check=fir_ok),
)

G_FAMILY = Family(
    name="stylegan2_generator",
    role="generator",
    rules=G_RULES,
    signature=("mapping.fc0.weight", "synthesis.b4.const"),
    description="NVlabs stylegan2-ada-pytorch generator (G_ema)",
)
D_FAMILY = Family(
    name="stylegan2_discriminator",
    role="discriminator",
    rules=D_RULES,
    signature=("b4.fc.weight", "b4.out.weight"),
    description="NVlabs stylegan2-ada-pytorch discriminator (D)",
)
