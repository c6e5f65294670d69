"""Shared test helpers: where ../shared lives, fixture loading, one tolerance table."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# 4 CPU devices for the sharding tests. The tests compile many small programs once each, and LLVM's
# optimisation passes are most of that time: level 0 halves it (the same HLO programs and fusions;
# results differ only by rounding, well inside every tolerance). OCCJAX_TEST_XLA_OPT=1 keeps XLA's
# default optimisation.
_flags = ["--xla_force_host_platform_device_count=4"]
if os.environ.get("OCCJAX_TEST_XLA_OPT") != "1":
    _flags.append("--xla_backend_optimization_level=0")
os.environ.setdefault("XLA_FLAGS", " ".join(_flags))
# compiled programs are shared between the test workers and the CLI subprocesses they start, within
# this run only: the cache starts empty (a fresh folder per run, made before the workers start)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="occjax-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
# occjax's own cache folder (reference codes; occjax.cache) likewise: never the user's ~/.cache
if "OCCJAX_CACHE_DIR" not in os.environ:
    os.environ["OCCJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="occjax-cache-")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCCJAX_SHARED", REPO.parent / "shared"))
IDINVERT = SHARED / "fixtures" / "idinvert"
STYLENAT = SHARED / "fixtures" / "stylenat_disc"
IDINVERT_TF = SHARED / "fixtures" / "idinvert_tf"
DATA = SHARED / "data"

TINY = {
    "generator": IDINVERT / "styleganinv_tiny64_generator.pth",
    "encoder": IDINVERT / "styleganinv_tiny64_encoder.pth",
    "perceptual": IDINVERT / "vgg16_tiny_div8.pth",
    "discriminator": IDINVERT / "styleganinv_tiny64_discriminator.pth",
}

# Max-abs tolerances per fixture group, float32 port vs the float32 PyTorch reference. Justified by
# fixtures/idinvert/stats.json (float32 vs float64 of the reference itself): mapping 2.6e-6, images
# 1e-5, synthesis taps 5e-5 on values up to 20, encoder 1.4e-5 on values up to 17, VGG features
# 2.8e-4 on values up to 144 (its input is scaled by 127.5), discriminator taps 8.5e-6; the README
# suggests atol 1e-4 for forward arrays and 1e-3 for vgg/*. Trajectories: losses rtol 1e-4, first
# gradient atol 1e-5, Adam codes atol 1e-4 (invert) and 1e-3 (diffuse: Adam divides by sqrt(v)).
TOL = {
    "mapping": 1e-4,
    "truncation": 1e-4,
    "generator": 1e-4,
    "synthesis": 1e-4,
    "encoder": 1e-4,
    "vgg": 1e-3,
    "disc": 1e-4,
    "invert/codes": 1e-4,
    "invert/grads0": 1e-5,
    "diffuse/codes": 1e-3,
    "loss_rtol": 1e-4,
}


def need(path: Path) -> Path:
    """The path, if it exists; otherwise the test is skipped on a developer's machine, and FAILS
    under CI (CI=true), where ../shared is always laid beside the clone: a CI run must never pass
    with the parity suite skipped."""
    if not path.exists():
        why = f"{path} is absent: tests read ../shared beside the repository checkout"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why} (CI=true: a missing fixture is a failure, not a skip)")
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def fx() -> dict[str, np.ndarray]:
    with np.load(need(IDINVERT / "fixtures.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def tiny_models():
    import occjax

    for p in TINY.values():
        need(p)
    return occjax.load_models(**{k: str(v) for k, v in TINY.items()})


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def sown(intermediates) -> dict[str, np.ndarray]:
    """Flax's sown taps {module path...: {name: (value,)}} as {name: value} (names are unique)."""
    out: dict[str, np.ndarray] = {}

    def walk(node):
        for k, v in node.items():
            if isinstance(v, tuple):
                assert k not in out, f"tap {k} sown twice"
                out[k] = np.asarray(v[0])
            else:
                walk(v)

    walk(intermediates)
    return out


def taps(net, *args, method=None, **kw):
    """(output, {tap name: array}) of a network's method, its taps through Flax's sow."""
    y, state = net.module.apply(
        net.variables, *args, method=method, mutable=["intermediates"], **kw
    )
    return y, sown(state["intermediates"])


def fake_invert_personal(calls: list):
    """A stand-in for `occjax.personal.invert_personal` (monkeypatch it in): records each call's
    references, config and options in `calls`, reports every step to a callable `progress`, and
    returns a cheap `InvertResult` (the targets halved, a falling loss trace of personal's terms),
    so that the CLI's and the page's plumbing is tested without tuning weights."""
    from occjax.api import InvertResult, Trace
    from occjax.personal import TERMS

    def fake(models, targets, masks=None, references=None, config=None, **kw):
        calls.append({"references": references, "config": config, **kw})
        targets = np.asarray(targets, np.float32)
        b = len(targets)
        cfgs = config if isinstance(config, list) else [config] * b
        steps = cfgs[0].steps
        if callable(kw.get("progress")):
            for i in range(steps):
                kw["progress"](i + 1)
        curve = np.linspace(1.0, 0.5, steps, dtype=np.float32)[:, None].repeat(b, 1)
        losses = {t: curve * (k + 1) for k, t in enumerate(TERMS)}
        refs = references or [None] * b
        return InvertResult(
            codes=np.zeros((b, *models.code_shape), np.float32),
            images=targets * 0.5,
            init_codes=np.zeros((b, *models.code_shape), np.float32),
            final_losses={t: v[-1] for t, v in losses.items()},
            flagged=np.zeros(b, bool),
            occluded_pct=np.zeros(b, np.float32),
            n_refs=np.asarray([0 if r is None else len(r) for r in refs], np.int32),
            trace=Trace(None, losses, None),
            fallback=["no references" if r is None else None for r in refs],
            timings={"first_call_s": 0.0},
        )

    return fake
