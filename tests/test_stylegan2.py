"""StyleGAN2 family: parity with the official code (NVlabs stylegan2-ada-pytorch and rosinality
stylegan2-pytorch, `tests/fixtures/stylegan2/make_fixtures.py`), block by block, for both checkpoint
formats through their converters; hostile files refused."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL, max_abs, taps

FX = Path(__file__).parent / "fixtures" / "stylegan2"
FORMATS = {"nvlabs": "nvlabs.pkl", "rosinality": "rosinality.pt"}


def nchw(x):
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


@pytest.fixture(scope="module", params=list(FORMATS))
def converted(request):
    from converters.stylegan2 import convert_stylegan2, networks

    if request.param == "rosinality":
        pytest.importorskip("torch")
    nets = networks(convert_stylegan2(FX / FORMATS[request.param]))
    return request.param, nets, np.load(FX / f"{request.param}_ref.npz")


def test_mapping(converted):
    fmt, nets, ref = converted
    g = nets["generator"]
    w = g.module.apply(g.variables, jnp.asarray(ref["z"]), method="mapping")
    assert w.shape == (2, 10, 32)
    assert max_abs(w[:, 0], ref["w"]) < TOL["mapping"], fmt
    assert max_abs(w[:, 0], w[:, 9]) == 0


def test_synthesis_taps(converted):
    fmt, nets, ref = converted
    img, tapped = taps(nets["generator"], jnp.asarray(ref["ws"]), method="synthesis")
    errors = {k: max_abs(nchw(v), ref[f"tap_{k}"]) for k, v in tapped.items()}
    errors["image"] = max_abs(nchw(img), ref["img"])
    assert len(tapped) == 10  # b{4..64}_x, b{4..64}_img
    bad = {k: e for k, e in errors.items() if e >= TOL["synthesis"]}
    assert not bad, f"{fmt}: taps over tolerance {TOL['synthesis']}: {bad}"


def test_discriminator_taps(converted):
    fmt, nets, ref = converted
    d = nets["discriminator"]
    x = jnp.asarray(ref["d_img"].transpose(0, 2, 3, 1))
    score, tapped = taps(d, x)
    errors = {k: max_abs(nchw(v), ref[f"tap_d_{k}"]) for k, v in tapped.items()}
    errors["score"] = max_abs(score, ref["d_score"])
    assert len(tapped) == 5
    bad = {k: e for k, e in errors.items() if e >= TOL["disc"]}
    assert not bad, f"{fmt}: taps over tolerance {TOL['disc']}: {bad}"


def test_init_kwargs_and_family_detection(converted):
    fmt, nets, _ = converted
    g, d = nets["generator"].module, nets["discriminator"].module
    assert (g.resolution, g.code_shape, d.resolution) == (64, (10, 32), 64)
    assert g.conv_clamp is None and d.conv_clamp is None


# ---- hostile and wrong files ----------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def _pkl(tmp_path, obj, name="evil.pkl"):
    import pickle

    p = tmp_path / name
    p.write_bytes(pickle.dumps(obj))
    return p


def test_hostile_pickle_refused(tmp_path, monkeypatch):
    import os

    from converters.common import ConversionError
    from converters.stylegan2 import convert_stylegan2

    path = _pkl(tmp_path, {"G_ema": _Evil()})  # pickled before os.system is replaced
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    with pytest.raises(
        ConversionError, match=r"refused: the pickle names the global (posix|os)\.system"
    ):
        convert_stylegan2(path)
    assert not calls


def test_hostile_storage_blob_refused(tmp_path):
    """os.system hidden in the nested torch.save blob of a tensor's storage is refused too."""
    import pickle

    from converters.common import ConversionError
    from converters.stylegan2 import convert_stylegan2

    class Blob:
        def __reduce__(self):
            import torch  # noqa: F401  (the global is only named, never imported by the reader)

            return (__import__("torch.storage", fromlist=["x"])._load_from_bytes, (pickle.dumps(_Evil()),))  # fmt: skip

    pytest.importorskip("torch")
    with pytest.raises(ConversionError, match="refused"):
        convert_stylegan2(_pkl(tmp_path, {"G_ema": Blob()}))


def test_not_a_network_pickle(tmp_path):
    from converters.common import ConversionError
    from converters.stylegan2 import convert_stylegan2

    with pytest.raises(ConversionError, match="no G_ema"):
        convert_stylegan2(_pkl(tmp_path, {"G": [1, 2]}))
    bad = tmp_path / "junk.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ConversionError, match="not a readable"):
        convert_stylegan2(bad)


