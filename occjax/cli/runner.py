"""Run `scripts/invert.py`: plan (plan.py) -> batched stages (this file) -> files and records
(write.py, records.py).

Every stage of a batch (reading, screening, mask estimation, the encoder, inversion, writing) turns
bad input and out-of-memory into a one-line error recorded as that batch's failed (case, approach)
pairs; the run goes on with the next batch and exits 1 with a summary.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from occjax import records
from occjax.cli.cases import Case, InputError
from occjax.cli.config import InvertCLI
from occjax.cli.inputs import Loaded, load_case
from occjax.cli.plan import Plan, UserError, mask_config, plan
from occjax.cli.report import print_table
from occjax.cli.write import FALLBACK_AS, CaseWriter, Outcome
from occjax.io import ImageError
from occjax.params import atomic_write_bytes
from occjax.personal import PersonalConfig

__all__ = ["UserError", "main", "run"]


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in ("occjax", "jax", "jaxlib", "numpy", "pillow", "tyro"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def is_out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()  # fmt: skip


def stage_error(stage: str, e: Exception) -> str | None:
    """One line for a stage's failure that is the input's or the machine's, else None (a bug:
    let it raise)."""
    if is_out_of_memory(e):
        return f"{stage}: out of memory; run again with a smaller --batch-size"
    if isinstance(e, ValueError | ImageError | OSError):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"{stage}: {first}"
    return None


def _pad(items: list, n: int) -> list:
    return items + [items[0]] * (n - len(items)) if items else items


class Runner:
    """Executes a plan batch by batch: each stage in order, each stage's failure recorded."""

    def __init__(self, p: Plan, batch_size: int):
        self.plan, self.bs = p, batch_size
        self.cfg, self.models, self.configs = p.cfg, p.models, p.configs
        self.res = self.models.resolution
        self.out = CaseWriter(p, records.ResultsWriter(p.out))
        self.n_opt = max(1, len([a for a in p.approaches if a != "enc"]))
        # the approaches of the frozen model's call (padded to n_frozen problems per case)
        frozen = [a for a in p.approaches if a != "enc" and not isinstance(p.configs[a], PersonalConfig)]  # fmt: skip
        self.n_frozen = max(1, len(frozen))
        self.timings: dict[str, float] = dict.fromkeys(
            (
                "load_s",
                "references_s",
                "mask_s",
                "encoder_s",
                "invert_s",
                "first_call_s",
                "write_s",
            ),
            0.0,
        )

    @property
    def errors(self) -> list[str]:
        return self.out.errors

    def _stage(self, stage: str, cases: list[Case], fn, *args):
        """(True, fn(*args)), or (False, None) with every pair of `cases` recorded as failed."""
        try:
            return True, fn(*args)
        except Exception as e:
            msg = stage_error(stage, e)
            if msg is None:
                raise
            for c in cases:
                for a in self.plan.todo[c.name]:
                    self.out.fail(c, a, msg)
            return False, None

    def run_batch(self, cases: list[Case]) -> None:
        import occjax.cache

        c0 = occjax.cache.compile_stats()
        try:
            self._run_batch(cases)
        finally:  # compiling (or loading compiled programs) inside the stages' times
            for k, v in occjax.cache.compile_stats().items():
                self.timings[k] = self.timings.get(k, 0) + v - c0[k]

    def _run_batch(self, cases: list[Case]) -> None:
        todo = self.plan.todo
        t0 = time.perf_counter()
        loaded: dict[str, Loaded] = {}
        for c in cases:
            good, ld = self._stage("reading", [c], load_case, c, self.res, self.cfg.align)
            if good:
                loaded[c.name] = ld
        ok = [c for c in cases if c.name in loaded]
        self.timings["load_s"] += time.perf_counter() - t0
        if not ok:
            return
        t = time.perf_counter()
        good, screened = self._stage("screening references", ok, self.screen, ok, loaded)
        self.timings["references_s"] += time.perf_counter() - t
        if not good:
            return
        t = time.perf_counter()
        good, estimates = self._stage("estimating masks", ok, self.estimate_masks, ok, loaded, screened)  # fmt: skip
        self.timings["mask_s"] += time.perf_counter() - t
        if not good:
            return
        t = time.perf_counter()
        x = np.stack([loaded[c.name].target for c in _pad(ok, self.bs)])
        m = np.stack([loaded[c.name].mask for c in _pad(ok, self.bs)])
        good, enc = self._stage("encoder", ok, self.encode, x, m)
        self.timings["encoder_s"] += time.perf_counter() - t
        if not good:
            return
        outcomes = {
            c.name: Outcome(
                enc.images[i],
                enc.init_codes[i],
                screened=screened.get(c.name),
                mask_estimate=estimates.get(c.name),
            )
            for i, c in enumerate(ok)
        }
        for i, c in enumerate(ok):
            if "enc" in todo[c.name]:
                losses = {k: v[i] for k, v in enc.final_losses.items()}
                outcomes[c.name].results["enc"] = (enc.images[i], enc.codes[i], losses, None)
        self.optimise(ok, loaded, enc, x, m, outcomes)
        per = (time.perf_counter() - t0) / max(1, sum(len(todo[c.name]) for c in ok))
        t = time.perf_counter()
        for c in ok:
            self._stage("writing", [c], self.out.write, c, loaded[c.name], todo[c.name], outcomes[c.name], per)  # fmt: skip
        self.timings["write_s"] += time.perf_counter() - t

    def encode(self, x: np.ndarray, m: np.ndarray):
        import occjax
        from occjax.config import preset

        # the starting codes (the encoder's, or w_avg for a model without one) and their images
        enc_cfg = self.configs.get("enc") or preset("enc", **self.models.defaults)
        return occjax.invert(self.models, x, m, None, enc_cfg)

    def optimise(self, ok, loaded, enc, x, m, outcomes: dict[str, Outcome]) -> None:
        """Every optimising (case, approach) of the batch: the frozen model's approaches in one
        call (padded to a fixed size so that batches share one compiled program), `personal` in
        another (it tunes a weight copy per problem: never padded, a padded problem would cost a
        whole tuning)."""
        todo, frozen, personal = self.plan.todo, [], []
        for c in ok:
            oc = outcomes[c.name]
            for a in todo[c.name]:
                if a == "enc":
                    continue
                cfg = self.configs[a]
                if cfg.uses_references and loaded[c.name].refs is None:
                    oc.failed[a] = loaded[c.name].refs_error
                    continue
                if cfg.uses_references and not oc.screened.kept.any():
                    why = "no usable references after screening (--min-ref-quality)"
                    how = "on the target alone" if a in FALLBACK_AS else "as baseline"
                    print(f"warning: {c.name} [{a}]: {why}; running it {how}", file=sys.stderr)
                    oc.fallback[a] = why
                (personal if isinstance(cfg, PersonalConfig) else frozen).append((c, a))
        idx = {c.name: i for i, c in enumerate(ok)}
        if frozen:
            self._invert_frozen(frozen, idx, enc, x, m, outcomes)
        if personal:
            self._invert_personal(personal, idx, loaded, x, m, outcomes)

    def _invert_frozen(self, problems, idx, enc, x, m, outcomes: dict[str, Outcome]) -> None:
        padded = _pad(problems, self.bs * self.n_frozen)

        def config(c, a):
            cfg = self.configs[a]
            if a in outcomes[c.name].fallback:  # the baseline's settings, recorded as a fallback
                return self.models.preset(
                    "baseline", steps=cfg.steps, compute_dtype=cfg.compute_dtype
                )
            return cfg

        cfgs = [config(c, a) for c, a in padded]
        refs = [
            outcomes[c.name].screened.kept_codes if cfg.uses_prior else None
            for (c, _), cfg in zip(padded, cfgs)
        ]
        init = np.stack([enc.init_codes[idx[c.name]] for c, _ in padded])
        self._invert(problems, padded, idx, x, m, refs, cfgs, outcomes, init_codes=init)

    def _invert_personal(self, problems, idx, loaded, x, m, outcomes: dict[str, Outcome]) -> None:
        """`personal` on the references the screening kept, as PHOTOS (their pixels are what the
        weights are tuned on); a case whose references were all dropped tunes on its target
        alone (personal's documented fallback, recorded). Its pivots are inverted with the
        reference cache the screening filled."""
        import warnings

        import occjax.cache

        refs = []
        for c, a in problems:
            oc = outcomes[c.name]
            refs.append(None if a in oc.fallback else loaded[c.name].refs[oc.screened.kept])
        cfgs = [self.configs[a] for _, a in problems]
        cache = None if self.cfg.no_cache else occjax.cache.reference_dir()
        with warnings.catch_warnings():  # said once per case above, as for the prior's fallback
            warnings.filterwarnings("ignore", message="invert: personal problem")
            self._invert(problems, problems, idx, x, m, refs, cfgs, outcomes, reference_cache=cache)

    def _invert(self, problems, padded, idx, x, m, refs, cfgs, outcomes, **kw) -> None:
        """One `occjax.invert` call over `padded` (problems first); each problem's image, code,
        final losses and loss trace into its outcome, or the call's one-line error."""
        import occjax

        t = time.perf_counter()
        try:
            res = occjax.invert(
                self.models,
                np.stack([x[idx[c.name]] for c, _ in padded]),
                np.stack([m[idx[c.name]] for c, _ in padded]),
                refs,
                cfgs,
                progress=self.cfg.progress,
                **kw,
            )
        except Exception as e:
            msg = stage_error("inversion", e)
            if msg is None:
                raise
            for c, a in problems:
                outcomes[c.name].failed[a] = msg
            return
        finally:
            self.timings["invert_s"] += time.perf_counter() - t
        self.timings["first_call_s"] += res.timings["first_call_s"]
        for k, (c, a) in enumerate(problems):
            trace = {t: v[:, k] for t, v in res.trace.losses.items()} if res.trace else None
            losses = {t: v[k] for t, v in res.final_losses.items()}
            outcomes[c.name].results[a] = (res.images[k], res.codes[k], losses, trace)

    def screen(self, ok: list[Case], loaded: dict[str, Loaded]) -> dict:
        """Every case's references inverted once (in chunks of the batch's size, cached) and
        judged."""
        import occjax.cache

        if not any(self.configs[a].uses_references for a in self.plan.approaches if a != "enc"):
            return {}
        with_refs = [c for c in ok if loaded[c.name].refs is not None]
        if not with_refs:
            return {}
        steps = max(self.configs[a].reference_steps for a in self.plan.approaches)
        out = occjax.screen_references(
            self.models,
            [loaded[c.name].refs for c in with_refs],
            self.cfg.min_ref_quality,
            steps=steps,
            cache=None if self.cfg.no_cache else occjax.cache.reference_dir(),
            progress=self.cfg.progress,
            chunk_size=self.bs * self.n_opt,
        )
        for c, sc in zip(with_refs, out):
            for path, why in zip(c.refs, sc.reasons):
                if why:
                    print(f"{c.name}: reference {Path(path).name}: {why}", file=sys.stderr)
        return {c.name: sc for c, sc in zip(with_refs, out)}

    def estimate_masks(self, ok: list[Case], loaded: dict[str, Loaded], screened: dict) -> dict:
        """--mask auto: the cases' masks from inversion itself (one batch). The restoration uses
        the estimate and its margin (MaskConfig.margin_*); both are saved (write.py)."""
        import occjax

        auto = [c for c in ok if loaded[c.name].mask is None]
        if not auto:
            return {}
        refs = [screened[c.name].kept_codes if c.name in screened else None for c in auto]
        est = occjax.estimate_mask(
            self.models,
            np.stack([loaded[c.name].target for c in auto]),
            refs,
            mask_config(self.cfg),
            progress=self.cfg.progress,
            return_details=True,
        )
        out = {}
        for c, mk, restore in zip(auto, est.masks, est.restore):
            loaded[c.name].mask = restore
            loaded[c.name].auto_mask = True
            out[c.name] = mk
        return out


