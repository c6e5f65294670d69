"""occjax.cache: a second process reuses the first one's compiled programs (counted through JAX's
monitoring events, not timed), OCCJAX_CACHE_DIR moves and disables the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# One small jitted program, with occjax.cache.setup() as the entry points call it; prints how many
# programs were looked up in the persistent cache, found there, and compiled and written to it.
PROGRAM = r"""
import json, sys
import occjax.cache
path = occjax.cache.setup(enabled=sys.argv[1] == "on")
from jax import monitoring
import jax, jax.numpy as jnp
counts = {"requests": 0, "hits": 0, "misses": 0}
names = {"/jax/compilation_cache/compile_requests_use_cache": "requests",
         "/jax/compilation_cache/cache_hits": "hits",
         "/jax/compilation_cache/cache_misses": "misses"}
def listen(event, **kw):
    if event in names:
        counts[names[event]] += 1
monitoring.register_event_listener(listen)
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() * 3.0 + 1.0)
f(jnp.ones((8, 8))).block_until_ready()
counts["path"] = None if path is None else str(path)
print(json.dumps(counts))
"""


def _run(env: dict, mode: str = "on") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def env(tmp_path) -> dict:
    """The environment of a user: no test cache, no thresholds, OCCJAX_CACHE_DIR in tmp_path."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    e["OCCJAX_CACHE_DIR"] = str(tmp_path / "cache")
    e.pop("XLA_FLAGS", None)
    return e


def test_second_process_reuses_compiled_program(env, tmp_path):
    first = _run(env)
    assert first["path"] == str(tmp_path / "cache" / "jax")
    # a program compiling in milliseconds is written too (min compile time 0, no size floor)
    assert first["requests"] >= 1 and first["hits"] == 0 and first["misses"] >= 1
    assert any((tmp_path / "cache" / "jax").iterdir())
    second = _run(env)
    assert second["requests"] == first["requests"]
    assert second["hits"] == first["requests"] and second["misses"] == 0


def test_cache_off(env, tmp_path):
    for e, mode in ((dict(env, OCCJAX_CACHE_DIR="off"), "on"), (env, "off")):
        got = _run(e, mode)
        assert got["path"] is None and got["requests"] == 0 and got["hits"] == 0
    assert not (tmp_path / "cache").exists()


def test_folder_and_reference_dir(monkeypatch, tmp_path):
    import occjax.cache as c

    monkeypatch.delenv(c.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert c.folder() == tmp_path / "occjax"
    assert c.reference_dir() == tmp_path / "occjax" / "references"
    monkeypatch.setenv(c.ENV, str(tmp_path / "x"))
    assert c.reference_dir() == Path(tmp_path / "x" / "references")
    monkeypatch.setenv(c.ENV, "off")
    assert c.folder() is None and c.reference_dir() is None


@pytest.mark.slow
def test_page_second_restoration_compiles_nothing():
    """The page's second restoration of the same photo (and settings) reuses the first one's
    compiled programs: no compilation at all, counted by occjax.cache.compile_stats."""
    import dataclasses

    import numpy as np

    import occjax
    import occjax.cache
    from occjax.app import actions
    from occjax.app.inputs import Photo

    models = occjax.load_models(bundle="faces64")
    z = np.random.default_rng(0).normal(size=(1, 100)).astype(np.float32)
    image = np.asarray(models.generate(z))[0]
    photo = Photo("p.png", np.zeros((64, 64, 3), np.uint8), image)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[:, 20:40, 16:48] = 1
    s = dataclasses.replace(actions.default_settings(models, "baseline"), steps=2)
    actions.restore(models, photo, mask, None, s)
    c0 = occjax.cache.compile_stats()
    actions.restore(models, photo, mask, None, s)
    c1 = occjax.cache.compile_stats()
    assert c1["programs_compiled"] == c0["programs_compiled"]
    assert c1["programs_from_cache"] == c0["programs_from_cache"]


def test_no_cache_option():
    import tyro

    from occjax.app.config import AppCLI
    from occjax.cli import InvertCLI

    assert tyro.cli(InvertCLI, args=["--no-cache"]) == InvertCLI(no_cache=True)
    assert tyro.cli(InvertCLI, args=[]).no_cache is False
    assert tyro.cli(AppCLI, args=["--no-cache"]) == AppCLI(no_cache=True)
