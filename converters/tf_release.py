"""Read idinvert's original TensorFlow release (`styleganinv_face_256.pkl`) without TensorFlow.

The file is a pickle of the tuple `(E, G, D, Gs)` of dnnlib `tflib.Network` objects. It is read with a
restricted unpickler that knows only the dnnlib `Network` class (mapped to `TFNetwork`, a stub that
keeps the pickled state) and numpy's array and scalar reconstruction functions (numpy 1.x and 2.x
spellings); every other global is refused before anything runs. `dnnlib` is never imported and the
`build_module_src` a real file carries (the module source dnnlib would `exec`) is never executed.

Each network's TF variables then go through one name table (TF name -> PyTorch key and layout),
which gives exactly the state dict the PyTorch checkpoint would hold: idinvert_pytorch's generator
keys (from `Gs`, or `G`) and genforce's StyleGAN discriminator keys (from `D`). The buffers TF does
not store (truncation coefficients, [1,2,1] blur kernels) are rebuilt as the PyTorch reference builds
them. Those state dicts go through the same family tables and checks as a `.pth` file
(`converters.convert_state`), so both routes give the same parameters bit for bit.

Whether an up-sampling layer is fused cannot be read from a TF file (TF decides it by resolution,
fused from 128 on, as in the real release); `fused_min_res` sets it.

The encoder `E` is never converted: the two TF encoders that can be in the release (Sep-2020 and
Apr-2020 versions of genforce/idinvert's `networks_encoder.py`; see the fixture README) are detected
from their variable names and shapes, and neither maps exactly onto the PyTorch encoder that occjax
runs, so the encoder must come from idinvert_pytorch's `styleganinv_ffhq256_encoder.pth`.
"""

from __future__ import annotations

import math
import pickle
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import ConversionError, source_info

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

TF_RELEASE_URL = "https://drive.google.com/file/d/1azAzSZg6VfNydjWr4qfl8Z4LfxktTPqM"
GENERATORS = ("Gs", "G")  # Gs: the moving average, what idinvert uses for inference
TRUNCATION_PSI = 0.7  # idinvert_pytorch StyleGANGeneratorNet defaults
TRUNCATION_LAYERS = 8


# ---- restricted reading -------------------------------------------------------------------------


class TFNetwork:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state, runs nothing."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        name = self.state.get("name") if isinstance(self.state, dict) else None
        return f"TFNetwork({name!r})"


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x spellings
    ALLOWED_GLOBALS[(_mod, "_reconstruct")] = _multiarray._reconstruct
    ALLOWED_GLOBALS[(_mod, "scalar")] = _multiarray.scalar


