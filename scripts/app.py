"""A local web page to restore a face photo (see `python scripts/app.py --help`).

python scripts/app.py                          # the built-in face model on http://127.0.0.1:7860
python scripts/app.py --port 8080 --models models/ffhq256
"""

from __future__ import annotations

import sys

import tyro

from occjax.app import AppCLI, main

if __name__ == "__main__":
    sys.exit(main(tyro.cli(AppCLI)))
