"""Read idinvert's original TensorFlow release (`styleganinv_face_256.pkl`) without TensorFlow.

The file is a pickle of the tuple `(E, G, D, Gs)` of dnnlib `tflib.Network` objects. It is read with a
restricted unpickler that knows only the dnnlib `Network` class (mapped to `TFNetwork`, a stub that
keeps the pickled state) and numpy's array and scalar reconstruction functions (numpy 1.x and 2.x
spellings); every other global is refused before anything runs. `dnnlib` is never imported and the
`build_module_src` a real file carries (the module source dnnlib would `exec`) is never executed.

Each network's TF variables then go through one name table straight to occjax's variable paths (TF
keeps HWIO conv kernels and [in, out] dense weights, as occjax does), with `converters.common`'s
matcher: every variable must match exactly one rule and no two may give one path. The result is
checked against the network module's own variables as a `.pth` conversion is, and gives the same
variables bit for bit. What TF does not store (blur kernels, truncation coefficients) the networks
build themselves.

Whether an up-sampling layer is fused cannot be read from a TF file (TF decides it by resolution,
fused from 128 on, as in the real release); `fused_min_res` sets it. A fused layer's kernel is
flipped in both spatial dims (the nearest + conv form occjax runs).

The encoder `E` is never converted: the two TF encoders that can be in the release (Sep-2020 and
Apr-2020 versions of genforce/idinvert's `networks_encoder.py`; see the fixture README) are detected
from their variable names and shapes, and neither maps exactly onto the PyTorch encoder that occjax
runs, so the encoder must come from idinvert_pytorch's `styleganinv_ffhq256_encoder.pth`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    NUMPY_GLOBALS,
    ConversionError,
    Refused,
    RestrictedUnpickler,
    Rule,
    apply_rules,
    flip_hw,
    keep,
    must_be_zero,
    nchw_to_nhwc,
    source_info,
)

TF_RELEASE_URL = "https://drive.google.com/file/d/1azAzSZg6VfNydjWr4qfl8Z4LfxktTPqM"
GENERATORS = ("Gs", "G")  # Gs: the moving average, what idinvert uses for inference


# ---- restricted reading -------------------------------------------------------------------------


class TFNetwork:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state, runs nothing."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        name = self.state.get("name") if isinstance(self.state, dict) else None
        return f"TFNetwork({name!r})"


ALLOWED_GLOBALS = {**NUMPY_GLOBALS, ("dnnlib.tflib.network", "Network"): TFNetwork}


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
            obj = RestrictedUnpickler(f, ALLOWED_GLOBALS, encoding="latin1").load()
        except Refused as e:
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


# ---- name tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    log2_res: int  # L
    fused_min_res: int


def _log2(res: str) -> int:
    r = int(res)
    if r < 4 or r & (r - 1):
        raise ValueError(f"resolution {res} is not a power of two >= 4")
    return int(math.log2(r))


R = r"(?P<R>\d+)x(?P=R)"  # a resolution scope such as 32x32
EPILOGUE = {
    "Noise/weight": "epilogue/noise_weight",
    "bias": "epilogue/bias",
    "StyleMod/weight": "epilogue/style/kernel",
    "StyleMod/bias": "epilogue/style/bias",
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


def _epilogue(m: re.Match, ctx: Ctx) -> str:
    return f"params/synthesis/layer{_synthesis_layer(m)}/{EPILOGUE[m['var']]}"


def _conv(m: re.Match, ctx: Ctx) -> str:
    return f"params/synthesis/layer{_synthesis_layer(m)}/conv/kernel"


def _fused(m: re.Match, ctx: Ctx) -> bool:
    return m["scope"].endswith("Conv0_up") and int(m["R"]) >= ctx.fused_min_res


def _conv_layout(m: re.Match, ctx: Ctx):
    # fused up-sampling is a transposed conv: as nearest x2 + conv, its kernel flipped
    return flip_hw if _fused(m, ctx) else keep


def _var(m: re.Match) -> str:
    return "kernel" if m["var"] == "weight" else "bias"


GENERATOR_TABLE = (
    Rule(r"lod", None, check=must_be_zero),
    Rule(r"dlatent_avg", "buffers/w_avg"),
)
MAPPING_TABLE = (
    Rule(r"Dense(?P<i>\d+)/weight", "params/mapping/dense{i}/kernel"),
    Rule(r"Dense(?P<i>\d+)/bias", "params/mapping/dense{i}/bias"),
)
SYNTHESIS_TABLE = (
    Rule(r"lod", None, check=must_be_zero),
    Rule(r"noise(?P<k>\d+)", "buffers/synthesis/layer{k}/noise", nchw_to_nhwc),
    Rule(r"4x4/Const/const", "params/synthesis/const", nchw_to_nhwc),
    # the fused Conv0_up kernels are flipped: see `_conv_layout` (applied by `_layouts`)
    Rule(rf"(?P<scope>4x4/Conv|{R}/Conv(?:0_up|1))/weight", _conv),
    Rule(rf"(?P<scope>4x4/Const|4x4/Conv|{R}/Conv(?:0_up|1))/(?P<var>{_EPI})", _epilogue),
    # ToRGB_lod0 is the full resolution's; the others serve progressive growing only
    Rule(
        r"ToRGB_lod(?P<j>\d+)/(?P<var>weight|bias)",
        lambda m, c: f"params/synthesis/to_rgb/{_var(m)}" if int(m["j"]) == 0 else None,
    ),
)


def _d_block(m: re.Match, ctx: Ctx) -> int:
    """Discriminator block b = L - r of a RxR scope."""
    b = ctx.log2_res - _log2(m["R"])
    if b < 0 or _log2(m["R"]) < 3:
        raise ValueError(f"no {m['R']}x{m['R']} block at resolution {2**ctx.log2_res}")
    return b


DISCRIMINATOR_TABLE = (
    Rule(r"lod", None, check=must_be_zero),
    Rule(
        r"FromRGB_lod(?P<j>\d+)/(?P<var>weight|bias)",
        lambda m, c: f"params/from_rgb/{_var(m)}" if int(m["j"]) == 0 else None,
    ),
    Rule(rf"{R}/Conv0/(?P<var>weight|bias)", lambda m, c: f"params/block{_d_block(m, c)}_conv0/{_var(m)}"),
    Rule(
        rf"{R}/Conv1_down/(?P<var>weight|bias)",
        lambda m, c: f"params/block{_d_block(m, c)}_conv1_down/{_var(m)}",
    ),
    Rule(r"4x4/Conv/(?P<var>weight|bias)", lambda m, c: f"params/head_conv/{_var(m)}"),
    Rule(r"4x4/Dense(?P<i>[01])/(?P<var>weight|bias)", lambda m, c: f"params/head_dense{m['i']}/{_var(m)}"),
)  # fmt: skip


def _layouts(variables: dict[str, np.ndarray], ctx: Ctx) -> dict[str, np.ndarray]:
    """The synthesis variables with each fused up-sampling kernel flipped."""
    rx = re.compile(rf"(?P<scope>{R}/Conv0_up)/weight")
    out = {}
    for k, v in variables.items():
        m = rx.fullmatch(k)
        out[k] = _conv_layout(m, ctx)(v) if m and v.ndim == 4 else v
    return out


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


def _apply(table, variables, ctx, where, out, problems) -> None:
    """`apply_rules` on one network's variables, problems prefixed with the network's scope."""
    got, lines = apply_rules(table, variables, ctx, where)
    for path in set(got) & set(out):
        problems.append(f"{where}: {path} is given twice")
    out.update(got)
    problems.extend(f"{where}: {line}" for line in lines)


def generator_variables(
    net: TFNetwork, where: str, fused_min_res: int, problems: list[str]
) -> dict[str, np.ndarray]:
    """occjax's idinvert_generator variables (flat) from the TF `G_style` network."""
    out: dict[str, np.ndarray] = {}
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
    variables[syn_where] = _layouts(variables[syn_where], ctx)
    for w, _, _, table in parts:
        _apply(table, variables[w], ctx, w, out, problems)
    return out


