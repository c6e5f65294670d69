"""Parity of the four idinvert networks (Flax modules) with the PyTorch reference fixtures, tap by
tap (taps through Flax's sow), and of the shifted-slice filters with their reference forms."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL, max_abs, taps

from occjax import layers as L
from occjax.networks.idinvert_generator import upsample_phase_kernels, upsample_phases


def nchw(x):
    x = np.asarray(x)
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def test_mapping_and_truncation(tiny_models, fx):
    w = tiny_models.mapping(fx["inputs/z"])
    assert w.shape == (4, 10, 24)
    assert max_abs(np.asarray(w).reshape(4, -1), fx["mapping/w"]) < TOL["mapping"]
    wp = tiny_models.truncation(w)
    assert max_abs(wp, fx["truncation/wp"]) < TOL["truncation"]
    g = tiny_models.net("generator")
    coefs = g.module.apply(g.variables, method="truncation_coefs")
    assert max_abs(coefs, fx["truncation/coefs"].ravel()) == 0
    assert max_abs(g.variables["buffers"]["w_avg"], fx["truncation/w_avg"]) == 0


def test_generate_from_z(tiny_models, fx):
    img = tiny_models.generate(fx["inputs/z"])
    assert img.shape == (4, 3, 64, 64)
    assert max_abs(img, fx["generator/image_from_z"]) < TOL["generator"]


@pytest.mark.parametrize("impl", ["subpixel", "naive"])
def test_synthesis_taps(tiny_models, fx, impl):
    g = tiny_models.net("generator")
    g = dataclasses.replace(g, module=g.module.clone(upsample_impl=impl))
    img, tapped = taps(g, jnp.asarray(fx["inputs/wp"]), method="synthesis")
    errors = {k: max_abs(nchw(v), fx[f"synthesis/{k}"]) for k, v in tapped.items()}
    errors["image"] = max_abs(nchw(img), fx["synthesis/image"])
    assert len(tapped) == 21  # 10 layer outputs, 10 styles, pre_tanh
    bad = {k: e for k, e in errors.items() if e >= TOL["synthesis"]}
    assert not bad, f"taps over tolerance {TOL['synthesis']}: {bad}"


def test_synthesis_public_api_and_zero_noise(tiny_models, fx):
    assert max_abs(tiny_models.synthesis(fx["inputs/wp"]), fx["synthesis/image"]) < TOL["synthesis"]
    g = tiny_models.net("generator")
    img0 = g.module.clone(zero_noise=True).apply(
        g.variables, jnp.asarray(fx["inputs/wp"]), method="synthesis"
    )
    assert max_abs(nchw(img0), fx["synthesis/image_zero_noise"]) < TOL["synthesis"]
    # the noise path matters: the two references differ by far more than the tolerance
    assert max_abs(fx["synthesis/image"], fx["synthesis/image_zero_noise"]) > 0.1


def test_noise_buffers_are_the_checkpoint_ones(tiny_models, fx):
    bs = tiny_models.net("generator").variables["buffers"]["synthesis"]
    for k in range(10):
        ours = np.asarray(bs[f"layer{k}"]["noise"]).transpose(0, 3, 1, 2)
        assert max_abs(ours, fx[f"noise/layer{k:02d}"]) == 0


def test_fused_upsampling_equals_transposed_conv():
    """The fused layer's nearest+flipped-conv form (the converter flips its TF-layout weight)
    equals the reference's conv_transpose formula, in both up-sampling forms."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)  # TF layout [3,3,in,out]
    x = rng.standard_normal((2, 6, 6, 5)).astype(np.float32)
    # reference: kernel padded to 5x5, the four shifted 4x4 windows summed, conv_transpose s2 p1
    kp = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    k4 = kp[1:, 1:] + kp[:-1, 1:] + kp[1:, :-1] + kp[:-1, :-1]  # [4,4,in,out]
    ref = np.zeros((2, 14, 14, 7), np.float64)  # (H-1)*2 + 4 = 14, crop padding 1 -> 12
    for i in range(6):
        for j in range(6):
            ref[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4] += np.einsum(
                "ni,hwio->nhwo", x[:, i, j], k4
            )
    ref = ref[:, 1:-1, 1:-1]
    hwio = jnp.asarray(w[::-1, ::-1])  # converters/generator.py: flip_hw
    naive = L.conv2d(L.upsample_nearest2x(jnp.asarray(x)), hwio, padding=1)
    subpixel = upsample_phases(jnp.asarray(x), upsample_phase_kernels(hwio))
    assert max_abs(naive, ref) < 1e-4
    assert max_abs(subpixel, ref) < 1e-4


