"""Converter: bundles, family recognition, refusals, the real ffhq256 shapes, torch-free import."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import IDINVERT, REPO, TINY, max_abs, need

import occjax
from converters import convert_file
from converters.common import ConversionError, read_torch_state_dict
from occjax.params import BundleError, read_bundle_doc

torch = pytest.importorskip("torch")
sys.path.insert(0, str(REPO / "scripts"))
import convert as convert_script  # noqa: E402


def tiny_sd(role: str) -> dict:
    return torch.load(str(need(TINY[role])), weights_only=True)


def save(sd: dict, path) -> str:
    torch.save(sd, str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    args = ["--out", str(out)] + sum([[f"--{r}", str(need(p))] for r, p in TINY.items()], [])
    assert convert_script.main(args) == 0
    return out


def test_bundle_description(tiny_bundle):
    nets = read_bundle_networks(tiny_bundle)
    assert set(nets) == {"generator", "encoder", "perceptual", "discriminator"}
    assert nets["generator"]["config"]["channels"] == [32] * 6 + [16, 16, 8, 8]
    assert nets["generator"]["config"]["z_dim"] == 16
    assert nets["encoder"]["config"]["num_layers"] == 10
    assert nets["discriminator"]["family"] == "stylegan_discriminator"
    import hashlib

    for role, e in nets.items():
        assert e["source_sha256"] == hashlib.sha256(TINY[role].read_bytes()).hexdigest()


def test_bundle_loads_without_torch_and_equals_pth(tiny_bundle, tiny_models, fx):
    m = occjax.load_models(bundle=tiny_bundle)
    wp = fx["inputs/wp"]
    assert max_abs(m.synthesis(wp), tiny_models.synthesis(wp)) == 0
    x = fx["inputs/encoder_images"]
    assert max_abs(m.encode(x), tiny_models.encode(x)) == 0
    assert max_abs(m.perceptual(x), tiny_models.perceptual(x)) == 0
    assert (
        max_abs(
            m.discriminate(fx["inputs/disc_images"]),
            tiny_models.discriminate(fx["inputs/disc_images"]),
        )
        == 0
    )
    # the bundle is read with safetensors: no pickle, no torch
    code = (
        "import sys, occjax; m = occjax.load_models(bundle=sys.argv[1]); m.synthesis("
        "__import__('numpy').zeros((1, 10, 24), 'float32')); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(tiny_bundle)], check=True)


def test_import_occjax_does_not_import_torch():
    code = "import sys, occjax, occjax.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("role", ["generator", "encoder", "perceptual", "discriminator"])
def test_each_network_loads_alone(role, fx):
    m = occjax.load_models(**{role: str(need(TINY[role]))})
    assert set(m.nets) == {role}
    other = "encoder" if role != "encoder" else "generator"
    with pytest.raises(ValueError, match=f"no {other} loaded"):
        m.net(other)


def test_missing_extra_and_misshaped_keys_in_one_error(tmp_path):
    sd = tiny_sd("generator")
    del sd["synthesis.layer3.conv.weight"]
    sd["synthesis.layer3.extra.weight"] = torch.zeros(3)
    sd["synthesis.layer5.epilogue.bias"] = torch.zeros(31)
    path = save(sd, tmp_path / "broken_gen.pth")
    with pytest.raises(ConversionError) as e:
        occjax.load_models(generator=path)
    msg = str(e.value)
    assert "broken_gen.pth" in msg
    assert "synthesis.layer3.conv.weight" in msg  # missing
    assert "synthesis.layer3.extra.weight" in msg  # unexpected
    assert "synthesis.layer5.epilogue.bias" in msg and "(31,)" in msg  # wrong shape


def test_missing_buffer_and_bad_values(tmp_path):
    sd = tiny_sd("generator")
    del sd["synthesis.layer4.blur.kernel"]
    sd["synthesis.lod"] = torch.tensor(1.0)
    with pytest.raises(ConversionError, match=r"(?s)synthesis.lod must be 0.*layer4.blur.kernel"):
        convert_file(save(sd, tmp_path / "g.pth"), "generator")


def test_wrong_family_is_named(tmp_path):
    with pytest.raises(ConversionError, match="generator.*given as the encoder"):
        occjax.load_models(encoder=str(need(TINY["generator"])))
    with pytest.raises(ConversionError, match="given as the generator"):
        occjax.load_models(generator=str(need(TINY["discriminator"])))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"mapping.dense0.fc.weight": torch.zeros(2, 2), "x": Evil()}, str(path))
    with pytest.raises(ConversionError, match="refused"):
        read_torch_state_dict(path)
    assert not marker.exists()
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ConversionError):
        read_torch_state_dict(raw)
    assert not marker.exists()


def test_not_a_state_dict_and_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConversionError, match="junk.pth"):
        occjax.load_models(generator=str(junk))
    lst = save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(ConversionError, match="not a state dict"):
        read_torch_state_dict(lst)
    nested = save({"model": {"a": torch.zeros(1)}, "step": 3}, tmp_path / "nested.pth")
    with pytest.raises(ConversionError, match="not a plain state dict"):
        read_torch_state_dict(nested)
    with pytest.raises(ConversionError, match="netG_state_dict"):  # names where it looked
        read_torch_state_dict(nested, ("netG_state_dict",))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        occjax.load_models(generator=str(tmp_path / "nope.pth"))


def test_bundle_errors(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="no such folder"):
        occjax.load_models(bundle=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="bundle.json is missing"):
        occjax.load_models(bundle=tmp_path / "empty")
    gen_only = tmp_path / "gen_only"
    assert convert_script.main(["--out", str(gen_only), "--generator", str(TINY["generator"])]) == 0
    with pytest.raises(BundleError, match="has no encoder"):
        occjax.load_models(encoder=gen_only)
    (gen_only / "generator.safetensors").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="generator.safetensors"):
        occjax.load_models(bundle=gen_only)


def test_convert_cli_reports_errors(tmp_path, capsys):
    rc = convert_script.main(["--out", str(tmp_path / "b"), "--encoder", str(TINY["generator"])])
    assert rc == 2
    assert "given as the encoder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "role,he_init,check",
    [
        (
            "generator",
            False,
            lambda m: m.generate(np.ones((1, 512), "float32")).shape == (1, 3, 256, 256),
        ),
        (
            "encoder",
            True,
            lambda m: m.encode(np.zeros((1, 3, 256, 256), "float32")).shape == (1, 14, 512),
        ),
        (
            "perceptual",
            True,
            lambda m: m.perceptual(np.zeros((1, 3, 256, 256), "float32")).shape == (1, 512, 32, 32),
        ),
        (
            "discriminator",
            False,
            lambda m: m.discriminate(np.zeros((2, 3, 256, 256), "float32")).shape == (2,),
        ),
    ],
)
def test_real_ffhq256_shapes_convert_load_and_run(tmp_path, role, he_init, check):
    from realshape import random_state_dict, real_keys, save_torch

    need(IDINVERT / "ffhq256_state_dict_shapes.json")
    keys = real_keys(role)
    path = save_torch(random_state_dict(keys, seed=1, he_init=he_init), tmp_path / f"{role}.pth")
    out = tmp_path / "bundle"
    assert convert_script.main(["--out", str(out), f"--{role}", str(path)]) == 0
    m = occjax.load_models(bundle=out)
    net = m.net(role)
    assert net.info["tensors"] <= len(keys)
    assert check(m)


def read_bundle_networks(folder) -> dict:
    return read_bundle_doc(folder)["networks"]
