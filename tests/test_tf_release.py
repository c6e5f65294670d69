"""idinvert's TensorFlow release read without TensorFlow: bit-for-bit equal to the .pth route,
the real ffhq256 name table (checked against the PyTorch table), refusals (foreign globals,
truncated files, other families), encoder detection and the convert CLI."""

from __future__ import annotations

import json
import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import IDINVERT, IDINVERT_TF, REPO, TINY, TOL, max_abs, need

import occjax
from converters import convert_file
from converters import generator as torch_generator
from converters import stylegan_discriminator as torch_discriminator
from converters.common import ConversionError, apply_rules
from converters.tf_release import (
    DISCRIMINATOR_TABLE,
    GENERATOR_TABLE,
    MAPPING_TABLE,
    SYNTHESIS_TABLE,
    Ctx,
    TFNetwork,
    convert_tf_release,
    detect_encoder,
    discriminator_variables,
    generator_variables,
    load_release,
    read_tf_release,
)
from occjax.networks import family
from occjax.networks.build import expected_shapes
from occjax.params import read_bundle_doc

sys.path.insert(0, str(REPO / "scripts"))
import convert as convert_script  # noqa: E402

TINY_PKL = IDINVERT_TF / "tiny64_tf_release.pkl"
ROLES = ("generator", "discriminator")


def tiny_pkl() -> str:
    return str(need(TINY_PKL))


def torch_sd(role: str) -> dict[str, np.ndarray]:
    torch = pytest.importorskip("torch")
    return {k: v.numpy() for k, v in torch.load(str(need(TINY[role])), weights_only=True).items()}


def network(name: str, build: str, variables, components=None) -> TFNetwork:
    net = TFNetwork()
    net.__setstate__(
        {
            "version": 3,
            "name": name,
            "static_kwargs": {},
            "components": dict(components or {}),
            "build_module_src": "",
            "build_func_name": build,
            "variables": list(variables),
        }
    )
    return net