def test_encoder_taps(tiny_models, fx):
    e = tiny_models.net("encoder")
    x = L.nchw_to_nhwc(jnp.asarray(fx["inputs/encoder_images"]))
    code, tapped = taps(e, x)
    errors = {k: max_abs(nchw(v), fx[f"encoder/{k}"]) for k, v in tapped.items()}
    errors["code"] = max_abs(code, fx["encoder/code"])
    assert set(tapped) == {f"block{i}_out" for i in range(6)}
    bad = {k: v for k, v in errors.items() if v >= TOL["encoder"]}
    assert not bad, bad
    assert (
        max_abs(tiny_models.encode(fx["inputs/encoder_images"]), fx["encoder/code"])
        < TOL["encoder"]
    )


def test_vgg_features(tiny_models, fx):
    v = tiny_models.net("perceptual")
    x = L.nchw_to_nhwc(jnp.asarray(fx["inputs/encoder_images"]))
    feats, tapped = taps(v, x, method="features")
    assert max_abs(nchw(tapped["preprocessed_input"]), fx["vgg/preprocessed_input"]) < TOL["vgg"]
    assert max_abs(nchw(feats), fx["vgg/features"]) < TOL["vgg"]
    out = tiny_models.perceptual(fx["inputs/encoder_images"])
    assert out.shape == (4, 64, 8, 8)
    assert max_abs(out, fx["vgg/features"]) < TOL["vgg"]


def test_discriminator_taps_batch8(tiny_models, fx):
    d = tiny_models.net("discriminator")
    x = L.nchw_to_nhwc(jnp.asarray(fx["inputs/disc_images"]))
    score, tapped = taps(d, x)
    errors = {k: max_abs(nchw(v), fx[f"disc/{k}"]) for k, v in tapped.items() if f"disc/{k}" in fx}
    assert len(errors) == 11
    errors["score"] = max_abs(score, fx["disc/score_batch8"][:, 0])
    bad = {k: v for k, v in errors.items() if v >= TOL["disc"]}
    assert not bad, bad


@pytest.mark.parametrize("n", [8, 2, 1])
def test_discriminator_minibatch_groups(tiny_models, fx, n):
    scores = tiny_models.discriminate(fx["inputs/disc_images"][:n])
    assert scores.shape == (n,)
    assert max_abs(scores, fx[f"disc/score_batch{n}"][:, 0]) < TOL["disc"]


def test_discriminator_group_of_one_is_batch_independent(tiny_models, fx):
    x = fx["inputs/disc_images"]
    alone = np.array([np.asarray(tiny_models.discriminate(x[i : i + 1]))[0] for i in range(4)])
    together = np.asarray(tiny_models.discriminate(x[:4], group_size=1))
    assert max_abs(alone, together) < 1e-6
    assert max_abs(alone[0], fx["disc/score_batch1"][0, 0]) < TOL["disc"]


def test_architecture_is_the_modules_own(tiny_models):
    """Every converted variable is one the Flax module creates itself (eval_shape of its init),
    and the module reads its settings back from those shapes."""
    from occjax.networks import family
    from occjax.networks.build import expected_shapes
    from occjax.params import flatten, shapes

    for net in tiny_models.nets.values():
        got = shapes(flatten(net.variables))
        assert got == expected_shapes(net.module), net.family
        assert family(net.family).config_from_shapes(got) == net.module


@pytest.mark.parametrize(
    "up,down,pad",
    [(1, 1, (1, 1, 1, 1)), (1, 2, (1, 1, 1, 1)), (2, 1, (1, 0, 1, 0)), (1, 1, (2, 2, 2, 2))],
)
def test_fir2d_equals_upfirdn_in_float64(up, down, pad):
    """The shifted-slices filter equals zero-insert, zero-pad, cross-correlate, subsample in NumPy."""
    rng = np.random.default_rng(up * 10 + down)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    k = rng.standard_normal((4, 3)).astype(np.float32)
    k[1, 2] = 0.0  # a zero tap is skipped, not dropped from the shape
    t, b, left, r = pad
    n, h, w, c = x.shape
    xu = np.zeros((n, h * up, w * up, c))
    xu[:, ::up, ::up] = x
    xp = np.pad(xu, ((0, 0), (t, b), (left, r), (0, 0)))
    ho, wo = xp.shape[1] - k.shape[0] + 1, xp.shape[2] - k.shape[1] + 1
    ref = sum(
        k[i, j] * xp[:, i : i + ho, j : j + wo]
        for i in range(k.shape[0])
        for j in range(k.shape[1])
    )[:, ::down, ::down]
    out = L.fir2d(jnp.asarray(x), k, pad, down=down, up=up)
    assert out.shape == ref.shape
    assert max_abs(out, ref) < 1e-5


def test_blur_equals_depthwise_conv():
    """StyleGAN's blur as a grouped convolution (the reference's form) gives the same numbers."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 8)).astype(np.float32))
    w = jnp.broadcast_to(jnp.asarray(L.blur_kernel_121())[:, :, None, None], (3, 3, 1, 8))
    ref = jax.lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=8,
    )
    assert max_abs(L.blur(x), ref) < 1e-6
