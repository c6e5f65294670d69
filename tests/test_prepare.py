"""Prepared variables (`Network.prepared`): the weight-only work of the step done once.

`layers.Kernel` carries a conv kernel with the kernel of its input gradient precomputed; each layer
stores it, and its other weight-only work (the generator's up-sampling phase kernels, the genforce
D's stride-2 down-sampling kernel, StyleNAT's spectral norm), in the "prepared" collection. The
function, its input gradient and its weight gradient must not change; the compiled inversion step
must no longer touch the kernels.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TOL, max_abs

import occjax
from occjax import api, engine
from occjax import layers as nn

CASES = [  # (input H, kernel, stride, padding, in, out)
    (9, 3, 1, 1, 4, 5),
    (8, 3, 1, 1, 4, 5),
    (8, 4, 2, 1, 3, 6),  # the genforce D's down-sampling conv
    (9, 4, 2, 1, 3, 6),
    (8, 1, 1, 0, 4, 2),
    (7, 2, 1, 0, 3, 3),  # the generator's up-sampling phases
    (10, 3, 2, 0, 2, 2),  # StyleNAT's stride-2 conv
    (11, 3, 2, ((1, 0), (2, 1)), 2, 3),
]


@pytest.mark.parametrize("case", CASES)
def test_kernel_conv_matches_autodiff(case):
    h, k, s, p, cin, cout = case
    rng = np.random.default_rng(h * 100 + k * 10 + s)
    x = jnp.asarray(rng.normal(size=(2, h, h + 1, cin)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    kern = nn.prepare_kernel(w)
    assert kern.wt.shape == (k, k, cout, cin) and kern.shape == w.shape

    def loss(x, w, prepared):
        kk = nn.Kernel(w, kern.wt) if prepared else w
        return jnp.sum(jnp.sin(nn.conv2d(x, kk, s, p)))

    plain = jax.jit(jax.value_and_grad(lambda x, w: loss(x, w, False), (0, 1)))(x, w)
    prep = jax.jit(jax.value_and_grad(lambda x, w: loss(x, w, True), (0, 1)))(x, w)
    assert abs(float(plain[0]) - float(prep[0])) <= 1e-5 * abs(float(plain[0])) + 1e-6
    for a, b, what in zip(plain[1], prep[1], ("input", "weight")):
        scale = float(jnp.max(jnp.abs(a)))
        assert max_abs(a, b) <= 1e-6 * scale, f"{what} gradient differs"


def _same_function(f, params, prepared, x, tol_rel=1e-5):
    """f(params, x) and its input gradient agree between raw and prepared parameters.

    Folding weight arithmetic out of the jitted function changes float32 rounding only (e.g. the
    generator's phase-kernel sums are no longer fused with its convs: 3.8e-6 on images in (-1, 1)),
    so the bound is 1e-5 of the output's scale: the float32-vs-float64 gap of the reference's own
    images (stats.json), 10x below the parity tolerance against the reference."""

    def vg(p):
        return jax.jit(jax.value_and_grad(lambda x: jnp.sum(jnp.tanh(f(p, x))), has_aux=False))

    y0, y1 = jax.jit(f)(params, x), jax.jit(f)(prepared, x)
    g0, g1 = vg(params)(x)[1], vg(prepared)(x)[1]
    assert max_abs(y0, y1) <= tol_rel * float(jnp.max(jnp.abs(y0))) + 1e-7
    assert max_abs(g0, g1) <= tol_rel * 10 * float(jnp.max(jnp.abs(g0)))  # grads: rtol 1e-4
    return y1


def _kernels(tree) -> list:
    return [
        leaf
        for leaf in jax.tree.leaves(tree, is_leaf=lambda a: isinstance(a, nn.Kernel))
        if isinstance(leaf, nn.Kernel)
    ]


def _leaves(tree) -> list:
    return jax.tree.leaves(tree, is_leaf=lambda a: isinstance(a, nn.Kernel))


@pytest.mark.slow
def test_prepared_idinvert_networks_are_the_same_functions(tiny_models, fx):
    g = tiny_models.net("generator")
    pg = g.prepared()["prepared"]["synthesis"]
    assert all("phases" in pg[f"layer{k}"]["conv"] for k in range(2, g.module.num_layers, 2))
    raw = {c: v for c, v in g.prepared().items() if c != "prepared"}
    assert raw.keys() == g.variables.keys()

    def synth(v, w):
        return g.module.apply(v, w, method="synthesis")

    img = _same_function(synth, g.variables, g.prepared(), jnp.asarray(fx["inputs/wp"]))
    assert max_abs(np.asarray(img).transpose(0, 3, 1, 2), fx["synthesis/image"]) < TOL["synthesis"]

    x = jnp.asarray(fx["inputs/encoder_images"]).transpose(0, 2, 3, 1)
    for role, method in (("encoder", None), ("perceptual", "features")):
        net = tiny_models.net(role)
        n_conv = sum(1 for a in jax.tree.leaves(net.variables["params"]) if a.ndim == 4)
        kernels = [k for k in _leaves(net.prepared()["prepared"]) if isinstance(k, nn.Kernel)]
        assert len(kernels) == n_conv

        def f(v, x, net=net, method=method):
            return net.module.apply(v, x, method=method)

        _same_function(f, net.variables, net.prepared(), x)

    d = tiny_models.net("discriminator")
    pd = d.prepared()["prepared"]
    blocks = len(d.module.channels) - 1
    assert all("down" in pd[f"block{i}_conv1_down"] for i in range(blocks))
    xd = jnp.asarray(fx["inputs/disc_images"]).transpose(0, 2, 3, 1)
    scores = _same_function(lambda v, x: d.module.apply(v, x), d.variables, d.prepared(), xd)
    assert max_abs(scores, fx["disc/score_batch8"][:, 0]) < TOL["disc"]


def _weight_only_ops(hlo: str) -> list[str]:
    """Instructions of the entry computation that read network parameters only (not a bitcast or
    a parameter itself): work that would be the same in every step."""
    main = hlo[hlo.rfind("ENTRY") :]
    defs = {}
    for line in main.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
        if m:
            defs[m.group(1)] = m.group(2)
    memo: dict[str, bool] = {}

    def weight_only(n: str) -> bool:
        if n not in memo:
            rhs = defs[n]
            if re.search(r" parameter\(\d+\)", rhs):
                memo[n] = n.startswith("variables")
            else:
                head = rhs.split("calls=")[0].split("metadata=")[0]
                ops = [o for o in re.findall(r"%([\w.\-]+)", head) if o in defs]
                memo[n] = bool(ops) and all(weight_only(o) for o in ops)
        return memo[n]

    out = []
    for n, rhs in defs.items():
        if re.search(r" parameter\(\d+\)", rhs) or " bitcast(" in rhs or not weight_only(n):
            continue
        shape = re.match(r"\w+\[([\d,]*)\]", rhs)
        rank = len([d for d in shape.group(1).split(",") if d]) if shape else 0
        if rank >= 3:  # kernel-shaped (BN's per-channel vectors are negligible)
            out.append(f"{n} = {rhs[:120]}")
    return out


@pytest.mark.parametrize(
    "approach", ["baseline", pytest.param("prior_disc", marks=pytest.mark.slow)]
)
def test_compiled_step_does_no_kernel_work(tiny_models, approach):
    """The step's HLO has no kernel-shaped instruction that depends on the weights alone (before
    preparation, XLA:CPU transposed every conv kernel for its input gradient in every step)."""
    res, b = 64, 2
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (b, 3, res, res)).astype(np.float32)
    mk = np.zeros((b, 1, res, res), np.float32)
    mk[:, :, 20:40, 10:50] = 1
    refs = rng.normal(size=(b, 3, *tiny_models.code_shape)).astype(np.float32)
    cfg = occjax.preset(approach, steps=1)
    problems = api.validate(tiny_models, t, mk, cfg)
    prep = api.prepare(tiny_models, problems, refs, np.ones((b, 3), np.float32), devices=1)
    run = engine._runner(False, None, prep.static, prep.state)
    hlo = run.lower(prep.state, prep.variables, prep.data, prep.hyper).compile().as_text()
    assert not _weight_only_ops(hlo), "\n".join(_weight_only_ops(hlo)[:10])
    # the check itself can fail: the raw (unprepared) variables do kernel work in every step
    raw = {
        k: tiny_models.net(role).variables
        for k, role in engine.ROLE_KEYS.items()
        if k in prep.variables
    }
    hlo_raw = run.lower(prep.state, raw, prep.data, prep.hyper).compile().as_text()
    assert _weight_only_ops(hlo_raw)


def test_faces64_step_does_no_kernel_work():
    """The built-in model's step too: the DCGAN's transposed convs read their flipped kernels from
    the prepared collection and convolve the input gradient with the stored ones (before, XLA:CPU
    flipped and transposed each up-sampling kernel twice in every step)."""
    models = occjax.load_models(bundle="faces64")
    res, b = models.resolution, 1
    t = np.random.default_rng(0).uniform(-1, 1, (b, 3, res, res)).astype(np.float32)
    mk = np.zeros((b, 1, res, res), np.float32)
    mk[:, :, 20:40, 10:50] = 1
    problems = api.validate(models, t, mk, models.preset("baseline", steps=1))
    prep = api.prepare(
        models,
        problems,
        np.zeros((b, 1, *models.code_shape), np.float32),
        np.zeros((b, 1), np.float32),
        devices=1,
    )
    run = engine._runner(False, None, prep.static, prep.state)
    hlo = run.lower(prep.state, prep.variables, prep.data, prep.hyper).compile().as_text()
    assert not _weight_only_ops(hlo), "\n".join(_weight_only_ops(hlo)[:10])
    # the step compiles with occjax.xla's options: XLA's YNN fusion off (slow on VGG's backward)
    if jax.default_backend() == "cpu":
        assert "__ynn_fusion" not in hlo
        # ... except with batch_invariant, whose bits must not depend on the device count
        from occjax.options import Options

        args = (np.zeros((b, 1, *models.code_shape), np.float32), np.zeros((b, 1), np.float32))
        inv = api.prepare(models, problems, *args, opts=Options(devices=1, batch_invariant=True))
        assert inv.invariant
        run = engine._runner(False, None, inv.static, inv.state, inv.invariant)
        hlo = run.lower(inv.state, inv.variables, inv.data, inv.hyper).compile().as_text()
        assert "__ynn_fusion" in hlo


def test_step_jit_turns_the_ynn_fusion_off():
    """`xla.step_jit` reaches XLA: for a step with LPIPS-VGG, a conv + ReLU chain's gradient, which
    XLA:CPU fuses into YNNPACK subgraphs by default, compiles without them (so the option's name
    and value still work); idinvert's VGG, no perceptual term and `batch_invariant` keep XLA's
    defaults."""
    import jax
    import jax.numpy as jnp

    from occjax import layers, xla
    from occjax.networks.vgg16 import VGG16

    def f(x, w):
        def loss(x):
            return jnp.sum(
                jnp.maximum(layers.conv2d(jnp.maximum(layers.conv2d(x, w, 1, 1), 0), w, 1, 1), 0)
            )

        return jax.grad(loss)(x)

    lpips, idinvert = VGG16((8,) * 13, "lpips"), VGG16((8,) * 10, "idinvert")
    x, w = jnp.ones((1, 8, 8, 64)), jnp.full((3, 3, 64, 64), 0.01)
    default = jax.jit(f).lower(x, w).compile().as_text()
    ours = xla.step_jit(f, lpips).lower(x, w).compile().as_text()
    if jax.default_backend() == "cpu":
        assert "__ynn_fusion" in default  # the default we turn off
        assert "__ynn_fusion" not in ours
        assert xla.step_options(lpips) == xla.CPU_STEP_OPTIONS
    assert xla.step_options(lpips, invariant=True) is None
    assert xla.step_options(idinvert) is None and xla.step_options(None) is None
    np.testing.assert_allclose(jax.jit(f)(x, w), xla.step_jit(f, lpips)(x, w), rtol=1e-5, atol=1e-6)
