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


# ---- where inversions start (InvertConfig.init) and the noise maps (noise_reg_weight) ---------------


@pytest.fixture(scope="module")
def sg2_random():
    from occjax.random_init import random_models

    return random_models("stylegan2_64", seed=0)


def _targets(m, n=2, seed=7):
    """n generated images (clipped to [-1, 1]) with a 20 x 20 box occluded."""
    z = np.random.default_rng(seed).standard_normal((n, m.z_dim)).astype(np.float32)
    x = np.clip(np.asarray(m.generate(z)), -1, 1)
    mask = np.zeros((n, 1, m.resolution, m.resolution), np.float32)
    mask[..., 20:40, 24:44] = 1
    return x, mask


def test_mapped_init_is_the_best_candidate(sg2_random):
    """'mapped' starts each target at the candidate (w_avg, then the sampled codes) with the lowest
    masked reconstruction, computed here directly in numpy; so never worse than w_avg."""
    import occjax
    from occjax import starts

    m = sg2_random
    x, mask = _targets(m)
    cfg = m.preset("baseline", steps=0, init="mapped", init_samples=8, init_seed=3)
    res = occjax.invert(m, x, mask, config=cfg)
    cand = starts.candidates(m, 8, 1.0, 3)
    assert cand.shape == (9, *m.code_shape)
    np.testing.assert_array_equal(cand[0], starts.mean_code(m)[0])
    imgs = np.asarray(m.synthesis(cand))  # [C, 3, H, W]
    vis = 1.0 - mask  # [B, 1, H, W]
    sq = np.square(x[:, None] - imgs[None]) * vis[:, None]  # [B, C, 3, H, W]
    mse = sq.sum(axis=(2, 3, 4)) / (3 * vis.sum(axis=(1, 2, 3)))[:, None]  # [B, C]
    best = mse.argmin(axis=1)
    assert (best > 0).all(), "a sampled code should beat w_avg on these targets"
    np.testing.assert_array_equal(res.init_codes, cand[best])
    np.testing.assert_allclose(res.final_losses["reconstruction"], mse.min(axis=1), rtol=1e-4)
    w_avg = occjax.invert(m, x, mask, config=m.preset("baseline", steps=0, init="w_avg"))
    assert (res.final_losses["reconstruction"] <= w_avg.final_losses["reconstruction"]).all()
    auto = occjax.invert(m, x, mask, config=m.preset("baseline", steps=0))  # today's start
    np.testing.assert_array_equal(auto.init_codes, w_avg.init_codes)


def test_mapped_init_on_faces64_scores_by_the_objectives_data_terms():
    """A z-code generator (DCGAN): the candidates are sampled z (no mean code), chosen by the
    config's reconstruction + perceptual (LPIPS) total, which the engine's own evaluation of every
    candidate confirms; w_avg does not apply and says so."""
    import occjax
    from occjax import starts

    m = occjax.load_models(bundle="faces64")
    x, mask = _targets(m, n=2)
    cfg = m.preset("baseline", steps=0, init="mapped", init_samples=5)
    res = occjax.invert(m, x, mask, config=cfg)
    cand = starts.candidates(m, 5)
    assert cand.shape == (5, 1, 100)
    for b in range(2):
        each = occjax.invert(
            m, np.repeat(x[b : b + 1], 5, 0), np.repeat(mask[b : b + 1], 5, 0),
            config=cfg, init_codes=cand,
        )  # fmt: skip
        total = each.final_losses["total"]
        assert each.final_losses["perceptual"].min() > 0
        np.testing.assert_array_equal(res.init_codes[b], cand[np.argmin(total)])
    with pytest.raises(ValueError, match="init='w_avg'.*no mean code"):
        occjax.invert(m, x, mask, config=m.preset("baseline", steps=0, init="w_avg"))


def _numpy_noise_reg(maps):
    total = np.zeros(maps[0].shape[0])
    for n in maps:
        n = np.asarray(n, np.float64)
        while True:
            total += np.mean(n * np.roll(n, 1, axis=2), axis=(1, 2)) ** 2
            total += np.mean(n * np.roll(n, 1, axis=1), axis=(1, 2)) ** 2
            if n.shape[1] <= 8:
                break
            b, h, w = n.shape
            n = n.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return total


def test_noise_regularizer_matches_numpy():
    """NVlabs projector's penalty, per problem, against a direct numpy computation (maps of 4, 8
    and 32 px: one, one and three scales), and the renormalisation."""
    from occjax import noise as N

    rng = np.random.default_rng(0)
    maps = [rng.standard_normal((2, s, s)).astype(np.float32) for s in (4, 8, 32)]
    maps[2][1] += np.linspace(0, 3, 32, dtype=np.float32)  # correlated: a larger penalty
    got = np.asarray(N.regularizer([jnp.asarray(a) for a in maps]))
    want = _numpy_noise_reg(maps)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[1] > 10 * got[0]
    lay = ((("a", "noise"), 4, 4), (("b", "noise"), 8, 8), (("c", "noise"), 32, 32))
    flat = N.join([jnp.asarray(a) for a in maps])
    assert flat.shape == (2, 1, 16 + 64 + 1024)
    for a, b in zip(N.split(flat, lay), maps):
        np.testing.assert_array_equal(a, b)
    for n in N.normalise([jnp.asarray(a) for a in maps]):
        np.testing.assert_allclose(np.mean(n, axis=(1, 2)), 0, atol=1e-6)
        np.testing.assert_allclose(np.mean(np.square(n), axis=(1, 2)), 1, rtol=1e-5)


