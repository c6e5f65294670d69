"""The `scripts/invert.py` command: options, cases, demo, batched runs, resumable results."""

from occjax.cli.config import InvertCLI
from occjax.cli.runner import main, run

__all__ = ["InvertCLI", "main", "run"]
