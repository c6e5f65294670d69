"""The page's callbacks as plain functions: page values in, page values and messages out.

Each takes the tab's `Session` and the widgets' values and returns the new values of its outputs,
`KEEP` where one stays as it is. Problems come back as a one-line message for the page (a bad
upload, a missing dependency, a failure inside occjax): never a traceback, which goes to the
server's log instead. No gradio here, so the page's behaviour is testable without a browser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from occjax.app import actions, outputs
from occjax.app.editor import editor_value, mask_from_editor
from occjax.app.errors import UserError
from occjax.app.inputs import load_mask_file, load_photo
from occjax.app.session import Session

log = logging.getLogger("occjax.app")

KEEP = type("Keep", (), {"__repr__": lambda self: "KEEP"})()  # an output left as it is
Report = Callable[[float, str], None]  # progress: (fraction done, what is going on)


def problem(what: str, e: Exception) -> str:
    """The page's one-line message for an exception (logged with its traceback when unexpected)."""
    if isinstance(e, UserError):
        return f"**⚠ {e}**"
    log.exception("%s failed", what)
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"**⚠ {what} failed: {e.__class__.__name__}{': ' + text if text else ''}**"


def _quiet(fraction: float, text: str) -> None:
    pass


class Handlers:
    """The callbacks of one page, bound to its models."""

    def __init__(self, models):
        self.models = models
        self.size = models.resolution

    # ---- the photo ----

    def photo(self, s: Session, path: str | None, align: bool) -> tuple:
        """Upload (or "align face" toggled): -> (editor, photo message, mask message)."""
        s.photo = s.result = None
        if not path:
            return None, "", ""
        try:
            s.photo = load_photo(path, self.size, align)
        except Exception as e:
            return None, problem("loading the photo", e), ""
        hint = (
            'Paint the occluded area, press "auto mask" and correct it, or upload a mask '
            "(the photo's size, white = occluded)."
        )
        return editor_value(s.photo.image), s.photo.note, hint

    # ---- the mask ----

    def mask_file(self, s: Session, path: str | None) -> tuple:
        """A mask image uploaded: -> (editor, mask message)."""
        if not path:
            return KEEP, ""
        try:
            if s.photo is None:
                raise UserError("upload the photo before its mask")
            mask = load_mask_file(path, s.photo)
        except Exception as e:
            return KEEP, problem("loading the mask", e)
        pct = 100 * float(mask.mean())
        return editor_value(s.photo.image, mask), f"Mask loaded: {pct:.1f} % of the photo."

    def auto_mask(self, s: Session, steps: float, report: Report = _quiet) -> tuple:
        """The "auto mask" button: -> (editor, mask message)."""
        try:
            if s.photo is None:
                raise UserError("upload a photo first")
            report(0.0, "estimating the mask")
            n = _count(steps, "auto mask steps")
            mask = actions.propose_mask(self.models, s.photo, s.references, n)
        except Exception as e:
            return KEEP, problem("auto mask", e)
        pct = 100 * float(mask.mean())
        with_refs = actions.kept_codes(s.references) is not None
        how = " (held near the kept references)" if with_refs else ""
        msg = f"Proposed mask{how}: {pct:.1f} % of the photo. Correct it with the brush and eraser."
        return editor_value(s.photo.image, mask), msg

    # ---- the references ----

    def references(
        self, s: Session, paths: list | None, align: bool, steps: float, report: Report = _quiet
    ) -> tuple:
        """Reference uploads: screen them -> (gallery, verdict table)."""
        s.references = None
        if not paths:
            return [], ""
        try:
            report(0.0, f"screening {len(paths)} reference(s)")
            n = _count(steps, "reference steps")
            s.references = actions.screen(self.models, _names(paths), align, n)
        except Exception as e:
            return [], problem("screening the references", e)
        return outputs.gallery(s.references), outputs.verdict_table(s.references)

    # ---- Run, Cancel ----

    def run(
        self,
        s: Session,
        editor: dict | None,
        widgets: tuple,
        paths: list | None,
        align: bool,
        report: Report = _quiet,
    ) -> tuple:
        """Run with the settings' widget values (approach, steps, adaptive, prior weight,
        reference steps): -> (message, before/after, mask used, loss curve, downloads, gallery,
        verdict table)."""
        keep = (KEEP,) * 6
        s.cancel = False
        try:
            settings = settings_from(*widgets)
            if s.photo is None:
                raise UserError("upload a photo first")
            mask = mask_from_editor(editor, self.size)
            refs_out = (KEEP, KEEP)
            cfg = actions.make_config(self.models, settings)
            if cfg.uses_references and paths:
                key = (tuple(_names(paths)), bool(align), int(settings.reference_steps))
                if s.references is None or s.references.key != key:
                    refs_out = self.references(s, paths, align, settings.reference_steps, report)
            start = "starting"
            if cfg.approach == "personal":  # its pivots first, then a report per step
                start = "inverting the references and the photo first"
            report(0.0, f"{cfg.approach}: {start}")

            def on_step(done: int, total: int) -> None:
                report(done / max(total, 1), f"{cfg.approach}: step {done}/{total}")

            r = actions.restore(
                self.models, s.photo, mask, s.references, settings, on_step, lambda: s.cancel
            )
            files = [str(f) for f in outputs.write_downloads(s.run_folder(), r)]
            curve = outputs.loss_curve(r)
            shown = outputs.mask_overlay(r.photo.image, r.mask)
        except actions.Cancelled as e:
            return (f"Cancelled after {e.done} of {e.total} steps.", *keep)
        except Exception as e:
            return (problem("the restoration", e), *keep)
        s.result = r
        return (outputs.run_summary(r), outputs.before_after(r), shown, curve, files, *refs_out)

    def cancel(self, s: Session) -> str:
        """Cancel: the running restoration stops at its next progress report."""
        s.cancel = True
        return "Cancelling..."


def _names(paths: list) -> list[str]:
    """File paths from a file widget's value (strings or objects with .name)."""
    return [str(getattr(p, "name", p)) for p in paths]


def _count(value, what: str) -> int:
    if value is None:
        raise UserError(f"{what}: enter a number")
    return int(value)


def settings_from(
    approach: str, steps: float, adaptive: bool, weight: float, ref_steps: float
) -> actions.Settings:
    """The page's widget values as Settings (UserError for an empty number field)."""
    w = 0.0 if weight is None else float(weight)
    return actions.Settings(
        str(approach),
        _count(steps, "steps"),
        bool(adaptive),
        w,
        _count(ref_steps, "reference steps"),
    )
