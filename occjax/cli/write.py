"""Write one case's outputs: images, codes, loss curves, the mask its restoration used, figures that
show every approach of the case (also those finished by an earlier, resumed run), and its lines of
results.jsonl (records.py's schema)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occjax import records
from occjax.blend import blend
from occjax.cli import figures
from occjax.cli.cases import Case
from occjax.cli.inputs import Loaded
from occjax.cli.report import masked_error, paste_square
from occjax.config import APPROACHES, OPT_IN_APPROACHES
from occjax.io import ImageError, load_image, save_image, to_uint8
from occjax.params import atomic_write_bytes

# what an approach without usable references runs as (recorded as "fallback": "<as>: <why>")
FALLBACK_AS = {"personal": "target only"}  # personal tunes on the target's visible pixels alone


def base_record(case: Case, approach: str, res: int, settings_hash: str) -> dict:
    return {
        "case": case.name,
        "approach": approach,
        "status": "failed",
        "error": None,
        "settings_hash": settings_hash,
        "target": str(case.target),
        "mask": None,
        "mask_source": "auto" if case.mask == "auto" else ("file" if case.mask else None),
        "mask_file": str(case.mask) if case.mask and case.mask != "auto" else None,
        "refs": [str(r) for r in case.refs],
        "clean": str(case.clean) if case.clean else None,
        "restored": None,
        "encoder": None,
        "resolution": res,
        "occluded_pct": None,
        "n_refs": len(case.refs),
        "losses": {},
        "time_s": 0.0,
        "meta": dict(case.meta),
    }


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class Outcome:
    """One case's results in memory: approach -> (image [3,R,R], code [L,D], final losses, trace)."""

    encoder: np.ndarray  # [3, R, R]
    init_code: np.ndarray  # [L, D]
    results: dict[str, tuple] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # approach -> error
    screened: object | None = None  # occjax.Screening
    # approach -> why it ran as its fallback (baseline; personal: on the target alone)
    fallback: dict[str, str] = field(default_factory=dict)
    mask_estimate: np.ndarray | None = None  # [1, R, R] before its margin (--mask auto)


