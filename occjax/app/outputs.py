"""What the page shows and offers for download: before/after, the mask used, the loss curve, the
references' verdicts, and the files of a run (restored PNG, pasted-back PNG, codes .npz)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from occjax.app.actions import Restoration
from occjax.app.editor import display_size, enlarge, mask_layer
from occjax.app.session import References
from occjax.io import save_image, to_uint8


def before_after(r: Restoration) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) uint8 images of one size: the whole photo when it was aligned (restored
    face pasted back), else the model's input and output enlarged like the editor."""
    if r.pasted is not None:
        return r.photo.original, r.pasted
    side = display_size(r.restored.shape[0])
    return enlarge(to_uint8(r.photo.image), side), enlarge(r.restored, side)


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The model input [3, S, S] with the mask [1, S, S] in translucent red, enlarged."""
    side = display_size(image.shape[-1])
    base = Image.fromarray(enlarge(to_uint8(image), side)).convert("RGBA")
    over = Image.alpha_composite(base, Image.fromarray(mask_layer(mask, side)))
    return np.asarray(over.convert("RGB"))


def loss_curve(r: Restoration) -> np.ndarray | None:
    """The run's loss curve as an image (None for the encoder's code: no steps)."""
    from occjax.cli.figures import loss_curve_png

    trace = r.result.trace
    if trace is None or not trace.losses:
        return None
    terms = {k: np.asarray(v)[:, 0] for k, v in trace.losses.items()}
    title = f"{r.config.approach}, {r.config.steps} steps"
    return np.asarray(Image.open(io.BytesIO(loss_curve_png({r.config.approach: terms}, title))))


def write_downloads(folder: Path, r: Restoration) -> list[Path]:
    """restored.png (model size), pasted_back.png (aligned photos), mask.png, codes.npz."""
    stem = Path(r.photo.name).stem or "photo"
    files = [folder / f"{stem}_restored.png"]
    save_image(files[0], r.restored)
    if r.pasted is not None:
        files.append(folder / f"{stem}_pasted_back.png")
        save_image(files[-1], r.pasted)
    files.append(folder / f"{stem}_mask.png")
    save_image(files[-1], r.mask)
    files.append(folder / f"{stem}_codes.npz")
    res = r.result
    refs = r.reference_codes
    np.savez(
        files[-1],
        codes=res.codes,
        init_codes=res.init_codes,
        reference_codes=np.zeros((0, *res.codes.shape[1:]), np.float32) if refs is None else refs,
        mask=r.mask,
        config=np.asarray(json.dumps(asdict(r.config), sort_keys=True)),
    )
    return files


def run_summary(r: Restoration) -> str:
    """One line: what ran and how it went."""
    res = r.result
    cfg = r.config
    parts = [f"**{cfg.approach}**", f"{cfg.steps} steps", f"{r.seconds:.1f} s"]
    if getattr(cfg, "prior", False):
        w = "adaptive" if cfg.prior_weight is None else f"{cfg.prior_weight:g}"
        parts.append(f"{int(res.n_refs[0])} reference(s), prior weight {w}")
    elif cfg.approach == "personal":
        parts.append(f"generator tuned on {int(res.n_refs[0])} reference(s)")
    parts.append(f"{float(res.occluded_pct[0]):.1f} % occluded")
    line = "Restored: " + ", ".join(parts) + "."
    if bool(res.flagged[0]):
        line += (
            " Warning: the loss turned non-finite; the code was frozen at its last finite value."
        )
    return line


def verdict_table(refs: References | None) -> str:
    """Markdown: per reference, kept or dropped, PSNR of its inversion, identity, the reason."""
    if refs is None:
        return ""
    lines = []
    s = refs.screening
    if s is not None and len(s.kept):
        lines += [
            "| # | reference | verdict | PSNR | LPIPS | identity | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, (photo, rec) in enumerate(zip(refs.photos, s.record()), 1):
            verdict = "kept" if rec["kept"] else "**dropped**"
            ident = "n/a" if rec["identity"] is None else f"{rec['identity']:.2f}"
            name = photo.name.replace("|", "/")
            lines.append(
                f"| {i} | {name} | {verdict} | {rec['psnr']:.1f} dB | {rec['lpips']:.3f} | "
                f"{ident} | {rec['reason'] or '-'} |"
            )
        kept = int(np.sum(s.kept))
        lines.append(f"\n{kept} of {len(s.kept)} reference(s) kept for the prior.")
    lines += [f"- {line}" for line in refs.skipped]
    if not refs.photos:
        lines.append("No usable reference photo.")
    return "\n".join(lines)


def gallery(refs: References | None) -> list[tuple[np.ndarray, str]]:
    """(image, caption) per screened reference for the page's gallery."""
    if refs is None or refs.screening is None:
        return []
    s = refs.screening
    return [
        (to_uint8(p.image), f"{i} {'kept' if k else 'dropped'}")
        for i, (p, k) in enumerate(zip(refs.photos, s.kept), 1)
    ]
