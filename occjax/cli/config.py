"""The `scripts/invert.py` options (a frozen dataclass; each field's docstring is its `--help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_MODEL = "faces64"


@dataclass(frozen=True)
class InvertCLI:
    """Remove occlusions from face photos by GAN inversion (occjax).

    With no input options, runs a self-contained demo on the built-in face model (faces64): a
    generated face with a hand pasted on, restored with every approach the model supports. Inputs:
    one case (--target --mask --refs/--refs-dir), a dataset folder (--dataset) or a manifest
    (--manifest). Outputs go to --out (results.jsonl, run.json, cases/<case>/...); re-running the
    same command resumes, skipping finished (case, approach) pairs; a folder made with other
    settings is refused (use another --out, or --overwrite)."""

    approach: tuple[str, ...] = ()
    """Approaches to run (any of enc, baseline, disc, prior, prior_disc, personal); default: every one the model supports (disc and prior_disc need a discriminator) except personal, which runs only when named: it tunes a copy of the generator's weights per case on its reference photos (slow: minutes per case on a CPU; the model's settings, bundle.json "personal"; --steps and --reference-steps apply)."""
    target: Path | None = None
    """One case: the occluded photo (square RGB/RGBA/grey image of any size; see --align)."""
    mask: str | None = None
    """One case: the occlusion mask (any image of the photo's size; pixel > 127 = occluded), or "auto" to estimate it from the photo (occjax.estimate_mask; saved as mask_auto.png)."""
    refs: tuple[Path, ...] = ()
    """One case: clean reference photos of the same person (needed by prior, prior_disc, personal)."""
    refs_dir: Path | None = None
    """One case: a folder of reference photos (every image in it), instead of --refs."""
    clean: Path | None = None
    """One case: optional un-occluded ground truth (recorded for evaluation)."""
    dataset: Path | None = None
    """Dataset folder in the paper's layout: <Person>/occluded_img/*.png, <Person>/occlusion_mask/ (same names), <Person>/reference_imgs/, optional <Person>/clean_img/ (same names); a top-level manifest.jsonl adds per-case metadata."""
    manifest: Path | None = None
    """CSV (header: target,mask,refs[,clean][,case]; refs separated by ';') or JSONL ({"target", "mask", "refs": [...], "clean"?, "case"?, "meta"?}); relative paths are relative to the manifest."""
    models: str | None = None
    """Model: a converted bundle folder (scripts/convert.py) or a built-in model's name (faces64, the default)."""
    demo_model: Literal["faces64", "random"] = "faces64"
    """The demo's model: the built-in face model, or small random idinvert-shaped networks (coloured noise; for testing the pipeline)."""
    generator: Path | None = None
    """idinvert generator .pth (or a bundle); overrides the bundle's."""
    encoder: Path | None = None
    """idinvert encoder .pth (or a bundle); overrides the bundle's."""
    perceptual: Path | None = None
    """VGG16 .pth (or a bundle); overrides the bundle's."""
    discriminator: Path | None = None
    """Discriminator .pth/.pt (or a bundle); overrides the bundle's."""
    steps: int | None = None
    """Adam steps per inversion (default: the model's recommended value, e.g. 100)."""
    reference_steps: int | None = None
    """Steps of the baseline inversion of each reference photo (default: --steps)."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """Networks' dtype inside each step: bfloat16 is about twice the matmul rate on GPUs (slower on CPU); codes, Adam and losses stay float32, images are made in float32."""
    batch_size: int = 4
    """Cases optimised together in one compiled batch (each with all its approaches); lower it if the device runs out of memory."""
    out: Path | None = None
    """Run folder (default runs/<timestamp>; re-use it to resume)."""
    seed: int = 4
    """Seed of the demo's inputs (and of its random model). 4: a well-lit face whose four other photos dlib calls the same person (seed 0 draws a dark photo)."""
    shard: str | None = None
    """I/N: process only part I (0 <= I < N) of N disjoint, deterministic parts of the cases."""
    merge: tuple[Path, ...] = ()
    """Run folders whose results.jsonl to combine into --out (nothing is inverted)."""
    paste_back: bool = False
    """Also composite the restored pixels into the original photo at its own size (feathered mask)."""
    blend: Literal["poisson", "alpha"] = "poisson"
    """How each restoration is put back into the photo inside the mask (<approach>_blended.png, and what --paste-back pastes): poisson keeps the restoration's detail and takes its colour at the mask's edge from the photo (occjax.blend); alpha cuts and pastes."""
    align: bool = False
    """FFHQ-align photos first (occjax.faces.align_face, needs dlib); masks are warped alike."""
    min_ref_quality: float | None = None
    """Drop reference photos whose inversion reconstructs them below this PSNR (dB); default: the model's recommended value (faces64: 12 dB, and its LPIPS cap 0.35). Verdicts go to results.jsonl, run.json and the side-by-side."""
    retry_failed: bool = False
    """On resume, run again the (case, approach) pairs recorded as failed."""
    overwrite: bool = False
    """Replace what an earlier run wrote into --out (results.jsonl, run.json, cases/, inputs/, reference_cache/) instead of resuming it. Without it, an --out made with other settings (steps, model, approaches' configs, ...) is refused and left untouched."""
    progress: bool = True
    """Show progress bars (cases, steps, ETA)."""
    no_cache: bool = False
    """Turn off occjax's caches in ~/.cache/occjax (OCCJAX_CACHE_DIR moves it, =off turns it off): compiled programs (JAX's persistent compilation cache) and the codes of inverted reference photos."""

    @property
    def inputs_given(self) -> bool:
        return any(
            x is not None for x in (self.target, self.dataset, self.manifest, self.refs_dir)
        ) or bool(self.refs or self.merge)

    @property
    def model_files_given(self) -> bool:
        return any(
            x is not None
            for x in (
                self.models,
                self.generator,
                self.encoder,
                self.perceptual,
                self.discriminator,
            )
        )