def test_hostile_rosinality_pt_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from converters.common import ConversionError
    from converters.stylegan2 import convert_stylegan2

    p = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "x": _Evil()}, p)
    with pytest.raises(ConversionError, match="refused"):
        convert_stylegan2(p)


# ---- the bundle and inversion without an encoder ---------------------------------------------------


@pytest.fixture(scope="module")
def sg2_bundle(tmp_path_factory):
    from scripts.convert import ConvertConfig, run

    out = tmp_path_factory.mktemp("sg2") / "sg2"
    run(ConvertConfig(out=out, stylegan2=FX / "nvlabs.pkl"))
    return out


def test_bundle_loads_without_torch(sg2_bundle):
    import subprocess
    import sys

    code = (
        "import sys, occjax; m = occjax.load_models(bundle=sys.argv[1]); "
        "print(m.family, m.code_shape, sorted(m.nets), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(sg2_bundle)], capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.split() == ["stylegan2", "(10,", "32)", "['discriminator',", "'generator']", "False"]  # fmt: skip


def _invert(bundle, approaches, steps=2):
    import occjax

    m = occjax.load_models(bundle=bundle)
    ref = np.load(FX / "nvlabs_ref.npz")
    imgs = np.clip(ref["img"], -1, 1)
    mask = np.zeros((1, 1, 64, 64), np.float32)
    mask[..., 20:40, 20:40] = 1
    out = {}
    for a in approaches:
        res = occjax.invert(m, imgs[:1], mask, [imgs[1:]], config=m.preset(a, steps=steps))
        out[a] = res
    return m, out


def test_invert_from_mean_code(sg2_bundle):
    """No encoder: the codes start at w_avg over W+, and the encoder regulariser is off."""
    m, out = _invert(sg2_bundle, ["baseline"], steps=0)
    assert m.supported_approaches() == ("baseline", "disc", "prior", "prior_disc")
    w_avg = m.net("generator").variables["buffers"]["w_avg"]
    np.testing.assert_array_equal(out["baseline"].codes[0], np.broadcast_to(w_avg, (10, 32)))
    assert m.preset("baseline").encoder_reg_weight == 0


@pytest.mark.slow
def test_every_approach_runs(sg2_bundle):
    _, out = _invert(sg2_bundle, ["baseline", "disc", "prior", "prior_disc"], steps=3)
    for a, res in out.items():
        assert np.isfinite(np.asarray(res.images)).all(), a
        assert np.asarray(res.trace.losses["reconstruction"])[-1, 0] > 0, a


def test_rosinality_without_latent_avg_gets_mapped_mean(tmp_path):
    torch = pytest.importorskip("torch")
    from converters.stylegan2 import convert_stylegan2

    ck = torch.load(FX / "rosinality.pt", weights_only=True)
    del ck["latent_avg"]
    torch.save(ck, tmp_path / "no_avg.pt")
    c = convert_stylegan2(tmp_path / "no_avg.pt")["generator"]
    assert "mean of the mapping" in c.info["w_avg"]
    w_avg = c.variables["buffers/w_avg"]
    assert w_avg.shape == (32,) and np.isfinite(w_avg).all() and np.abs(w_avg).max() > 0


def test_load_models_takes_the_bundle_folder_alone(sg2_bundle):
    import occjax

    m = occjax.load_models(str(sg2_bundle))
    assert sorted(m.nets) == ["discriminator", "generator"] and m.family == "stylegan2"


@pytest.mark.slow
def test_cli_runs_every_approach_on_a_converted_bundle(sg2_bundle, tmp_path, capsys):
    """scripts/invert.py on an encoder-less StyleGAN2 bundle: enc skipped with the reason, the
    others start from w_avg and finish; the side-by-side's "encoder" column is w_avg's image."""
    from conftest import DATA, need

    from occjax.cli import InvertCLI, main
    from occjax.records import read_records

    person = need(DATA / "lfw_hand_samples" / "Al_Gore")
    target = person / "occluded_img" / "Al_Gore_0008_01_medium.png"
    cfg = InvertCLI(models=str(sg2_bundle), target=target, refs_dir=person / "reference_imgs",
                    mask=str(person / "occlusion_mask" / target.name), steps=2,
                    reference_steps=2, out=tmp_path / "run", progress=False)  # fmt: skip
    assert main(cfg) == 0
    assert "skipping enc: the model" in capsys.readouterr().out
    recs = read_records(tmp_path / "run")
    assert [r["approach"] for r in recs] == ["baseline", "disc", "prior", "prior_disc"]
    assert all(r["status"] == "ok" for r in recs)
