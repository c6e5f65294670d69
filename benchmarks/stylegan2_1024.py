"""A 1024 px FFHQ-shaped StyleGAN2-ADA model (random weights, the real shapes of NVlabs' ffhq.pkl,
config "stylegan2": channel_base 32768, channel_max 512, 8 mapping layers, conv_clamp 256,
4 fp16 resolutions) built with NVlabs' own classes, pickled, converted, and inverted on this CPU.

    python benchmarks/stylegan2_1024.py /tmp/sg2ref/nv --out benchmarks/results/stylegan2_1024.json

Needs torch and a work tree of NVlabs/stylegan2-ada-pytorch (only to write the pickle; occjax reads
it with its restricted unpickler). Writes the conversion time, the bundle size and ms per step of
`baseline` and `disc` (1 problem, the first call, compile included, reported apart).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_pickle(nv_root: str, path: Path) -> None:
    import torch

    sys.path.insert(0, nv_root)
    from training.networks import Discriminator, Generator

    torch.manual_seed(0)
    syn = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256}
    G = Generator(512, 0, 512, 1024, 3, mapping_kwargs={"num_layers": 8}, synthesis_kwargs=syn)
    D = Discriminator(0, 1024, 3, **syn)
    with open(path, "wb") as f:
        pickle.dump({"G_ema": G.eval(), "D": D.eval()}, f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("nv_root")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/, converters/
    import occjax
    from scripts.convert import ConvertConfig, run

    rec = {}
    with tempfile.TemporaryDirectory() as tmp:
        pkl = Path(tmp) / "ffhq1024_random.pkl"
        build_pickle(args.nv_root, pkl)
        rec["pickle_mb"] = round(pkl.stat().st_size / 2**20, 1)
        t = time.perf_counter()
        run(ConvertConfig(out=Path(tmp) / "sg2", stylegan2=pkl))
        rec["convert_s"] = round(time.perf_counter() - t, 1)
        m = occjax.load_models(bundle=Path(tmp) / "sg2")
        rec["code_shape"] = list(m.code_shape)
        target = np.clip(np.asarray(m.generate(np.zeros((1, 512), np.float32))), -1, 1)
        mask = np.zeros((1, 1, 1024, 1024), np.float32)
        mask[..., 400:600, 400:600] = 1
        for a in ("baseline", "disc"):
            for steps in (1, 1 + args.steps):
                t = time.perf_counter()
                res = occjax.invert(m, target, mask, [None], config=m.preset(a, steps=steps))
                np.asarray(res.codes)
                rec[f"{a}_{steps}steps_s"] = round(time.perf_counter() - t, 2)
            extra = rec[f"{a}_{1 + args.steps}steps_s"] - rec[f"{a}_1steps_s"]
            rec[f"{a}_ms_per_step"] = round(1000 * extra / args.steps, 1)
            print(a, rec, flush=True)
    print(json.dumps(rec, indent=1))
    if args.out:
        args.out.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