def run(cfg: InvertCLI) -> int:
    from occjax.cli.plan import check_approach_names

    check_approach_names(cfg.approach)
    if cfg.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    out = Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    if cfg.merge:
        try:
            recs = records.merge(list(cfg.merge), out)
        except records.RecordsError as e:
            raise UserError(str(e)) from None
        print(f"merged {len(recs)} records into {out / records.RESULTS}")
        return 0
    if cfg.align:  # once, up front: a missing package is not a bad photo
        from occjax.deps import MissingDependency, require

        try:
            require("dlib", "faces", "--align", "face landmarks")
            require("face_recognition_models", "faces", "--align", "dlib's landmark model")
        except MissingDependency as e:
            raise UserError(str(e)) from None
    t0 = time.perf_counter()
    p = plan(cfg, out)
    t_setup = time.perf_counter() - t0
    pending = p.pending
    if len(pending) < len(p.cases):
        print(f"resuming in {out}: {len(p.cases) - len(pending)} of {len(p.cases)} cases already done")  # fmt: skip
    started = datetime.now().isoformat(timespec="seconds")
    write_run_json(p, started, {})
    bs = max(1, min(cfg.batch_size, len(pending)))  # a lone case is not padded to a full batch
    runner = Runner(p, bs)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="cases", unit="case", disable=not cfg.progress)
    for s in range(0, len(pending), cfg.batch_size):
        batch = pending[s : s + cfg.batch_size]
        runner.run_batch(batch)
        bar.update(len(batch))
    bar.close()
    timings = {k: round(v, 3) for k, v in runner.timings.items()}
    timings["setup_s"] = round(t_setup, 3)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    write_run_json(p, started, timings)
    print_table(runner.out.table)
    print(f"\noutputs in {out} (results.jsonl, run.json, cases/<case>/side_by_side.png)")
    if p.random_weights:
        print("(random weights: drop --demo-model random for the built-in face model)")
    if runner.errors:
        print(f"\n{len(runner.errors)} failed (case, approach) pair(s):", file=sys.stderr)
        for e in runner.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


