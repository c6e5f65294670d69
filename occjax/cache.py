"""occjax's cache folder: JAX's persistent compilation cache and the reference codes.

Both live under the user's cache folder, `~/.cache/occjax/` (`$XDG_CACHE_HOME/occjax` when that is
set): `jax/` holds compiled XLA programs (JAX's persistent compilation cache, keyed by JAX on the
program, the XLA flags, the backend and the versions), `references/` the codes of inverted
reference photos (`occjax.references`, keyed by image, weights and settings). `OCCJAX_CACHE_DIR`
moves the folder; `OCCJAX_CACHE_DIR=off` turns both off, as `setup(enabled=False)` does (the
CLI's and the page's `--no-cache`).

Entry points (the CLI, the page, the benchmarks) call `setup()` once, before anything compiles:
JAX decides whether a process uses the cache at its first compilation. A `JAX_COMPILATION_CACHE_DIR`
already in the environment wins (the tests point it at a folder of their own), and so do the
thresholds' own environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "OCCJAX_CACHE_DIR"
OFF = ("off", "0", "none", "false", "")

# Cache every program, however fast it compiled: the demo compiles dozens of small programs (PSNR,
# LPIPS, synthesis of each chunk size) whose compile times add up to seconds, and a cached entry
# loads in milliseconds. JAX's default (1 s) would leave most of them out.
MIN_COMPILE_TIME_S = 0.0

_enabled = True


def folder() -> Path | None:
    """The cache folder, or None when caching is off (`setup(enabled=False)`, OCCJAX_CACHE_DIR=off)."""
    if not _enabled:
        return None
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "occjax"


def reference_dir() -> Path | None:
    """Where reference codes are cached (`reference_cache=` of the API), or None when off."""
    f = folder()
    return None if f is None else f / "references"


def setup(enabled: bool = True) -> Path | None:
    """Turn on JAX's persistent compilation cache in `folder()/jax` (or record that caching is off)
    and return the compile cache's folder, or None. Call it before the first compilation."""
    global _enabled
    _enabled = bool(enabled)
    import jax

    if "JAX_COMPILATION_CACHE_DIR" in os.environ and enabled:  # the caller's own (the tests')
        path = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    else:
        f = folder()
        if f is None:  # off, also over a JAX_COMPILATION_CACHE_DIR of the environment
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        path = f / "jax"
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in os.environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size floor
    return path


_stats = {"compile_s": 0.0, "programs_compiled": 0, "programs_from_cache": 0}
_listening = False


def _on_duration(event: str, duration: float, **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":  # compiling, or loading from cache
        _stats["compile_s"] += duration
        _stats["programs_compiled"] += 1


def _on_event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _stats["programs_from_cache"] += 1
        _stats["programs_compiled"] -= 1  # counted by its backend_compile_duration too


def compile_stats() -> dict:
    """Since the first call, in this process: seconds in XLA compilation (loading a program from
    the persistent cache included), programs compiled, and programs loaded from the cache. Take
    differences of two calls to time a stage (JAX's monitoring events; listening starts at the
    first call)."""
    global _listening
    if not _listening:
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(_on_duration)
        monitoring.register_event_listener(_on_event)
        _listening = True
    return dict(_stats)
