"""Cases (one occluded photo, its mask, references, optional ground truth) from the CLI's inputs.

Sources: one case (--target --mask --refs / --refs-dir), a dataset folder in the paper's layout
(--dataset) or a manifest (--manifest, CSV or JSONL). `shard` keeps one of N disjoint parts.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# manifest.jsonl keys that are paths (not metadata)
_PATH_KEYS = ("target", "mask", "clean", "refs")
AUTO = "auto"  # a mask to estimate (occjax.estimate_mask) instead of a file


class InputError(ValueError):
    """Inputs that cannot be read as cases (one-line message saying how to fix it)."""


@dataclass(frozen=True)
class Case:
    name: str
    target: Path
    mask: Path | str | None  # a file, AUTO, or None (no mask given)
    refs: tuple[Path, ...] = ()
    clean: Path | None = None
    meta: dict = field(default_factory=dict, compare=False)


def safe_name(raw: str) -> str:
    """A case name that stays inside cases/: the path's parts with no root, drive, "." or "..",
    each part limited to letters, digits, "-", "_" and "." (others become "_")."""
    parts = []
    for part in re.split(r"[/\\]+", str(raw)):
        part = re.sub(r"[^A-Za-z0-9._-]", "_", part.strip()).strip(".")
        if part and part not in (".", ".."):
            parts.append(part)
    return "/".join(parts) or "case"


def unique_names(names: list[str]) -> list[str]:
    """Safe, distinct names (case-insensitively, for case-insensitive file systems): a repeated
    name gets _2, _3, ..."""
    out, seen = [], set()
    for n in map(safe_name, names):
        name, k = n, 1
        while name.casefold() in seen:
            k += 1
            name = f"{n}_{k}"
        seen.add(name.casefold())
        out.append(name)
    return out


def _derived_name(target: str, base: Path) -> str:
    """A case name from a manifest's target path: relative to the manifest's folder when the photo
    is inside it, else its folder and file name (an absolute path never becomes a folder)."""
    p = Path(target).expanduser()
    full = (p if p.is_absolute() else base / p).resolve()
    try:
        return full.relative_to(base).with_suffix("").as_posix()
    except ValueError:
        return PurePath(*full.parts[-2:]).with_suffix("").as_posix()


def images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _abs(p: Path | str | None, base: Path | None = None) -> Path | None:
    if p is None or p == "":
        return None
    p = Path(p).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p.resolve()


def single_case(
    target: Path, mask: Path | None, refs=(), refs_dir: Path | None = None, clean=None
) -> Case:
    if not Path(target).is_file():
        raise InputError(f"--target {target}: no such file")
    if refs_dir is not None and not Path(refs_dir).is_dir():
        raise InputError(f"--refs-dir {refs_dir}: no such folder")
    all_refs = [_abs(r) for r in refs] + (images_in(Path(refs_dir)) if refs_dir else [])
    mask = AUTO if str(mask) == AUTO else _abs(mask)
    return Case(safe_name(Path(target).stem), _abs(target), mask, tuple(all_refs), _abs(clean))


def _dataset_meta(root: Path) -> dict[str, dict]:
    """Per-case metadata of a top-level manifest.jsonl, keyed by the target's relative path."""
    path = root / "manifest.jsonl"
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "target" in rec:
            out[Path(rec["target"]).as_posix()] = {
                k: v for k, v in rec.items() if k not in _PATH_KEYS
            }
    return out


def dataset_cases(root: Path) -> list[Case]:
    """<Person>/occluded_img/*.png with the same-named occlusion_mask/ (and clean_img/) files."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--dataset {root}: no such folder")
    meta = _dataset_meta(root)
    cases = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        refs = tuple(p.resolve() for p in images_in(person / "reference_imgs"))
        for photo in images_in(person / "occluded_img"):
            mask = person / "occlusion_mask" / photo.name
            clean = person / "clean_img" / photo.name
            rel = photo.relative_to(root).as_posix()
            cases.append(
                Case(
                    safe_name(f"{person.name}/{photo.stem}"),
                    photo.resolve(),
                    mask.resolve(),  # a missing mask fails that case, not the run
                    refs,
                    clean.resolve() if clean.is_file() else None,
                    meta.get(rel, {}),
                )
            )
    if not cases:
        raise InputError(
            f"--dataset {root}: no <Person>/occluded_img/*.png found (expected the paper's layout)"
        )
    names = unique_names([c.name for c in cases])
    return [dataclasses.replace(c, name=n) for c, n in zip(cases, names)]


def _split_refs(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [s for s in str(v).replace(",", ";").split(";") if s.strip()]


def _manifest_rows(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"--manifest {path}: line {i} is not JSON") from None
        return rows
    return list(csv.DictReader(text.splitlines()))


def manifest_cases(path: Path) -> list[Case]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--manifest {path}: no such file")
    base = path.parent.resolve()
    rows = _manifest_rows(path)
    raw = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("target"):
            raise InputError(f"--manifest {path}: entry {i} has no 'target' column/key")
        raw.append(str(row.get("case") or _derived_name(str(row["target"]), base)))
    cases = []
    for row, name in zip(rows, unique_names(raw)):
        target = _abs(row["target"], base)
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        cases.append(
            Case(
                name,
                target,
                AUTO if row.get("mask") == AUTO else _abs(row.get("mask"), base),
                tuple(_abs(r.strip(), base) for r in _split_refs(row.get("refs"))),
                _abs(row.get("clean"), base),
                meta,
            )
        )
    if not cases:
        raise InputError(f"--manifest {path}: no entries")
    return cases


def parse_shard(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"--shard {spec!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {spec!r}: need N >= 1 and 0 <= I < N")
    return i, n


def shard_of(name: str, n: int) -> int:
    """Deterministic part (0..n-1) of a case name; independent of the other cases."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % n


def select_shard(cases: list[Case], spec: str | None) -> list[Case]:
    if spec is None:
        return cases
    i, n = parse_shard(spec)
    return [c for c in cases if shard_of(c.name, n) == i]