def test_noise_maps_are_optimised_per_problem(sg2_random):
    """A batch of two: the problem with a noise weight gets its own renormalised maps and the
    penalty term; the one without keeps the model's maps (penalty 0) and follows the plain run.
    Solved one per call (chunk_size 1: one call without noise maps at all), the same results."""
    import occjax

    m = sg2_random
    x, mask = _targets(m)
    plain = m.preset("baseline", steps=3, lr=0.05)
    noisy = m.preset("baseline", steps=3, lr=0.05, noise_reg_weight=1e5)
    res = occjax.invert(m, x, mask, config=[plain, noisy], record=True)
    alone = occjax.invert(m, x, mask, config=[plain, noisy], chunk_size=1)
    bufs = m.net("generator").variables["buffers"]["synthesis"]
    assert len(res.noise) == 9 and res.noise["synthesis/b64_conv1"].shape == (2, 64, 64)
    for k, v in res.noise.items():
        fixed = np.asarray(bufs[k.split("/")[1]]["noise"])[0, ..., 0]
        np.testing.assert_array_equal(v[0], fixed)
        np.testing.assert_array_equal(alone.noise[k][0], fixed)
        assert np.abs(v[1] - fixed).max() > 0
        np.testing.assert_allclose(v[1].mean(), 0, atol=1e-5)
        np.testing.assert_allclose(np.square(v[1]).mean(), 1, rtol=1e-4)
        np.testing.assert_allclose(alone.noise[k][1], v[1], atol=1e-4)
    assert res.trace.losses["noise_reg"].shape == (3, 2)
    assert (res.trace.losses["noise_reg"][:, 0] == 0).all() and res.final_losses["noise_reg"][1] > 0
    assert alone.final_losses["noise_reg"][0] == 0
    np.testing.assert_allclose(res.codes, alone.codes, atol=1e-5)
    assert np.abs(res.codes[1] - res.codes[0]).max() > 1e-4


def test_nonzero_noise_weight_refused_without_noise_inputs():
    import occjax

    m = occjax.load_models(bundle="faces64")
    x, mask = _targets(m, n=1)
    with pytest.raises(ValueError, match="dcgan generator of faces64 has no noise inputs"):
        occjax.invert(m, x, mask, config=m.preset("baseline", steps=1, noise_reg_weight=1.0))
    # steps 0 optimises nothing: accepted (as the discriminator weight of `enc`)
    occjax.invert(m, x, mask, config=m.preset("enc", noise_reg_weight=1.0))


def test_init_and_noise_fields_validated_and_hashed():
    import dataclasses

    import occjax
    from occjax.records import line_hash

    base = occjax.preset("baseline")
    assert (base.init, base.noise_reg_weight) == ("auto", 0.0)
    h0 = line_hash({}, dataclasses.asdict(base))
    changed = dict(init="mapped", init_samples=16, init_psi=0.7, init_seed=1, noise_reg_weight=1e5)
    hashes = {line_hash({}, dataclasses.asdict(dataclasses.replace(base, **{k: v})))
              for k, v in changed.items()}  # fmt: skip
    assert len(hashes) == len(changed) and h0 not in hashes
    for field, v in (("init", "zeros"), ("init_samples", 0), ("init_samples", 2.0),
                     ("init_psi", -0.1), ("init_seed", -1), ("noise_reg_weight", -1.0),
                     ("noise_reg_weight", float("nan"))):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            occjax.InvertConfig(**{field: v})


def test_convert_file_and_load_models_take_stylegan2_checkpoints(tmp_path):
    """converters.FAMILIES lists the StyleGAN2 families: `load_models(generator=..., discriminator=
    ...)` reads an NVlabs .pkl, a rosinality .pt (its latent_avg kept as w_avg) and a bare state dict
    saved as .pth, each the same network `convert_stylegan2` gives."""
    torch = pytest.importorskip("torch")
    import occjax
    from converters import FAMILIES
    from converters.stylegan2 import convert_stylegan2
    from occjax.params import flatten

    names = {(f.name, f.description.split()[0]) for f in FAMILIES}
    assert {("stylegan2_generator", "NVlabs"), ("stylegan2_discriminator", "rosinality")} <= names
    for fname in FORMATS.values():
        want = convert_stylegan2(FX / fname)
        m = occjax.load_models(generator=FX / fname, discriminator=FX / fname)
        assert m.family == "stylegan2"
        for role in ("generator", "discriminator"):
            got = m.net(role).variables
            flat = {k: np.asarray(v) for k, v in want[role].variables.items()}
            assert {k: np.asarray(v) for k, v in flatten(got).items()}.keys() == flat.keys()
            for k, v in flatten(got).items():
                np.testing.assert_array_equal(np.asarray(v), flat[k], err_msg=f"{fname} {k}")
    ck = torch.load(FX / "rosinality.pt", weights_only=True)
    torch.save(ck["g_ema"], tmp_path / "g_ema.pth")  # a bare state dict: no latent_avg
    g = occjax.load_models(generator=tmp_path / "g_ema.pth").net("generator")
    assert "mean of the mapping" in g.info["w_avg"]
