"""Run `scripts/invert.py`: cases -> batched inversions -> files, results.jsonl, run.json."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from occjax.cli import figures
from occjax.cli.cases import (
    Case,
    InputError,
    dataset_cases,
    manifest_cases,
    select_shard,
    single_case,
)
from occjax.cli.config import InvertCLI
from occjax.cli.inputs import Loaded, load_case
from occjax.cli.report import masked_error, paste_square, print_table
from occjax.cli.writer import ResultsWriter, finished, merge
from occjax.config import APPROACHES, InvertConfig
from occjax.io import ImageError, save_image, to_uint8
from occjax.params import atomic_write_bytes


class UserError(Exception):
    """A one-line error for the user (no traceback)."""


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in ("occjax", "jax", "jaxlib", "numpy", "pillow", "tyro"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def load_cli_models(cfg: InvertCLI, demo: bool):
    """(Models, random weights?) from --models / the .pth files, else the built-in face model
    (or, for the demo with --demo-model random, small random idinvert-shaped networks)."""
    if demo and cfg.demo_model == "random" and not cfg.model_files_given:
        from occjax.random_init import random_models

        return random_models("demo", cfg.seed), True
    from occjax.cli.config import DEFAULT_MODEL
    from occjax.models import load_models
    from occjax.params import BundleError

    for p in (cfg.generator, cfg.encoder, cfg.perceptual, cfg.discriminator):
        if p is not None and not Path(p).exists():
            raise UserError(f"{p}: no such model file or bundle folder")
    files = (cfg.generator, cfg.encoder, cfg.perceptual, cfg.discriminator)
    bundle = cfg.models if cfg.models is not None or any(files) else DEFAULT_MODEL
    try:
        models = load_models(*files, bundle=bundle)
    except (BundleError, ValueError, KeyError, OSError) as e:
        raise UserError(f"cannot load the models: {e}") from None
    missing = sorted(r for r in ("generator", "encoder", "perceptual") if not models.has(r))
    if missing:
        raise UserError(
            f"the models lack {', '.join(missing)}: pass --{missing[0]} or a full bundle"
        )
    return models, False


def check_approach_names(names: tuple[str, ...]) -> None:
    bad = [a for a in names if a not in APPROACHES]
    if bad:
        raise UserError(f"unknown approach {', '.join(bad)!r}; choose from {' '.join(APPROACHES)}")


def select_approaches(names: tuple[str, ...], models) -> tuple[str, ...]:
    """The approaches to run: those asked for (each must be known and supported by the model), or
    by default every approach the model supports (saying which it skips and why)."""
    check_approach_names(names)
    if names:
        for a in names:
            if msg := models.unsupported(a):
                raise UserError(msg)
        return tuple(dict.fromkeys(names))
    skipped = [a for a in APPROACHES if models.unsupported(a)]
    if skipped:  # today only the discriminator can be missing
        print(
            f"skipping {', '.join(skipped)}: they need a discriminator, which the model "
            f"{models.name} ({models.family}) does not have"
        )
    return tuple(a for a in APPROACHES if a not in skipped)


def invert_configs(
    cfg: InvertCLI, approaches, models, demo: bool = False
) -> dict[str, InvertConfig]:
    """Each approach's preset with the model's recommended values, then the command's options
    (the demo inverts its references with fewer steps unless told otherwise)."""
    from occjax.cli.demo import DEMO_REFERENCE_STEPS

    out = {}
    for a in approaches:
        over: dict = {"compute_dtype": cfg.compute_dtype}
        if cfg.steps is not None and a != "enc":
            over["steps"] = cfg.steps
        rs = cfg.reference_steps if cfg.reference_steps is not None else cfg.steps
        if rs is None and demo:
            rs = DEMO_REFERENCE_STEPS
        if rs is not None:
            over["reference_steps"] = rs
        out[a] = models.preset(a, **over)
    return out


def gather_cases(cfg: InvertCLI, models, out: Path) -> list[Case]:
    if cfg.dataset is not None:
        cases = dataset_cases(cfg.dataset)
    elif cfg.manifest is not None:
        cases = manifest_cases(cfg.manifest)
    elif cfg.target is not None:
        cases = [single_case(cfg.target, cfg.mask, cfg.refs, cfg.refs_dir, cfg.clean)]
    elif cfg.inputs_given:
        raise InputError("--refs/--refs-dir need --target PHOTO --mask MASK")
    else:
        from occjax.cli.demo import make_demo_case

        cases = [make_demo_case(models, cfg.seed, out / "inputs")]
    return select_shard(cases, cfg.shard)


def _call(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except Exception as e:
        if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
            raise UserError("out of device memory; run again with a smaller --batch-size") from None
        raise


def _pad(items: list, n: int) -> list:
    return items + [items[0]] * (n - len(items)) if items else items


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def base_record(case: Case, approach: str, res: int) -> dict:
    return {
        "case": case.name,
        "approach": approach,
        "status": "failed",
        "error": None,
        "target": str(case.target),
        "mask": str(case.mask) if case.mask else None,
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


class Runner:
    def __init__(self, cfg: InvertCLI, models, out: Path, approaches, configs, batch_size: int):
        self.cfg, self.models, self.out, self.bs = cfg, models, out, batch_size
        self.approaches, self.configs = approaches, configs
        self.res = models.resolution
        self.writer = ResultsWriter(out)
        self.errors: list[str] = []
        self.table: dict[str, list[tuple[float, float]]] = {}
        self.timings: dict[str, float] = {"load_s": 0.0, "encoder_s": 0.0, "invert_s": 0.0}
        self.timings |= {"references_s": 0.0, "first_call_s": 0.0, "write_s": 0.0, "mask_s": 0.0}

    def fail(self, case: Case, approach: str, error: str, **extra) -> None:
        rec = base_record(case, approach, self.res) | extra
        rec["error"] = error
        self.writer.append(rec)
        self.errors.append(f"{case.name} [{approach}]: {error}")

    def run_batch(self, cases: list[Case], todo: dict[str, list[str]]) -> None:
        loaded: dict[str, Loaded] = {}
        t_load = time.perf_counter()
        for c in cases:
            try:
                loaded[c.name] = load_case(c, self.res, self.cfg.align)
            except ImageError as e:
                for a in todo[c.name]:
                    self.fail(c, a, str(e))
        ok = [c for c in cases if c.name in loaded]
        if not ok:
            return
        import occjax

        t0 = time.perf_counter()
        self.timings["load_s"] += t0 - t_load
        screened = self.screen(ok, loaded)
        self.estimate_masks(ok, loaded, screened)
        bs = self.bs
        x = np.stack([loaded[c.name].target for c in _pad(ok, bs)])
        m = np.stack([loaded[c.name].mask for c in _pad(ok, bs)])
        enc_cfg = self.configs.get("enc") or self.models.preset("enc")
        enc = _call(occjax.invert, self.models, x, m, None, enc_cfg)
        self.timings["encoder_s"] += time.perf_counter() - t0
        problems, failed, fallback = [], {}, {}
        for c in ok:
            for a in todo[c.name]:
                if a == "enc":
                    continue
                cfg = self.configs[a]
                if cfg.uses_prior and loaded[c.name].refs is None:
                    failed[(c.name, a)] = loaded[c.name].refs_error
                elif cfg.uses_prior and not screened[c.name].kept.any():
                    why = "no usable references after screening (--min-ref-quality)"
                    print(
                        f"warning: {c.name} [{a}]: {why}; running it as baseline", file=sys.stderr
                    )
                    fallback[(c.name, a)] = why
                    problems.append((c, a))
                else:
                    problems.append((c, a))
        res = None
        if problems:
            n_opt = len([a for a in self.approaches if a != "enc"])
            padded = _pad(problems, bs * n_opt)
            idx = {c.name: i for i, c in enumerate(ok)}

            def config(c, a):
                cfg = self.configs[a]
                if (c.name, a) in fallback:  # the baseline's settings, recorded as a fallback
                    return self.models.preset(
                        "baseline", steps=cfg.steps, compute_dtype=cfg.compute_dtype
                    )
                return cfg

            cfgs = [config(c, a) for c, a in padded]
            refs = [
                screened[c.name].kept_codes if cfg.uses_prior else None
                for (c, _), cfg in zip(padded, cfgs)
            ]
            res = _call(
                occjax.invert,
                self.models,
                np.stack([x[idx[c.name]] for c, _ in padded]),
                np.stack([m[idx[c.name]] for c, _ in padded]),
                refs,
                cfgs,
                init_codes=np.stack([enc.init_codes[idx[c.name]] for c, _ in padded]),
                progress=self.cfg.progress,
            )
            self.timings["invert_s"] += res.timings["total_s"]
            self.timings["first_call_s"] += res.timings["first_call_s"]
        per = (time.perf_counter() - t0) / max(1, len(problems) + len(ok))
        t_write = time.perf_counter()
        for i, c in enumerate(ok):
            mine = {a: j for j, (cc, a) in enumerate(problems) if cc.name == c.name}
            extra = {"screened": screened.get(c.name), "fallback": fallback}
            self.write_case(c, loaded[c.name], todo[c.name], enc, i, res, mine, failed, per, extra)
        self.timings["write_s"] += time.perf_counter() - t_write

    def screen(self, ok: list[Case], loaded: dict[str, Loaded]) -> dict:
        """Every case's references inverted once (one batch, cached) and judged."""
        import occjax

        if not any(self.configs[a].uses_prior for a in self.approaches if a != "enc"):
            return {}
        with_refs = [c for c in ok if loaded[c.name].refs is not None]
        if not with_refs:
            return {}
        t0 = time.perf_counter()
        steps = max(self.configs[a].reference_steps for a in self.approaches)
        out = occjax.screen_references(
            self.models,
            [loaded[c.name].refs for c in with_refs],
            self.cfg.min_ref_quality,
            steps=steps,
            cache=self.out / "reference_cache",
            progress=self.cfg.progress,
        )
        self.timings["references_s"] += time.perf_counter() - t0
        for c, sc in zip(with_refs, out):
            for path, why in zip(c.refs, sc.reasons):
                if why:
                    print(f"{c.name}: reference {Path(path).name}: {why}", file=sys.stderr)
        return {c.name: sc for c, sc in zip(with_refs, out)}

    def estimate_masks(self, ok: list[Case], loaded: dict[str, Loaded], screened: dict) -> None:
        """--mask auto: the cases' masks from inversion itself (one batch), saved as PNGs."""
        import occjax

        auto = [c for c in ok if loaded[c.name].mask is None]
        if not auto:
            return
        t0 = time.perf_counter()
        refs = [screened[c.name].kept_codes if c.name in screened else None for c in auto]
        est = occjax.estimate_mask(
            self.models,
            np.stack([loaded[c.name].target for c in auto]),
            refs,
            progress=self.cfg.progress,
            return_details=True,
        )
        # the estimate is saved; the restoration leaves out a margin around it (MaskConfig.margin_*)
        for c, mk, restore in zip(auto, est.masks, est.restore):
            loaded[c.name].mask = restore
            loaded[c.name].auto_mask = True
            save_image(self.out / "cases" / c.name / "mask_auto.png", mk)
        self.timings["mask_s"] = self.timings.get("mask_s", 0.0) + time.perf_counter() - t0

    def write_case(self, case, ld: Loaded, todo, enc, i, res, mine, failed, per, extra) -> None:
        from occjax.occlusion.measure import occluded_percentage

        folder = self.out / "cases" / case.name
        rel = folder.relative_to(self.out)
        pct = {k: occluded_percentage(ld.mask[0] > 0.5, k) for k in ("box", "image")}
        save_image(folder / "encoder.png", enc.images[i])
        images = {"enc": enc.images[i]} if "enc" in todo else {}
        curves, records = {}, []
        for a in todo:
            if (case.name, a) in failed:
                self.fail(case, a, failed[(case.name, a)], occluded_pct=pct)
                continue
            if a == "enc":
                img, code, losses = enc.images[i], enc.codes[i], enc.final_losses
                k, trace = i, None
            else:
                k = mine[a]
                img, code, losses = res.images[k], res.codes[k], res.final_losses
                trace = {t: v[:, k] for t, v in res.trace.losses.items()} if res.trace else None
            images[a] = img
            save_image(folder / f"{a}.png", img)
            atomic_write_bytes(
                folder / f"{a}_codes.npz", _npz(code=code, init_code=enc.init_codes[i])
            )
            if trace:
                atomic_write_bytes(folder / f"{a}_losses.csv", figures.losses_csv(trace))
                curves[a] = trace
            rec = base_record(case, a, self.res) | {
                "status": "ok",
                "mask_source": "auto" if ld.auto_mask else "file",
                "restored": str(rel / f"{a}.png"),
                "encoder": str(rel / "encoder.png"),
                "occluded_pct": pct,
                "n_refs": self._n_refs(ld, extra["screened"]),
                "losses": {t: float(v[k]) for t, v in losses.items()},
                "time_s": round(per, 4),
            }
            if extra["screened"] is not None:
                rec["screening"] = extra["screened"].record()
            if (case.name, a) in extra["fallback"]:
                rec["fallback"] = f"baseline: {extra['fallback'][(case.name, a)]}"
            if ld.auto_mask:
                rec["mask"] = str(rel / "mask_auto.png")
            if self.cfg.paste_back:
                rec["pasted"] = str(rel / f"{a}_pasted.png")
                save_image(self.out / rec["pasted"], self._paste(img, case, ld))
            records.append(rec)
            if ld.clean is not None:
                self.table.setdefault(a, []).append(masked_error(img, ld.clean, ld.mask))
        if curves:
            png = figures.loss_curve_png(curves, case.name)
            atomic_write_bytes(folder / "losses.png", png)
        if images:
            refs = [] if ld.refs is None else list(ld.refs[:8])
            sc = extra["screened"]
            flags = None if sc is None else [figures.ref_flag(k, o) for k, o in zip(sc.kept, sc.other_person)][:8]  # fmt: skip
            figures.save_side_by_side(
                folder / "side_by_side.png",
                ld.target,
                ld.mask,
                enc.images[i],
                images,
                refs,
                ref_flags=flags,
                mask_label="auto mask" if ld.auto_mask else "mask",
            )
        for rec in records:
            rec["side_by_side"] = str(rel / "side_by_side.png")
            self.writer.append(rec)

    @staticmethod
    def _n_refs(ld: Loaded, screened) -> int:
        if ld.refs is None:
            return 0
        return int(screened.kept.sum()) if screened is not None else len(ld.refs)

    def _paste(self, img, case: Case, ld: Loaded) -> np.ndarray:
        if ld.aligned is not None:
            from occjax.faces.align import paste_back

            return paste_back(to_uint8(img), case.target, ld.aligned, ld.mask[0] > 0.5)
        return paste_square(img, case.target, ld.mask)


