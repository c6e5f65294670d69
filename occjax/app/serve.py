"""`python scripts/app.py`: check for gradio, load the model, serve the page on 127.0.0.1."""

from __future__ import annotations

import sys

from occjax.app.config import HOST, AppCLI
from occjax.deps import available

MISSING_GRADIO = 'The web page needs gradio: pip install -e ".[app]"'


def load(models: str):
    """The model of `--models`: a bundle folder or a built-in model's name."""
    import occjax

    return occjax.load_models(bundle=models)


def start(models, port: int, block: bool = True):
    """Build and launch the page; with block=False, return the running Blocks (tests)."""
    from occjax.app import offline

    offline.set_environment()
    from occjax.app.page import build_page

    page = build_page(models)
    page.queue(default_concurrency_limit=1)
    page.launch(prevent_thread_lock=not block, quiet=not block, **offline.launch_options(port))
    return page


def main(cfg: AppCLI) -> int:
    """Serve the page until interrupted; one line on stderr and a non-zero code on failure."""
    if not available("gradio"):
        print(MISSING_GRADIO, file=sys.stderr)
        return 1
    import occjax.cache
    from occjax.app import offline

    offline.set_environment()
    occjax.cache.setup(enabled=not cfg.no_cache)  # before anything compiles
    try:
        models = load(cfg.models)
    except (ValueError, OSError) as e:
        print(f"error: --models {cfg.models}: {e}", file=sys.stderr)
        return 2
    print(f"occjax: model {models.name} loaded; starting the page on http://{HOST}:{cfg.port}")
    try:
        start(models, cfg.port)
    except OSError as e:
        print(f"error: cannot serve on {HOST}:{cfg.port}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
