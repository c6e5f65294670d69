"""Per-case figures: the side-by-side PNG and the loss curves (matplotlib Agg), and the loss CSV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from occjax.io import png_bytes, to_uint8
from occjax.params import atomic_write_bytes

LABEL_H = 12


def _tile(a: np.ndarray, size: int) -> np.ndarray:
    im = Image.fromarray(a)
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return np.asarray(im.convert("RGB"))


def ref_flag(kept: bool, other_person: bool) -> str:
    """A reference's screening verdict for the side-by-side: "dropped", "other", or "ok"."""
    return "dropped" if not kept else ("other" if other_person else "ok")


def _mark(tile: np.ndarray, flag: str) -> np.ndarray:
    """A dropped reference crossed out in red; a possible other person framed in orange."""
    if flag == "ok":
        return tile
    im = Image.fromarray(tile)
    d = ImageDraw.Draw(im)
    n = tile.shape[0] - 1
    if flag == "dropped":
        d.line([(0, 0), (n, n)], fill=(220, 0, 0), width=max(2, n // 16))
        d.line([(0, n), (n, 0)], fill=(220, 0, 0), width=max(2, n // 16))
    else:
        d.rectangle([0, 0, n, n], outline=(255, 140, 0), width=max(2, n // 16))
    return np.asarray(im)


def _ref_block(refs: list[np.ndarray], size: int, flags: list[str] | None = None) -> np.ndarray:
    """Reference thumbnails (half size) in a 2-row grid, as wide as needed, marked by `flags`."""
    half = max(8, size // 2)
    cols = max(1, -(-len(refs) // 2))
    out = np.full((size, cols * half, 3), 255, np.uint8)
    for k, r in enumerate(refs):
        y, x = (k % 2) * half, (k // 2) * half
        out[y : y + half, x : x + half] = _mark(_tile(r, half), flags[k] if flags else "ok")
    return out


def side_by_side(
    occluded: np.ndarray,
    mask: np.ndarray,
    encoder: np.ndarray | None,
    results: dict[str, np.ndarray],
    refs: list[np.ndarray],
    size: int | None = None,
    ref_flags: list[str] | None = None,
    mask_label: str = "mask",
) -> np.ndarray:
    """One row per approach: occluded | mask | encoder | result | references (thumbnails; a
    dropped reference crossed out, a possible other person framed: `ref_flags`).

    Images are [3, H, W] in [-1, 1] (mask [1, H, W] in {0, 1}); returns [H', W', 3] uint8. Small
    models' images are shown at 192 px (Lanczos) so that faces can be seen."""
    size = size or max(192, occluded.shape[-1])
    gap = np.full((size + LABEL_H, 2, 3), 255, np.uint8)
    rows = []
    for name, res in results.items():
        cells = [("occluded", occluded), (mask_label, mask), ("encoder", encoder), (name, res)]
        parts = []
        for label, x in cells:
            tile = (
                np.full((size, size, 3), 255, np.uint8) if x is None else _tile(to_uint8(x), size)
            )
            parts.append(_labelled(tile, label))
            parts.append(gap)
        if refs:
            block = _ref_block([to_uint8(r) for r in refs], size, ref_flags)
            parts.append(_labelled(block, "references"))
        rows.append(np.concatenate(parts, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _labelled(tile: np.ndarray, label: str) -> np.ndarray:
    im = Image.new("RGB", (tile.shape[1], tile.shape[0] + LABEL_H), (255, 255, 255))
    im.paste(Image.fromarray(tile), (0, LABEL_H))
    ImageDraw.Draw(im).text((2, 0), label, fill=(0, 0, 0))
    return np.asarray(im)


def save_side_by_side(path: Path, *args, **kw) -> None:
    atomic_write_bytes(path, png_bytes(side_by_side(*args, **kw)))


def losses_csv(losses: dict[str, np.ndarray]) -> bytes:
    """{term: [steps]} -> CSV with a step column and one column per term."""
    terms = sorted(losses)
    n = len(next(iter(losses.values()))) if losses else 0
    lines = ["step," + ",".join(terms)]
    for s in range(n):
        lines.append(f"{s}," + ",".join(f"{float(losses[t][s]):.8g}" for t in terms))
    return ("\n".join(lines) + "\n").encode()


def read_losses_csv(path: Path) -> dict[str, np.ndarray] | None:
    """`losses_csv`'s file back as {term: [steps]}; None if it is missing or unreadable."""
    try:
        lines = Path(path).read_text().splitlines()
        terms = lines[0].split(",")[1:]
        rows = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:] if ln], float)
    except (OSError, IndexError, ValueError):
        return None
    rows = rows.reshape(-1, len(terms))
    return {t: rows[:, j] for j, t in enumerate(terms)}


def loss_curve_png(curves: dict[str, dict[str, np.ndarray]], title: str) -> bytes:
    """{approach: {term: [steps]}} -> PNG: each approach's total loss (and its terms, thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for approach, terms in curves.items():
        total = terms.get("total")
        if total is None:
            total = np.sum([v for v in terms.values()], axis=0)
        ax.plot(np.arange(len(total)), total, label=approach)
    ax.set_xlabel("step")
    ax.set_ylabel("total loss")
    ax.set_title(title, fontsize=9)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
