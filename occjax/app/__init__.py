"""A local web page to restore a face photo: `python scripts/app.py` (needs the `app` extra).

inputs (uploads -> model inputs), editor (brush editor <-> mask), actions (the public API calls),
outputs (what is shown and downloaded), handlers (the callbacks, no gradio), page (gradio layout),
offline (no CDN, analytics off), serve (the entry point). Importing this package needs no gradio.
"""

from occjax.app.config import AppCLI
from occjax.app.serve import main

__all__ = ["AppCLI", "main"]