def write_run_json(p: Plan, started: str, timings: dict) -> dict:
    """run.json: the settings every line was made with (records.py; the approaches of earlier runs
    into this folder kept), the model, versions, and each invocation's command and timings
    (`history`). Timings, in seconds: load_s reading and aligning photos; references_s inverting
    and screening references; mask_s estimating masks (--mask auto); encoder_s the encoder's
    codes; invert_s the optimising inversions (first_call_s of it: the first compiled call,
    compile included); write_s files and figures; setup_s loading the model and planning. Each
    stage's time includes compiling its programs: compile_s is the part of the stages spent in XLA
    compilation or loading programs from the persistent cache (programs_compiled,
    programs_from_cache count them; occjax.cache.compile_stats)."""
    from occjax.models import models_hash

    cfg, models, out = p.cfg, p.models, p.out
    old = {}
    if (out / records.RUN_JSON).is_file():
        try:
            old = json.loads((out / records.RUN_JSON).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
    history = [h for h in old.get("history", []) if h.get("started") != started]
    history.append({"command": sys.argv, "started": started, "timings": timings})
    info = {
        "settings": records.merged_settings(old.get("settings"), p.settings),
        "command": sys.argv,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "model": {"name": models.name, "family": models.family, "code_shape": models.code_shape},
        "models_hash": models_hash(models),
        "model_hashes": models.hashes(),
        "random_weights": p.random_weights,
        "resolution": models.resolution,
        "seed": cfg.seed,
        "cases": len(p.cases),
        "versions": _versions(),
        "timings": timings,
        "history": history,
        "min_ref_quality": {
            "option": cfg.min_ref_quality,
            "model_default": models.info.get("min_ref_quality"),
            "model_max_lpips": models.info.get("max_ref_lpips"),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / records.RUN_JSON, json.dumps(info, indent=2).encode())
    return info


def main(cfg: InvertCLI) -> int:
    try:
        return run(cfg)
    except (UserError, InputError, ImageError) as e:
        print(f"invert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the run folder itself cannot be written
        print(f"invert: error: cannot write the run's files: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("invert: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