class _Refused(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `ALLOWED_GLOBALS`; any other global or persistent id is refused."""

    def find_class(self, module: str, name: str) -> Any:
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise _Refused(f"the global {module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"a persistent id ({str(pid)[:60]})")


def load_release(path: str | Path) -> tuple:
    """Unpickle the file with the restricted unpickler; return the `(E, G, D, Gs)` tuple."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == b"PK":
            raise ConversionError(
                f"{path}: a zip archive (a PyTorch .pth checkpoint?), not idinvert's TensorFlow "
                "release pickle; give .pth files with --generator/--encoder/--discriminator"
            )
        f.seek(0)
        try:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
        except _Refused as e:
            raise ConversionError(
                f"{path}: refused: the pickle names {e}, and only dnnlib's Network class and numpy "
                "arrays are allowed (anything else could execute code); nothing from it was run. "
                "It is not idinvert's TensorFlow release"
            ) from None
        except Exception as e:  # EOFError, UnpicklingError, ValueError, TypeError, ...
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConversionError(
                f"{path}: cannot be read as a pickle: it is truncated or corrupt, or not a pickle "
                f"({msg}); the full release styleganinv_face_256.pkl is over 600 MB"
            ) from None
    return _check_tuple(obj, str(path))


def _describe(obj: Any) -> str:
    if isinstance(obj, TFNetwork):
        return repr(obj)
    if isinstance(obj, tuple | list):
        return f"a {type(obj).__name__} of {len(obj)} ({', '.join(_describe(o) for o in obj[:5])})"
    return type(obj).__name__


def _check_tuple(obj: Any, where: str) -> tuple:
    nets = isinstance(obj, tuple) and all(isinstance(o, TFNetwork | None) for o in obj)
    if nets and len(obj) == 3:
        raise ConversionError(
            f"{where}: a (G, D, Gs) tuple: an NVlabs StyleGAN/StyleGAN2 release, not idinvert's "
            "TensorFlow release (E, G, D, Gs)"
        )
    if not (nets and len(obj) == 4):
        raise ConversionError(
            f"{where}: not idinvert's TensorFlow release: expected the tuple (E, G, D, Gs) of "
            f"dnnlib Networks, got {_describe(obj)}"
        )
    for name, net in zip(("G", "D", "Gs"), obj[1:]):
        if net is None:
            raise ConversionError(f"{where}: {name} is None in the (E, G, D, Gs) tuple")
        state = net.state
        bad = not isinstance(state, dict) or not {"variables", "components"} <= set(state)
        if bad or not isinstance(state["components"], dict):
            raise ConversionError(f"{where}: {name} is not a dnnlib Network state (version 3)")
    return obj


# ---- name tables --------------------------------------------------------------------------------


def same(a: np.ndarray) -> np.ndarray:
    return a


def dense_T(a: np.ndarray) -> np.ndarray:
    """TF dense [in,out] -> torch Linear [out,in]."""
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d dense weight, got shape {a.shape}")
    return a.transpose(1, 0)


def conv_C(a: np.ndarray) -> np.ndarray:
    """TF conv [kh,kw,in,out] -> torch [out,in,kh,kw]."""
    if a.ndim != 4:
        raise ValueError(f"expected a 4-d conv weight, got shape {a.shape}")
    return a.transpose(3, 2, 0, 1)


@dataclass(frozen=True)
class Ctx:
    log2_res: int  # L
    fused_min_res: int


# target(match, ctx) -> (PyTorch key or None for "checked, not stored", layout)
Target = Callable[[re.Match, Ctx], tuple[str | None, Callable[[np.ndarray], np.ndarray]]]


@dataclass(frozen=True)
class TFRule:
    pattern: str  # full match on the TF variable name (relative to the network's scope)
    target: Target
    check: Callable[[str, np.ndarray], str | None] | None = None


def _zero(name: str, a: np.ndarray) -> str | None:
    return None if np.all(a == 0) else f"{name} must be 0 (got {a.ravel()[:4]})"


def _log2(res: str) -> int:
    r = int(res)
    if r < 4 or r & (r - 1):
        raise ValueError(f"resolution {res} is not a power of two >= 4")
    return int(math.log2(r))


R = r"(?P<R>\d+)x(?P=R)"  # a resolution scope such as 32x32
EPILOGUE = {
    "Noise/weight": ("epilogue.apply_noise.weight", same),
    "bias": ("epilogue.bias", same),
    "StyleMod/weight": ("epilogue.style_mod.dense.fc.weight", dense_T),
    "StyleMod/bias": ("epilogue.style_mod.dense.wscale.bias", same),
}
_EPI = "|".join(re.escape(k) for k in EPILOGUE)


def _synthesis_layer(m: re.Match) -> int:
    """Layer index of a synthesis scope: 4x4/Const 0, 4x4/Conv 1, RxR/Conv0_up 2r-4, RxR/Conv1 2r-3."""
    scope = m["scope"]
    if scope == "4x4/Const":
        return 0
    if scope == "4x4/Conv":
        return 1
    r = _log2(m["R"])
    if r < 3:
        raise ValueError(f"no {scope} block below 8x8")
    return 2 * r - 4 if scope.endswith("Conv0_up") else 2 * r - 3


def _epilogue(m: re.Match, ctx: Ctx):
    key, layout = EPILOGUE[m["var"]]
    return f"synthesis.layer{_synthesis_layer(m)}.{key}", layout


def _conv0_up(m: re.Match, ctx: Ctx):
    k = _synthesis_layer(m)
    if int(m["R"]) >= ctx.fused_min_res:  # fused: the PyTorch release keeps the TF layout
        return f"synthesis.layer{k}.weight", same
    return f"synthesis.layer{k}.conv.weight", conv_C


def _to_rgb(m: re.Match, ctx: Ctx):
    b = ctx.log2_res - int(m["j"]) - 2  # ToRGB_lod{L-r} is output{r-2}
    if b < 0:
        raise ValueError(f"no ToRGB_lod{m['j']} at resolution {2**ctx.log2_res}")
    key = f"synthesis.output{b}." + ("conv.weight" if m["var"] == "weight" else "bias")
    return key, conv_C if m["var"] == "weight" else same


GENERATOR_TABLE = (
    TFRule(r"lod", lambda m, c: (None, same), _zero),
    TFRule(r"dlatent_avg", lambda m, c: ("truncation.w_avg", same)),
)
MAPPING_TABLE = (
    TFRule(r"Dense(?P<i>\d+)/weight", lambda m, c: (f"mapping.dense{m['i']}.fc.weight", dense_T)),
    TFRule(r"Dense(?P<i>\d+)/bias", lambda m, c: (f"mapping.dense{m['i']}.wscale.bias", same)),
)
SYNTHESIS_TABLE = (
    TFRule(r"lod", lambda m, c: ("synthesis.lod", same)),
    TFRule(
        r"noise(?P<k>\d+)",
        lambda m, c: (f"synthesis.layer{int(m['k'])}.epilogue.apply_noise.noise", same),
    ),
    TFRule(r"4x4/Const/const", lambda m, c: ("synthesis.layer0.const", same)),
    TFRule(r"(?P<scope>4x4/Conv)/weight", lambda m, c: ("synthesis.layer1.conv.weight", conv_C)),
    TFRule(rf"(?P<scope>{R}/Conv0_up)/weight", _conv0_up),
    TFRule(
        rf"(?P<scope>{R}/Conv1)/weight",
        lambda m, c: (f"synthesis.layer{_synthesis_layer(m)}.conv.weight", conv_C),
    ),
    TFRule(rf"(?P<scope>4x4/Const|4x4/Conv|{R}/Conv(?:0_up|1))/(?P<var>{_EPI})", _epilogue),
    TFRule(r"ToRGB_lod(?P<j>\d+)/(?P<var>weight|bias)", _to_rgb),
)


def _d_block(m: re.Match, ctx: Ctx) -> int:
    """Discriminator block b = L - r of a RxR scope."""
    b = ctx.log2_res - _log2(m["R"])
    if b < 0 or _log2(m["R"]) < 3:
        raise ValueError(f"no {m['R']}x{m['R']} block at resolution {2**ctx.log2_res}")
    return b


def _d_var(m: re.Match, layer: int, dense: bool = False):
    if m["var"] == "bias":
        return f"layer{layer}.bias", same
    return f"layer{layer}.weight", dense_T if dense else conv_C


DISCRIMINATOR_TABLE = (
    TFRule(r"lod", lambda m, c: ("lod", same)),
    TFRule(
        r"FromRGB_lod(?P<j>\d+)/(?P<var>weight|bias)",
        lambda m, c: (
            f"input{int(m['j'])}.{m['var']}",
            conv_C if m["var"] == "weight" else same,
        ),
    ),
    TFRule(rf"{R}/Conv0/(?P<var>weight|bias)", lambda m, c: _d_var(m, 2 * _d_block(m, c))),
    TFRule(rf"{R}/Conv1_down/(?P<var>weight|bias)", lambda m, c: _d_var(m, 2 * _d_block(m, c) + 1)),
    TFRule(r"4x4/Conv/(?P<var>weight|bias)", lambda m, c: _d_var(m, 2 * (c.log2_res - 2))),
    TFRule(
        r"4x4/Dense(?P<i>[01])/(?P<var>weight|bias)",
        lambda m, c: _d_var(m, 2 * (c.log2_res - 2) + 1 + int(m["i"]), dense=True),
    ),
)


def apply_table(
    table: tuple[TFRule, ...],
    variables: Mapping[str, np.ndarray],
    ctx: Ctx,
    where: str,
    out: dict[str, np.ndarray],
    origin: dict[str, str],
    problems: list[str],
) -> None:
    """Map every TF variable through `table` into `out` (PyTorch keys and layouts, views only).

    Every variable must match exactly one rule and give a PyTorch key no other variable gives;
    everything else is appended to `problems` (the caller raises them together).
    """
    compiled = [(re.compile(r.pattern), r) for r in table]
    unmatched, ambiguous = [], []
    for name, value in variables.items():
        hits = [(m, r) for rx, r in compiled if (m := rx.fullmatch(name))]
        if not hits:
            unmatched.append(name)
            continue
        if len(hits) > 1:
            ambiguous.append(name)
            continue
        m, rule = hits[0]
        if rule.check is not None and (msg := rule.check(f"{where}/{name}", value)):
            problems.append(msg)
        try:
            key, layout = rule.target(m, ctx)
            if key is None:
                continue
            if key in out:
                problems.append(f"{where}/{name} and {origin[key]} both give the PyTorch key {key}")
                continue
            out[key] = layout(value)
            origin[key] = f"{where}/{name}"
        except ValueError as e:
            problems.append(f"{where}/{name} {list(value.shape)}: {e}")
    if unmatched:
        problems.append(
            f"{where}: variables no rule knows ({len(unmatched)}): " + ", ".join(sorted(unmatched))
        )
    if ambiguous:
        problems.append(f"{where}: variables matched by several rules: " + ", ".join(ambiguous))


# ---- network states -----------------------------------------------------------------------------


def network_variables(net: TFNetwork, where: str, problems: list[str]) -> dict[str, np.ndarray]:
    """A network's own variables as {relative TF name: float32 ndarray} (scalars become 0-d)."""
    out: dict[str, np.ndarray] = {}
    try:
        pairs = list(net.state["variables"])
    except TypeError:
        problems.append(f"{where}: its variables are not a list of (name, value) pairs")
        return out
    for item in pairs:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            problems.append(f"{where}: a variable entry is not a (name, value) pair")
            continue
        name, value = item
        a = np.asarray(value)
        if name in out:
            problems.append(f"{where}/{name}: stored twice")
        elif a.dtype.kind != "f":
            problems.append(f"{where}/{name}: dtype {a.dtype}, expected float32")
        else:
            out[name] = a if a.dtype == np.float32 else a.astype(np.float32)
    return out


def _family_check(net: TFNetwork, where: str, build: str, problems: list[str]) -> bool:
    got = net.state.get("build_func_name")
    if got != build:
        problems.append(
            f"{where}: built by {got!r}, not {build!r}: another family of network than idinvert's "
            "StyleGAN (e.g. StyleGAN2's G_main / D_stylegan2)"
        )
        return False
    return True


def _log2_res(names: list[str], rx: str, where: str, problems: list[str]) -> int | None:
    rs = [int(m["R"]) for n in names if (m := re.match(rx, n))]
    try:
        return _log2(str(max(rs))) if rs else None
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return None


def blur_kernel(channels: int) -> np.ndarray:
    """The fixed [C,1,3,3] blur buffer, built as idinvert_pytorch / genforce build it."""
    k = np.array([1, 2, 1], dtype=np.float32).reshape(1, -1)
    k = k.T.dot(k)
    k = k / np.sum(k)
    return np.ascontiguousarray(np.tile(k[None, None], (channels, 1, 1, 1)))


def truncation_coefs(num_layers: int) -> np.ndarray:
    """idinvert_pytorch `TruncationModule.truncation` [1, L, 1]: psi 0.7 on the first 8 layers."""
    layer_idx = np.arange(num_layers).reshape(1, num_layers, 1)
    coefs = np.ones_like(layer_idx, dtype=np.float32)
    coefs[layer_idx < TRUNCATION_LAYERS] *= np.float32(TRUNCATION_PSI)
    return coefs


def generator_state_dict(
    net: TFNetwork, where: str, fused_min_res: int, problems: list[str], notes: list[str]
) -> dict[str, np.ndarray]:
    """idinvert_pytorch generator state dict (PyTorch layouts) from the TF `G_style` network."""
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    if not _family_check(net, where, "G_style", problems):
        return out
    comps = net.state["components"]
    if set(comps) != {"mapping", "synthesis"}:
        problems.append(f"{where}: components {sorted(comps)}, expected mapping and synthesis")
        return out
    parts = [(where, net, "G_style", GENERATOR_TABLE)]
    for comp, build, table in (
        ("mapping", "G_mapping", MAPPING_TABLE),
        ("synthesis", "G_synthesis", SYNTHESIS_TABLE),
    ):
        sub = comps[comp]
        sub_where = f"{where}/{comp}"
        if not isinstance(sub, TFNetwork) or not isinstance(sub.state, dict):
            problems.append(f"{sub_where}: not a dnnlib Network")
            return out
        parts.append((sub_where, sub, build, table))
    variables = {}
    for w, n, build, _ in parts:
        if not _family_check(n, w, build, problems):
            return out
        variables[w] = network_variables(n, w, problems)
    syn_where = f"{where}/synthesis"
    L = _log2_res(list(variables[syn_where]), rf"{R}/", syn_where, problems)
    if L is None:
        problems.append(f"{syn_where}: no resolution scope (4x4/..., 8x8/...) among its variables")
        return out
    ctx = Ctx(L, fused_min_res)
    for w, _, _, table in parts:
        apply_table(table, variables[w], ctx, w, out, origin, problems)
    # keys TF does not store, rebuilt as the PyTorch reference builds them
    num_layers = 2 * L - 2
    out["truncation.truncation"] = truncation_coefs(num_layers)
    for k in range(2, num_layers, 2):
        bias = out.get(f"synthesis.layer{k}.epilogue.bias")
        if bias is not None:
            out[f"synthesis.layer{k}.blur.kernel"] = blur_kernel(bias.shape[0])
    # structure='fixed' has only ToRGB_lod0: the others are unused at lod 0
    absent = [
        b
        for b in range(L - 2)
        if f"synthesis.output{b}.conv.weight" not in out and f"synthesis.output{b}.bias" not in out
    ]
    if f"synthesis.output{L - 2}.conv.weight" in out and absent and len(absent) == L - 2:
        for b in absent:
            c = out.get(f"synthesis.layer{2 * b + 1}.epilogue.bias")
            if c is not None:
                out[f"synthesis.output{b}.conv.weight"] = np.zeros((3, c.shape[0], 1, 1), "f4")
                out[f"synthesis.output{b}.bias"] = np.zeros((3,), "f4")
        notes.append(
            f"{syn_where}: no ToRGB_lod1..{L - 2} (built with structure='fixed'?); those outputs "
            "are unused at lod 0 and are written as zeros"
        )
    return out


def discriminator_state_dict(
    net: TFNetwork, where: str, problems: list[str], notes: list[str]
) -> dict[str, np.ndarray]:
    """genforce StyleGAN discriminator state dict (PyTorch layouts) from the TF `D_basic` network."""
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    if not _family_check(net, where, "D_basic", problems):
        return out
    if net.state["components"]:
        problems.append(f"{where}: unexpected components {sorted(net.state['components'])}")
    variables = network_variables(net, where, problems)
    L = _log2_res(list(variables), rf"{R}/Conv0/", where, problems)
    if L is None:
        problems.append(f"{where}: no resolution block (RxR/Conv0) among its variables")
        return out
    apply_table(DISCRIMINATOR_TABLE, variables, Ctx(L, 0), where, out, origin, problems)
    for b in range(L - 2):
        w = out.get(f"layer{2 * b + 1}.weight")
        if w is not None and w.ndim == 4:
            out[f"layer{2 * b + 1}.blur.kernel"] = blur_kernel(w.shape[1])
    # structure='fixed' has only FromRGB_lod0: the others are unused at lod 0
    absent = [j for j in range(1, L - 1) if f"input{j}.weight" not in out]
    if "input0.weight" in out and absent and len(absent) == L - 2:
        for j in absent:
            w = out.get(f"layer{2 * j - 1}.weight")  # the down-sampling conv feeding block j
            if w is not None and w.ndim == 4:
                out[f"input{j}.weight"] = np.zeros((w.shape[0], 3, 1, 1), "f4")
                out[f"input{j}.bias"] = np.zeros((w.shape[0],), "f4")
        notes.append(
            f"{where}: no FromRGB_lod1..{L - 2} (built with structure='fixed'?); those inputs are "
            "unused at lod 0 and are written as zeros"
        )
    return out


# ---- encoder detection --------------------------------------------------------------------------

_BN_SEP = r"batch_norm/(moving_mean|moving_variance|gamma|beta)"
_BN_APR = r"BatchNorm/(moving_mean|moving_variance|gamma|beta)"
ENCODER_CANDIDATES = {
    "sep2020": {
        "title": "the Sep-2020 TF encoder (genforce/idinvert HEAD networks_encoder.py)",
        "patterns": (
            rf"FromImg/(weight|bias|{_BN_SEP})",
            rf"E_block_\d+/(Shortcut|Conva|Convb)/(weight|bias|{_BN_SEP})",
            rf"Latent_out/(weight|bias|{_BN_SEP})",
        ),
        "first": ("FromImg/weight", 5),
        "why": (
            "a 5x5 first conv with bias, batch norm with gamma after the activation, shortcuts "
            "without activation and a dense output with bias; the PyTorch encoder has a 3x3 first "
            "conv without bias and batch norm without gamma before the activation, so it is a "
            "different network"
        ),
    },
    "apr2020": {
        "title": "the Apr-2020 TF encoder (genforce/idinvert 5b47be2 networks_encoder.py)",
        "patterns": (
            rf"encoder/input_image_stage/(weight|bn_input_stage/{_BN_APR})",
            rf"encoder/encoder_res_block_\d+/shortcut/(weight|shortcut_bn/{_BN_APR})",
            rf"encoder/encoder_res_block_\d+/conv1/(weight|bn_1/{_BN_APR})",
            rf"encoder/encoder_res_block_\d+/conv2/(weight|bn_2/{_BN_APR})",
            rf"encoder/encoder_fc/(weight|fc_1/{_BN_APR})",
        ),
        "first": ("encoder/input_image_stage/weight", 3),
        "why": (
            "the same layout as the PyTorch encoder, but its residual convs have no bias (the "
            "PyTorch encoder has wscale1/wscale2 biases) and its final dense has no weight "
            "scaling (the PyTorch one multiplies by 1/sqrt(fan_in)); no exact table exists, and "
            "filling in zeros and a scale would be a guess"
        ),
    },
}


@dataclass(frozen=True)
class EncoderReport:
    candidate: str  # "absent", "sep2020", "apr2020" or "unknown"
    name: str | None  # the Network's name ("E_gpu0", "E", ...)
    num_variables: int
    converted: bool  # always False: neither candidate maps exactly onto the PyTorch encoder
    message: str


def detect_encoder(e: TFNetwork | None) -> EncoderReport:
    """Which TF encoder `E` is, from its variable names and shapes; it is never converted."""
    use_pth = (
        "the encoder must come from idinvert_pytorch's styleganinv_ffhq256_encoder.pth "
        "(--encoder); the generator and discriminator are converted from the TF release"
    )
    if e is None:
        return EncoderReport(
            "absent", None, 0, False, f"the pickle has no encoder (E is None); {use_pth}"
        )
    state = e.state if isinstance(e, TFNetwork) and isinstance(e.state, dict) else {}
    name = state.get("name")
    problems: list[str] = []
    variables = network_variables(e, "E", problems) if "variables" in state else {}
    n = len(variables)
    for cand, c in ENCODER_CANDIDATES.items():
        rxs = [re.compile(p) for p in c["patterns"]]
        first, ksize = c["first"]
        w = variables.get(first)
        if (
            n
            and all(any(rx.fullmatch(v) for rx in rxs) for v in variables)
            and w is not None
            and w.ndim == 4
            and w.shape[:3] == (ksize, ksize, 3)
        ):
            msg = (
                f"E ({name!r}, {n} variables) is {c['title']}: {c['why']}. It is not converted: "
                f"{use_pth}"
            )
            return EncoderReport(cand, name, n, False, msg)
    shown = ", ".join(list(variables)[:4])
    msg = (
        f"E ({name!r}, {n} variables: {shown}{', ...' if n > 4 else ''}) is not a known TF encoder "
        f"of idinvert; it is not converted: {use_pth}"
    )
    return EncoderReport("unknown", name, n, False, msg)


# ---- whole file ---------------------------------------------------------------------------------


@dataclass
class TFRelease:
    """What `read_tf_release` gives: PyTorch-layout state dicts per role, plus notes."""

    path: Path
    state_dicts: dict[str, dict[str, np.ndarray]]  # role -> {PyTorch key: float32 ndarray}
    networks: dict[str, str]  # role -> the TF network it came from ("Gs", "G", "D")
    encoder: EncoderReport
    notes: list[str] = field(default_factory=list)


def read_tf_release(
    path: str | Path,
    roles: tuple[str, ...] = ("generator", "discriminator"),
    generator: str = "Gs",
    fused_min_res: int = 128,
) -> TFRelease:
    """Read the TF release and map the networks of `roles` to PyTorch state dicts.

    All problems of all requested networks are raised together in one `ConversionError`.
    """
    rel, problems = _read(path, roles, generator, fused_min_res)
    if problems:
        raise ConversionError(_problems_message(path, problems))
    return rel


def _problems_message(path: str | Path, problems: list[str]) -> str:
    return f"{path}: the TF variables do not fit idinvert's StyleGAN\n  " + "\n  ".join(problems)


def _read(
    path: str | Path, roles: tuple[str, ...], generator: str, fused_min_res: int
) -> tuple[TFRelease, list[str]]:
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    if fused_min_res < 1:
        raise ValueError(f"fused_min_res must be positive, got {fused_min_res}")
    unknown = set(roles) - {"generator", "discriminator"}
    if unknown:
        raise ValueError(
            f"the TF release gives only the generator and discriminator, not {unknown}"
        )
    path = Path(path)
    e, g, d, gs = load_release(path)
    problems: list[str] = []
    notes: list[str] = []
    sds, nets = {}, {}
    if "generator" in roles:
        net = gs if generator == "Gs" else g
        sds["generator"] = generator_state_dict(net, generator, fused_min_res, problems, notes)
        nets["generator"] = generator
    if "discriminator" in roles:
        sds["discriminator"] = discriminator_state_dict(d, "D", problems, notes)
        nets["discriminator"] = "D"
    return TFRelease(path, sds, nets, detect_encoder(e), notes), problems


def convert_tf_release(
    path: str | Path,
    roles: tuple[str, ...] = ("generator", "discriminator"),
    generator: str = "Gs",
    fused_min_res: int = 128,
) -> tuple[dict, TFRelease]:
    """Read the release and convert the networks of `roles`: ({role: Converted}, the release).

    The problems with the TF variables (unknown, duplicated, wrong rank) and those of the resulting
    state dicts (missing or mis-shaped PyTorch keys) are raised together in one `ConversionError`.
    """
    from converters import Converted, convert_state

    t0 = time.perf_counter()
    rel, problems = _read(path, roles, generator, fused_min_res)
    converted, errors = {}, []
    for role, sd in rel.state_dicts.items():
        if not sd:  # the network was refused as a whole (another family): already reported
            continue
        try:
            fam, flat, spec = convert_state(role, sd, f"{path} [{rel.networks[role]}]")
        except ConversionError as err:
            errors.append(str(err))
            continue
        converted[role] = (fam, flat, spec)
    if problems:
        errors.insert(0, _problems_message(path, problems))
    if errors:
        raise ConversionError("\n".join(errors))
    base = source_info(path)
    out = {}
    for role, (fam, flat, spec) in converted.items():
        info = dict(base)
        info.update(
            tf_network=rel.networks[role],
            tensors=len(flat),
            parameters=int(sum(v.size for v in flat.values())),
            convert_s=round(time.perf_counter() - t0, 3),
        )
        if role == "generator":
            info["fused_min_res"] = fused_min_res
        out[role] = Converted(role, fam.name, spec, flat, info)
    return out, rel