def run(cfg: InvertCLI) -> int:
    check_approach_names(cfg.approach)
    if cfg.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    out = Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    if cfg.merge:
        try:
            recs = merge(list(cfg.merge), out)
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        print(f"merged {len(recs)} records into {out / 'results.jsonl'}")
        return 0
    if cfg.align:  # once, up front: a missing package is not a bad photo
        from occjax.deps import MissingDependency, require

        try:
            require("dlib", "faces", "--align", "face landmarks")
            require("face_recognition_models", "faces", "--align", "dlib's landmark model")
        except MissingDependency as e:
            raise UserError(str(e)) from None
    t0 = time.perf_counter()
    t_setup = t0
    demo = not cfg.inputs_given
    models, random_weights = load_cli_models(cfg, demo)
    if random_weights:
        from occjax.cli.demo import RANDOM_WEIGHTS_NOTE

        print(RANDOM_WEIGHTS_NOTE)
    approaches = select_approaches(cfg.approach, models)
    configs = invert_configs(cfg, approaches, models, demo=demo)
    try:
        cases = gather_cases(cfg, models, out)
    except InputError as e:
        raise UserError(str(e)) from None
    t_setup = time.perf_counter() - t_setup
    done = finished(out / "results.jsonl", cfg.retry_failed)
    todo = {c.name: [a for a in approaches if (c.name, a) not in done] for c in cases}
    pending = [c for c in cases if todo[c.name]]
    if len(pending) < len(cases):
        print(f"resuming in {out}: {len(cases) - len(pending)} of {len(cases)} cases already done")
    write_run_json(cfg, out, models, configs, random_weights, len(cases), {})
    bs = max(1, min(cfg.batch_size, len(pending)))  # a lone case is not padded to a full batch
    runner = Runner(cfg, models, out, approaches, configs, bs)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="cases", unit="case", disable=not cfg.progress)
    for s in range(0, len(pending), cfg.batch_size):
        batch = pending[s : s + cfg.batch_size]
        runner.run_batch(batch, {c.name: todo[c.name] for c in batch})
        bar.update(len(batch))
    bar.close()
    timings = {k: round(v, 3) for k, v in runner.timings.items()}
    timings["setup_s"] = round(t_setup, 3)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    write_run_json(cfg, out, models, configs, random_weights, len(cases), timings)
    print_table(runner.table)
    print(f"\noutputs in {out} (results.jsonl, run.json, cases/<case>/side_by_side.png)")
    if random_weights:
        print("(random weights: drop --demo-model random for the built-in face model)")
    if runner.errors:
        print(f"\n{len(runner.errors)} failed (case, approach) pair(s):", file=sys.stderr)
        for e in runner.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


def write_run_json(cfg, out: Path, models, configs, random_weights, n_cases, timings) -> dict:
    from occjax.models import models_hash

    info = {
        "command": sys.argv,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "approaches": {a: dataclasses.asdict(c) for a, c in configs.items()},
        "model": {"name": models.name, "family": models.family, "code_shape": models.code_shape},
        "models_hash": models_hash(models),
        "model_hashes": models.hashes(),
        "random_weights": random_weights,
        "resolution": models.resolution,
        "seed": cfg.seed,
        "cases": n_cases,
        "versions": _versions(),
        "timings": timings,
        "min_ref_quality": {
            "option": cfg.min_ref_quality,
            "model_default": models.info.get("min_ref_quality"),
            "model_max_lpips": models.info.get("max_ref_lpips"),
        },
    }
    atomic_write_bytes(out / "run.json", json.dumps(info, indent=2).encode())
    return info


def main(cfg: InvertCLI) -> int:
    try:
        return run(cfg)
    except (UserError, InputError, ImageError) as e:
        print(f"invert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("invert: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