@contextmanager
def fake_dnnlib():
    """A stand-in `dnnlib.tflib.network.Network` in sys.modules, only for WRITING test pickles."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods = {n: types.ModuleType(n) for n in names}
    mods["dnnlib.tflib.network"].Network = Network
    sys.modules.update(mods)
    try:
        yield Network
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def write_release(path, obj) -> str:
    """Pickle (E, G, D, Gs) (TFNetwork objects, recursively) as dnnlib would (numpy-2 spellings)."""
    with fake_dnnlib() as Network:

        def conv(o):
            if isinstance(o, TFNetwork):
                st = dict(o.state)
                st["components"] = {k: conv(v) for k, v in st["components"].items()}
                return Network(st)
            if isinstance(o, tuple):
                return tuple(conv(x) for x in o)
            return o

        path.write_bytes(pickle.dumps(conv(obj), protocol=4))
    assert "dnnlib" not in sys.modules
    return str(path)


def replace_vars(net: TFNetwork, fn) -> TFNetwork:
    st = dict(net.state)
    st["variables"] = fn(list(st["variables"]))
    out = TFNetwork()
    out.__setstate__(st)
    return out


# ---- bit for bit against the .pth route -----------------------------------------------------------


@pytest.mark.parametrize("generator", ["Gs", "G"])
def test_tiny_release_gives_the_pth_variables_bit_for_bit(generator):
    rel = read_tf_release(tiny_pkl(), ROLES, generator=generator, fused_min_res=32)
    assert rel.networks == {"generator": generator, "discriminator": "D"}
    for role, n in (("generator", 79), ("discriminator", 24)):
        ref, got = convert_file(need(TINY[role]), role).variables, rel.variables[role]
        assert set(got) == set(ref) and len(ref) == n
        for k in ref:
            assert got[k].dtype == ref[k].dtype == np.float32, k
            assert got[k].shape == ref[k].shape, k
            assert np.ascontiguousarray(got[k]).tobytes() == ref[k].tobytes(), k
    assert "dnnlib" not in sys.modules


def test_tiny_release_converts_to_the_same_networks_as_the_pth():
    converted, rel = convert_tf_release(tiny_pkl(), ROLES, fused_min_res=32)
    assert rel.encoder.candidate == "absent" and not rel.notes
    for role in ROLES:
        ref = convert_file(need(TINY[role]), role)
        got = converted[role]
        assert got.family == ref.family and got.module == ref.module
        assert set(got.variables) == set(ref.variables)
        for k, v in ref.variables.items():
            assert np.array_equal(got.variables[k], v) and got.variables[k].dtype == v.dtype, k
        assert got.info["tf_network"] == {"generator": "Gs", "discriminator": "D"}[role]


def test_fused_threshold_decides_the_fused_layers():
    """TF names a weight the same whether fused or not; a fused layer's kernel is flipped. The real
    rule (128) on the tiny file (built with 32) leaves layers 6 and 8 unflipped, all else equal."""
    k128 = read_tf_release(tiny_pkl(), ("generator",), fused_min_res=128).variables["generator"]
    k32 = read_tf_release(tiny_pkl(), ("generator",), fused_min_res=32).variables["generator"]
    assert set(k128) == set(k32)
    fused = {f"params/synthesis/layer{k}/conv/kernel" for k in (6, 8)}
    for k, v in k32.items():
        if k in fused:
            assert np.array_equal(k128[k], v[::-1, ::-1]) and not np.array_equal(k128[k], v), k
        else:
            assert np.array_equal(k128[k], v), k


@pytest.fixture(scope="module")
def tf_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfbundle")
    args = ["--out", str(out), "--tf-pickle", tiny_pkl(), "--fused-min-res", "32"]
    args += ["--encoder", str(need(TINY["encoder"]))]
    assert convert_script.main(args) == 0
    return out


def test_cli_tf_bundle_runs_like_the_fixtures(tf_bundle, tiny_models, fx):
    nets = read_bundle_networks(tf_bundle)
    assert set(nets) == {"generator", "discriminator", "encoder"}
    import hashlib

    sha = hashlib.sha256(TINY_PKL.read_bytes()).hexdigest()
    assert nets["generator"]["source_sha256"] == nets["discriminator"]["source_sha256"] == sha
    assert nets["generator"]["tf_network"] == "Gs" and nets["generator"]["fused_min_res"] == 32
    assert nets["encoder"]["source"] == str(TINY["encoder"])
    m = occjax.load_models(bundle=tf_bundle)
    wp, x = fx["inputs/wp"], fx["inputs/disc_images"]
    img = m.synthesis(wp)
    assert max_abs(img, tiny_models.synthesis(wp)) == 0
    assert max_abs(img, fx["synthesis/image"]) < TOL["synthesis"]
    score = m.discriminate(x)
    assert max_abs(score, tiny_models.discriminate(x)) == 0
    assert max_abs(score, fx["disc/score_batch8"][:, 0]) < TOL["disc"]
    assert max_abs(m.generate(fx["inputs/z"]), fx["generator/image_from_z"]) < TOL["generator"]


def test_cli_pth_wins_over_the_tf_release(tmp_path, capsys):
    out = tmp_path / "b"
    args = ["--out", str(out), "--tf-pickle", tiny_pkl(), "--fused-min-res", "32"]
    assert convert_script.main(args + ["--generator", str(need(TINY["generator"]))]) == 0
    nets = read_bundle_networks(out)
    assert nets["generator"]["source"] == str(TINY["generator"])
    assert nets["discriminator"]["tf_network"] == "D"
    text = capsys.readouterr().out
    assert "generator from --generator" in text and "E is None" in text
    both = args + [
        "--generator",
        str(TINY["generator"]),
        "--discriminator",
        str(TINY["discriminator"]),
    ]
    with pytest.raises(SystemExit, match="drop one"):
        convert_script.main(both)


def test_cli_tf_generator_G(tmp_path):
    out = tmp_path / "g"
    args = ["--out", str(out), "--tf-pickle", tiny_pkl(), "--fused-min-res", "32"]
    assert convert_script.main(args + ["--tf-generator", "G"]) == 0
    assert read_bundle_networks(out)["generator"]["tf_network"] == "G"


# ---- the real ffhq256 table -----------------------------------------------------------------------


def _torch_path(table, key: str, shape) -> tuple[str | None, tuple]:
    """Where the PyTorch table puts a torch key (and the shape it gets there)."""
    fam = table.FAMILY
    zeros = {key: np.zeros(shape, np.float32)}
    out, problems = apply_rules(fam.rules, zeros, fam.context(_ALL[fam.name]))
    assert not problems, problems
    return (next(iter(out)), next(iter(out.values())).shape) if out else (None, ())


_ALL: dict = {}


def test_real_ffhq256_name_table_gives_the_real_keys_and_shapes():
    """Every real TF variable goes where the PyTorch table puts the PyTorch key it corresponds to
    (fixture JSON, row by row), with the same shape; and the whole real release gives exactly the
    variables of the real-shape networks."""
    doc = json.loads(need(IDINVERT_TF / "ffhq256_tf_variables.json").read_text())
    real = json.loads(need(IDINVERT / "ffhq256_state_dict_shapes.json").read_text())
    (gkey,) = [k for k in real if k.startswith("styleganinv_ffhq256_generator.pth")]
    (dkey,) = [k for k in real if k.startswith("genforce StyleGANDiscriminator(256)")]
    for name, key in (("idinvert_generator", gkey), ("stylegan_discriminator", dkey)):
        _ALL[name] = {k: np.zeros(v) for k, v in real[key]["keys"].items()}
    nets = doc["networks"]
    parts = {
        "G": ("G", "G_style", GENERATOR_TABLE, torch_generator),
        "G/components/mapping (name G_mapping)": ("G_mapping", "G_mapping", MAPPING_TABLE, torch_generator),
        "G/components/synthesis (name G_synthesis)": ("G_synthesis", "G_synthesis", SYNTHESIS_TABLE, torch_generator),
        "D": ("D", "D_basic", DISCRIMINATOR_TABLE, torch_discriminator),
    }  # fmt: skip
    built = {}
    ctx = Ctx(8, 128)
    for part, (name, build, table, torch_table) in parts.items():
        zeros = [(v["name"], np.zeros(v["shape"], np.float32)) for v in nets[part]]
        built[part] = network(name, build, zeros)
        for (vname, arr), row in zip(zeros, nets[part]):  # the table row by row, as the JSON says
            out, problems = apply_rules(table, {vname: arr}, ctx, name)
            assert not problems, problems
            want, shape = (None, ())
            if row["pytorch_key"]:
                want, shape = _torch_path(torch_table, row["pytorch_key"], row["pytorch_shape"])
            assert list(out) == ([want] if want else []), vname
            if want:
                assert out[want].shape == shape, vname
    g = network(
        "G",
        "G_style",
        built["G"].state["variables"],
        {
            "synthesis": built["G/components/synthesis (name G_synthesis)"],
            "mapping": built["G/components/mapping (name G_mapping)"],
        },
    )
    problems = []
    gv = generator_variables(g, "Gs", 128, problems)
    dv = discriminator_variables(built["D"], "D", problems)
    assert not problems
    for fam, v in (("idinvert_generator", gv), ("stylegan_discriminator", dv)):
        got = {k: a.shape for k, a in v.items()}
        assert got == expected_shapes(family(fam).config_from_shapes(got)), fam
    assert gv["params/synthesis/layer12/conv/kernel"].shape == (3, 3, 128, 64)
    assert dv["params/head_dense0/kernel"].shape == (8192, 512)


# ---- refusals and clear errors --------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.marker}",))


def test_foreign_global_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    with pytest.raises(
        ConversionError, match=r"refused.*(os|posix)\.system.*nothing from it was run"
    ):
        load_release(raw)
    # hidden inside an otherwise valid release, as the value of a variable
    e, g, d, gs = load_release(tiny_pkl())
    d2 = replace_vars(d, lambda vs: vs + [("extra", _Evil(marker))])
    path = write_release(tmp_path / "evil_release.pkl", (e, g, d2, gs))
    with pytest.raises(ConversionError, match="refused"):
        read_tf_release(path)
    assert not marker.exists()


def test_build_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    e, g, d, gs = load_release(tiny_pkl())
    st = dict(d.state)
    st["build_module_src"] = f"open({str(marker)!r}, 'w').close()\n"
    d2 = TFNetwork()
    d2.__setstate__(st)
    path = write_release(tmp_path / "src.pkl", (e, g, d2, gs))
    rel = read_tf_release(path, ("discriminator",))
    assert not marker.exists() and "dnnlib" not in sys.modules
    assert rel.variables["discriminator"]["params/from_rgb/kernel"].shape == (1, 1, 3, 8)


def test_numpy2_spellings_and_both_scalar_forms(tmp_path):
    """Re-pickled under numpy 2 (numpy._core names); lod as a numpy scalar and as a 0-d array."""
    e, g, d, gs = load_release(tiny_pkl())

    def flip(vs):
        return [(n, np.asarray(v) if np.ndim(v) else np.float32(v)) for n, v in vs]

    path = write_release(tmp_path / "np2.pkl", (e, g, replace_vars(d, flip), gs))
    assert b"numpy._core.multiarray" in open(path, "rb").read()
    a = read_tf_release(path, fused_min_res=32).variables
    b = read_tf_release(tiny_pkl(), fused_min_res=32).variables
    for role in ROLES:
        assert set(a[role]) == set(b[role])
        assert all(np.array_equal(a[role][k], b[role][k]) for k in b[role])


def test_truncated_file_fails_clearly(tmp_path):
    data = need(TINY_PKL).read_bytes()
    for n in (len(data) // 2, 200, 3):
        cut = tmp_path / f"cut{n}.pkl"
        cut.write_bytes(data[:n])
        with pytest.raises(ConversionError, match=f"cut{n}.pkl.*truncated or corrupt"):
            read_tf_release(cut)
    rc = convert_script.main(["--out", str(tmp_path / "b"), "--tf-pickle", str(cut)])
    assert rc == 2


def test_other_families_fail_clearly(tmp_path, capsys):
    with pytest.raises(ConversionError, match="zip archive.*--generator"):
        read_tf_release(need(TINY["generator"]))
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": np.zeros(3, np.float32)}))
    with pytest.raises(ConversionError, match="not idinvert's TensorFlow release.*got dict"):
        read_tf_release(plain)
    e, g, d, gs = load_release(tiny_pkl())
    three = write_release(tmp_path / "three.pkl", (g, d, gs))
    with pytest.raises(ConversionError, match="NVlabs StyleGAN"):
        read_tf_release(three)
    sg2 = network("G", "G_main", [], {"synthesis": g.state["components"]["synthesis"]})
    d_sg2 = network("D", "D_stylegan2", d.state["variables"])
    other = write_release(tmp_path / "sg2.pkl", (None, sg2, d_sg2, sg2))
    with pytest.raises(ConversionError) as err:
        read_tf_release(other)
    assert "'G_main'" in str(err.value) and "'D_stylegan2'" in str(err.value)  # both in one error
    assert convert_script.main(["--out", str(tmp_path / "b"), "--tf-pickle", other]) == 2
    assert "another family" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="no such file"):
        read_tf_release(tmp_path / "absent.pkl")


def test_variable_problems_are_reported_together(tmp_path):
    e, g, d, gs = load_release(tiny_pkl())

    def damage(vs):
        vs = [(n, v) for n, v in vs if n != "8x8/Conv0/weight"]  # missing
        vs = [
            ("4x4/Dense1/bias", np.ones(3, np.float32)) if n == "4x4/Dense1/bias" else (n, v)
            for n, v in vs
        ]
        return vs + [("64x64/Conv2/weight", np.zeros((3, 3, 8, 8), np.float32))]  # unknown

    syn = gs.state["components"]["synthesis"]
    syn2 = replace_vars(syn, lambda vs: vs + [("lod", np.float32(0))])  # stored twice
    gs2 = network(
        "Gs", "G_style", gs.state["variables"], {**gs.state["components"], "synthesis": syn2}
    )
    path = write_release(tmp_path / "bad.pkl", (e, g, replace_vars(d, damage), gs2))
    with pytest.raises(ConversionError) as err:
        convert_tf_release(path, fused_min_res=32)
    msg = str(err.value)
    assert "64x64/Conv2/weight" in msg and "Gs/synthesis/lod: stored twice" in msg
    d_only = write_release(tmp_path / "bad_d.pkl", (e, g, replace_vars(d, damage), gs))
    with pytest.raises(ConversionError) as err:
        convert_tf_release(d_only, fused_min_res=32)
    msg = str(err.value)
    assert "64x64/Conv2/weight" in msg  # unknown TF variable
    assert "block3_conv0/kernel" in msg  # missing (8x8/Conv0)
    assert "head_dense1/bias" in msg and "(3,)" in msg  # wrong shape


def test_nonzero_lod_is_refused(tmp_path):
    e, g, d, gs = load_release(tiny_pkl())
    g_lod = replace_vars(gs, lambda vs: [(n, np.float32(1) if n == "lod" else v) for n, v in vs])
    path = write_release(tmp_path / "lod.pkl", (e, g, d, g_lod))
    with pytest.raises(ConversionError, match="Gs: .*lod must be 0"):
        read_tf_release(path, fused_min_res=32)


def test_fixed_structure_without_lower_torgb_converts_the_same(tmp_path):
    """structure='fixed' stores only the full resolution's ToRGB / FromRGB: the only ones occjax
    keeps, so the conversion is the same as from the full release."""
    e, g, d, gs = load_release(tiny_pkl())
    syn = gs.state["components"]["synthesis"]

    def keep(vs):
        return [(n, v) for n, v in vs if not (n.startswith("ToRGB_lod") and n[9] != "0")]

    def keep_d(vs):
        return [(n, v) for n, v in vs if not (n.startswith("FromRGB_lod") and n[11] != "0")]

    gs2 = network(
        "Gs",
        "G_style",
        gs.state["variables"],
        {**gs.state["components"], "synthesis": replace_vars(syn, keep)},
    )
    path = write_release(tmp_path / "fixed.pkl", (e, g, replace_vars(d, keep_d), gs2))
    converted, rel = convert_tf_release(path, fused_min_res=32)
    assert not rel.notes
    for role in ROLES:
        ref = convert_file(need(TINY[role]), role).variables
        got = converted[role].variables
        assert set(got) == set(ref) and all(np.array_equal(got[k], ref[k]) for k in ref), role


# ---- the encoder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cand", ["sep2020", "apr2020"])
def test_encoder_candidates_are_detected_from_names_and_shapes(cand):
    doc = json.loads(need(IDINVERT_TF / "ffhq256_tf_variables.json").read_text())
    (lst,) = [v for k, v in doc["E_candidates_UNVERIFIED"].items() if k.startswith(cand)]
    zeros = [(v["name"], np.broadcast_to(np.float32(0), v["shape"])) for v in lst]
    rep = detect_encoder(network("E_gpu0" if cand == "sep2020" else "E", "Encoder", zeros))
    assert rep.candidate == cand and not rep.converted and rep.num_variables == len(lst)
    assert "not converted" in rep.message and "styleganinv_ffhq256_encoder.pth" in rep.message
    # the kernel size is checked too: a 3x3 FromImg is not the Sep-2020 encoder
    first = "FromImg/weight" if cand == "sep2020" else "encoder/input_image_stage/weight"
    other = [
        (n, np.zeros((5 if cand == "apr2020" else 3,) * 2 + (3, 4), "f4")) if n == first else (n, v)
        for n, v in zeros
    ]
    assert detect_encoder(network("E", "Encoder", other)).candidate == "unknown"
    unknown = detect_encoder(network("E", "Encoder", zeros + [("Extra/weight", np.zeros(2, "f4"))]))
    assert unknown.candidate == "unknown" and "not a known TF encoder" in unknown.message
    assert detect_encoder(None).candidate == "absent"


def test_cli_with_an_encoder_in_the_release_goes_on_with_g_and_d(tmp_path, capsys):
    z = np.zeros
    e_vars = [
        ("FromImg/weight", z((5, 5, 3, 4), "f4")),
        ("FromImg/bias", z(4, "f4")),
        ("FromImg/batch_norm/gamma", z(4, "f4")),
        ("E_block_0/Conva/weight", z((3, 3, 4, 4), "f4")),
        ("E_block_0/Conva/batch_norm/moving_variance", z(4, "f4")),
        ("Latent_out/weight", z((64, 48), "f4")),
        ("Latent_out/bias", z(48, "f4")),
    ]
    e_net = network("E_gpu0", "Encoder", e_vars)
    _, g, d, gs = load_release(tiny_pkl())
    path = write_release(tmp_path / "withE.pkl", (e_net, g, d, gs))
    out = tmp_path / "b"
    rc = convert_script.main(["--out", str(out), "--tf-pickle", path, "--fused-min-res", "32"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Sep-2020" in text and "--encoder" in text and "not converted" in text
    assert set(read_bundle_networks(out)) == {"generator", "discriminator"}


def read_bundle_networks(folder) -> dict:
    return read_bundle_doc(folder)["networks"]
