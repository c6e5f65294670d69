"""The `scripts/app.py` options (a frozen dataclass; each field's docstring is its `--help`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "faces64"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class AppCLI:
    """A local web page to restore a face photo (occjax): upload a photo, paint or propose the
    occlusion mask, add reference photos of the person, restore, download.

    The page is served on 127.0.0.1 only, works offline (no CDN, analytics off) and keeps each
    browser tab's work apart. Needs the `app` extra: pip install -e ".[app]"."""

    port: int = 7860
    """Port of the page on 127.0.0.1."""
    models: str = DEFAULT_MODEL
    """Model: a converted bundle folder (scripts/convert.py) or a built-in model's name."""
    no_cache: bool = False
    """Turn off occjax's caches in ~/.cache/occjax (OCCJAX_CACHE_DIR moves it, =off turns it off): compiled programs and the codes of screened reference photos."""