def discriminator_variables(
    net: TFNetwork, where: str, problems: list[str]
) -> dict[str, np.ndarray]:
    """occjax's stylegan_discriminator variables (flat) from the TF `D_basic` network."""
    out: dict[str, np.ndarray] = {}
    if not _family_check(net, where, "D_basic", problems):
        return out
    if net.state["components"]:
        problems.append(f"{where}: unexpected components {sorted(net.state['components'])}")
    variables = network_variables(net, where, problems)
    L = _log2_res(list(variables), rf"{R}/Conv0/", where, problems)
    if L is None:
        problems.append(f"{where}: no resolution block (RxR/Conv0) among its variables")
        return out
    _apply(DISCRIMINATOR_TABLE, variables, Ctx(L, 0), where, out, problems)
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
    """What `read_tf_release` gives: occjax variables (flat) per role, plus notes."""

    path: Path
    variables: dict[str, dict[str, np.ndarray]]  # role -> {occjax path: float32 ndarray}
    networks: dict[str, str]  # role -> the TF network it came from ("Gs", "G", "D")
    encoder: EncoderReport
    notes: list[str] = field(default_factory=list)


FAMILY_OF_ROLE = {"generator": "idinvert_generator", "discriminator": "stylegan_discriminator"}


def read_tf_release(
    path: str | Path,
    roles: tuple[str, ...] = ("generator", "discriminator"),
    generator: str = "Gs",
    fused_min_res: int = 128,
) -> TFRelease:
    """Read the TF release and map the networks of `roles` to occjax variables.

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
    out, nets = {}, {}
    if "generator" in roles:
        net = gs if generator == "Gs" else g
        out["generator"] = generator_variables(net, generator, fused_min_res, problems)
        nets["generator"] = generator
    if "discriminator" in roles:
        out["discriminator"] = discriminator_variables(d, "D", problems)
        nets["discriminator"] = "D"
    return TFRelease(path, out, nets, detect_encoder(e)), problems


def convert_tf_release(
    path: str | Path,
    roles: tuple[str, ...] = ("generator", "discriminator"),
    generator: str = "Gs",
    fused_min_res: int = 128,
) -> tuple[dict, TFRelease]:
    """Read the release and convert the networks of `roles`: ({role: Converted}, the release).

    The problems with the TF variables (unknown, duplicated, wrong rank) and those of the resulting
    variables (missing or mis-shaped against the network module) are raised together in one
    `ConversionError`.
    """
    from converters import Converted
    from occjax.networks.build import network_from_flat
    from occjax.params import BundleError

    t0 = time.perf_counter()
    rel, problems = _read(path, roles, generator, fused_min_res)
    converted, errors = {}, []
    for role, flat in rel.variables.items():
        if not flat:  # the network was refused as a whole (another family): already reported
            continue
        where = f"{path} [{rel.networks[role]}]"
        try:
            converted[role] = (flat, network_from_flat(FAMILY_OF_ROLE[role], flat, {}, where))
        except BundleError as err:
            errors.append(str(err))
    if problems:
        errors.insert(0, _problems_message(path, problems))
    if errors:
        raise ConversionError("\n".join(errors))
    base = source_info(path)
    out = {}
    for role, (flat, net) in converted.items():
        info = dict(base)
        info.update(
            tf_network=rel.networks[role],
            tensors=len(flat),
            parameters=int(sum(v.size for v in flat.values())),
            convert_s=round(time.perf_counter() - t0, 3),
        )
        if role == "generator":
            info["fused_min_res"] = fused_min_res
        out[role] = Converted(role, net.family, net.module, flat, info)
    return out, rel
