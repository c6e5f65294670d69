"""One browser tab's work: its photo, references, last result and files.

The page keeps a `Session` per tab (gradio's per-session state), so two tabs never see each
other's uploads or results. Its files live in a folder of its own, removed when the tab is gone.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from occjax.app.inputs import Photo


@dataclass
class References:
    """The screened reference photos: their `occjax.Screening` and the settings that made it."""

    photos: list[Photo]
    screening: object | None  # occjax.Screening (None: no usable reference)
    skipped: list[str]  # one line per unusable upload
    key: tuple  # (file paths, align, steps): screened again when it changes


@dataclass
class Session:
    photo: Photo | None = None
    references: References | None = None
    result: object | None = None  # occjax.app.actions.Restoration of the last run
    cancel: bool = False  # set by Cancel, read by the running restoration's progress callback
    runs: int = 0
    folder: str | None = field(default=None, repr=False)

    def run_folder(self) -> Path:
        """A new folder for one run's downloads (earlier links keep working)."""
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="occjax-app-")
        self.runs += 1
        out = Path(self.folder) / f"run{self.runs}"
        out.mkdir(parents=True, exist_ok=True)
        return out

    def close(self) -> None:
        """Forget the tab's work and delete its files."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        self.photo = self.references = self.result = None


def new_session() -> Session:
    """A new tab's session (gradio calls it for each tab)."""
    return Session()


def close_session(session: Session | None) -> None:
    """gradio's delete callback: called when the tab's state expires."""
    if session is not None:
        session.close()