class CaseWriter:
    def __init__(self, plan, writer: records.ResultsWriter):
        self.plan, self.writer = plan, writer
        self.out, self.res = plan.out, plan.models.resolution
        self.table: dict[str, list[tuple[float, float]]] = {}
        self.errors: list[str] = []

    def folder(self, case: Case) -> Path:
        """cases/<name>, checked to stay inside the run folder (case names are made safe in
        cases.py; this is the last guard before anything is written)."""
        root = (self.out / "cases").resolve()
        f = (root / case.name).resolve()
        if root not in f.parents:
            raise ImageError(f"case name {case.name!r} would write outside {root}")
        return f

    def fail(self, case: Case, approach: str, error: str, **extra) -> None:
        rec = base_record(case, approach, self.res, self.plan.line_hash(approach)) | extra
        rec["error"] = error
        self.writer.append(rec)
        self.errors.append(f"{case.name} [{approach}]: {error}")

    def write(self, case: Case, ld: Loaded, todo: list[str], oc: Outcome, per_s: float) -> None:
        from occjax.occlusion.measure import occluded_percentage

        folder = self.folder(case)
        rel = folder.relative_to(self.out.resolve())
        pct = {k: occluded_percentage(ld.mask[0] > 0.5, k) for k in ("box", "image")}
        save_image(folder / "encoder.png", oc.encoder)
        save_image(folder / "input.png", ld.target)
        save_image(folder / "mask.png", ld.mask)  # the exact mask every restoration here used
        if oc.mask_estimate is not None:
            save_image(folder / "mask_auto.png", oc.mask_estimate)
        recs = []
        for a in todo:
            if a in oc.failed:
                self.fail(case, a, oc.failed[a], occluded_pct=pct)
                continue
            img, code, losses, trace = oc.results[a]
            save_image(folder / f"{a}.png", img)
            blended = blend(img[None], ld.target[None], ld.mask[None], self.plan.cfg.blend)[0]
            save_image(folder / f"{a}_blended.png", blended)
            atomic_write_bytes(folder / f"{a}_codes.npz", _npz(code=code, init_code=oc.init_code))
            if trace:
                atomic_write_bytes(folder / f"{a}_losses.csv", figures.losses_csv(trace))
            rec = base_record(case, a, self.res, self.plan.line_hash(a)) | {
                "status": "ok",
                "input": str(rel / "input.png"),
                "mask": str(rel / "mask.png"),
                "restored": str(rel / f"{a}.png"),
                "blended": str(rel / f"{a}_blended.png"),
                "encoder": str(rel / "encoder.png"),
                "occluded_pct": pct,
                "n_refs": _n_refs(ld, oc.screened),
                "losses": {t: float(v) for t, v in losses.items()},
                "time_s": round(per_s, 4),
            }
            if oc.mask_estimate is not None:
                rec["mask_estimate"] = str(rel / "mask_auto.png")
            if oc.screened is not None:
                rec["screening"] = oc.screened.record()
            if a in oc.fallback:
                rec["fallback"] = f"{FALLBACK_AS.get(a, 'baseline')}: {oc.fallback[a]}"
            if self.plan.cfg.paste_back:
                rec["pasted"] = str(rel / f"{a}_pasted.png")
                save_image(self.out / rec["pasted"], _paste(blended, case, ld))
            recs.append(rec)
            if ld.clean is not None:
                self.table.setdefault(a, []).append(masked_error(img, ld.clean, ld.mask))
        self.figures(case, ld, oc, folder)
        for rec in recs:
            rec["side_by_side"] = str(rel / "side_by_side.png")
            self.writer.append(rec)

    def figures(self, case: Case, ld: Loaded, oc: Outcome, folder: Path) -> None:
        """The side-by-side and loss curves of EVERY approach of the case: this run's, and those an
        earlier run finished (read back from their files)."""
        images = {a: r[0] for a, r in oc.results.items()}
        curves = {a: r[3] for a, r in oc.results.items() if r[3]}
        for a, rec in self.plan.previous.get(case.name, {}).items():
            if a in images or a in oc.failed:
                continue
            try:
                images[a] = load_image(self.out / rec["restored"], self.res)
            except (ImageError, OSError, KeyError, TypeError):
                continue  # its file is gone: the record stays, the figure cannot show it
            if (c := figures.read_losses_csv(folder / f"{a}_losses.csv")) is not None:
                curves[a] = c
        order = {a: i for i, a in enumerate(APPROACHES + OPT_IN_APPROACHES)}
        images = dict(sorted(images.items(), key=lambda kv: order.get(kv[0], len(order))))
        curves = {a: curves[a] for a in images if a in curves}
        if curves:
            atomic_write_bytes(folder / "losses.png", figures.loss_curve_png(curves, case.name))
        if not images:
            return
        refs = [] if ld.refs is None else list(ld.refs[:8])
        sc = oc.screened
        flags = None if sc is None else [figures.ref_flag(k, o) for k, o in zip(sc.kept, sc.other_person)][:8]  # fmt: skip
        figures.save_side_by_side(
            folder / "side_by_side.png",
            ld.target,
            ld.mask,
            oc.encoder,
            images,
            refs,
            ref_flags=flags,
            mask_label="auto mask" if ld.auto_mask else "mask",
        )


def _n_refs(ld: Loaded, screened) -> int:
    if ld.refs is None:
        return 0
    return int(screened.kept.sum()) if screened is not None else len(ld.refs)


def _paste(img, case: Case, ld: Loaded) -> np.ndarray:
    if ld.aligned is not None:
        from occjax.faces.align import paste_back

        return paste_back(to_uint8(img), case.target, ld.aligned, ld.mask[0] > 0.5)
    return paste_square(img, case.target, ld.mask)
