"""Default mode: how far a problem solved inside a batch is from the same problem solved alone.

    python benchmarks/batch_determinism.py --json benchmarks/results/batch_determinism.json

B synthetic faces64 cases (`occjax.eval.synthetic`, medium hands, references of the same person,
inverted once and passed as codes to both runs so that only the batching differs) restored with
`prior` (the model's defaults, 100 steps) together in one batch and each alone. Reports the codes'
max difference and the image PSNR between the two restorations, per problem; and that the same
call twice is bit-identical.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_meta, write_json  # noqa: E402


@dataclass(frozen=True)
class Args:
    bundle: str = "faces64"
    problems: int = 4
    approach: str = "prior"
    json: Path | None = None


def main(args: Args) -> dict:

    import occjax
    from occjax.eval.metrics import from_nchw, psnr
    from occjax.eval.synthetic import SPLIT_SEED, SyntheticConfig, make_cases

    models = occjax.load_models(bundle=args.bundle)
    cfg = SyntheticConfig(people=args.problems, refs=3, sizes=("medium",), split="validation", identity=False)  # fmt: skip
    cases, refs, _ = make_cases(models, cfg, np.random.default_rng(SPLIT_SEED["validation"] + 99))
    targets = np.stack([c.target for c in cases])
    masks = np.stack([c.mask for c in cases])
    ref_codes, _ = occjax.invert_references(models, np.concatenate([refs[c.person] for c in cases]))  # fmt: skip
    ref_codes = list(ref_codes.reshape(len(cases), -1, *models.code_shape))
    together = occjax.invert(models, targets, masks, ref_codes, config=args.approach)
    again = occjax.invert(models, targets, masks, ref_codes, config=args.approach)
    alone = [
        occjax.invert(
            models, targets[i : i + 1], masks[i : i + 1], ref_codes[i : i + 1], config=args.approach
        )  # fmt: skip
        for i in range(len(cases))
    ]
    a_codes = np.concatenate([r.codes for r in alone])
    a_imgs = np.concatenate([r.images for r in alone])

    p = np.asarray(psnr(from_nchw(together.images), from_nchw(a_imgs)))
    out = {
        "env": env_meta(),
        "args": vars(args),
        "same_call_twice_bit_identical": bool(
            np.array_equal(together.codes, again.codes)
            and np.array_equal(together.images, again.images)
        ),  # fmt: skip
        "codes_max_abs_diff": [
            float(np.abs(together.codes[i] - a_codes[i]).max()) for i in range(len(cases))
        ],  # fmt: skip
        "image_psnr_together_vs_alone_db": [float(x) for x in p],
        "image_max_abs_diff": float(np.abs(together.images - a_imgs).max()),
    }
    print(out)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
