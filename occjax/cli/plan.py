"""Plan a `scripts/invert.py` run before anything is written: the models, the approaches and their
configs, the settings that every results line is hashed with, the cases and what is left to do."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from occjax import records
from occjax.cli.cases import (
    Case,
    InputError,
    dataset_cases,
    manifest_cases,
    select_shard,
    single_case,
)
from occjax.cli.config import DEFAULT_MODEL, InvertCLI
from occjax.config import APPROACHES, OPT_IN_APPROACHES, InvertConfig
from occjax.personal import PersonalConfig, personal_config

# an approach's settings: an InvertConfig (the presets) or, for `personal`, a PersonalConfig
Config = InvertConfig | PersonalConfig


class UserError(Exception):
    """A one-line error for the user (no traceback)."""


def load_cli_models(cfg: InvertCLI, demo: bool):
    """(Models, random weights?) from --models / the .pth files, else the built-in face model
    (or, for the demo with --demo-model random, small random idinvert-shaped networks)."""
    if demo and cfg.demo_model == "random" and not cfg.model_files_given:
        from occjax.random_init import random_models

        return random_models("demo", cfg.seed), True
    from occjax.models import load_models
    from occjax.params import BundleError

    files = (cfg.generator, cfg.encoder, cfg.perceptual, cfg.discriminator)
    for p in files:
        if p is not None and not Path(p).exists():
            raise UserError(f"{p}: no such model file or bundle folder")
    bundle = cfg.models if cfg.models is not None or any(files) else DEFAULT_MODEL
    try:
        models = load_models(*files, bundle=bundle)
    except (BundleError, ValueError, KeyError, OSError) as e:
        raise UserError(f"cannot load the models: {e}") from None
    if not models.has("generator"):
        raise UserError("the models lack a generator: pass --generator or a full bundle")
    if not models.has("encoder") and not hasattr(models.net("generator").module, "mean_code"):
        raise UserError("the models lack an encoder: pass --encoder or a full bundle")
    return models, False


def check_networks(models, configs: dict[str, Config]) -> None:
    """Every network the approaches' configs use is there (a StyleGAN2 bundle may have no encoder
    and no perceptual network: its presets then do without them). `personal` (which needs the
    perceptual network: `select_approaches`) inverts its pivots with the model's `baseline`."""
    for a, c in configs.items():
        if isinstance(c, PersonalConfig):
            c = models.preset("baseline", steps=max(c.init_steps, c.reference_steps))
        if c.perceptual_weight and not models.has("perceptual"):
            raise UserError(
                f"approach {a!r} uses a perceptual term and the model {models.name} has no "
                "perceptual network: pass --perceptual (a VGG16 .pth or a bundle)"
            )
        if c.encoder_reg_weight and c.steps and not models.has("encoder"):
            raise UserError(
                f"approach {a!r} uses the encoder regulariser and the model {models.name} has "
                "no encoder: pass --encoder"
            )


def check_approach_names(names: tuple[str, ...]) -> None:
    known = APPROACHES + OPT_IN_APPROACHES
    bad = [a for a in names if a not in known]
    if bad:
        raise UserError(f"unknown approach {', '.join(bad)!r}; choose from {' '.join(known)}")


def select_approaches(names: tuple[str, ...], models) -> tuple[str, ...]:
    """The approaches to run: those asked for (each must be known and supported by the model), or
    by default every approach the model supports (saying which it skips and why), opt-in ones
    (`personal`) left out."""
    check_approach_names(names)
    if names:
        for a in names:
            if msg := models.unsupported(a):
                raise UserError(msg)
        return tuple(dict.fromkeys(names))
    supported = models.supported_approaches()
    skipped = [a for a in APPROACHES if a not in supported]
    if any(a in ("disc", "prior_disc") for a in skipped):
        names = ", ".join(a for a in skipped if a in ("disc", "prior_disc"))
        print(
            f"skipping {names}: they need a discriminator, which the model "
            f"{models.name} ({models.family}) does not have"
        )
    if "enc" in skipped:
        print(f"skipping enc: the model {models.name} has no encoder (inversions start from w_avg)")
    return supported


def invert_configs(cfg: InvertCLI, approaches, models, demo: bool = False) -> dict[str, Config]:
    """Each approach's preset with the model's recommended values, then the command's options
    (the demo restores and inverts its references with 50 steps unless told otherwise).
    `personal`'s are the model's `personal_config` (bundle.json's "personal") with --steps and
    --reference-steps; it always runs in float32 (--compute-dtype is the other approaches')."""
    from occjax.cli.demo import DEMO_REFERENCE_STEPS, DEMO_STEPS

    out = {}
    for a in approaches:
        over: dict = {"compute_dtype": cfg.compute_dtype}
        if cfg.steps is not None and a != "enc":
            over["steps"] = cfg.steps
        elif demo and a != "enc":
            over["steps"] = DEMO_STEPS
        rs = cfg.reference_steps if cfg.reference_steps is not None else cfg.steps
        if rs is None and demo:
            rs = DEMO_REFERENCE_STEPS
        if rs is not None:
            over["reference_steps"] = rs
        try:
            if a in OPT_IN_APPROACHES:
                if over.pop("compute_dtype") != "float32":
                    print(f"note: {a} runs in float32 (--compute-dtype is the other approaches')")
                out[a] = personal_config(models, **over)
            else:
                out[a] = models.preset(a, **over)
        except ValueError as e:
            raise UserError(str(e)) from None
        except TypeError as e:  # a bundle.json "personal" key that is no PersonalConfig field
            raise UserError(f"the model {models.name}'s {a!r} settings: {e}") from None
    return out


def mask_config(cfg: InvertCLI):
    """--mask auto's estimation settings: the defaults, with --steps for each round's inversion
    (the refit from the first round's codes included)."""
    from occjax.masks import MaskConfig

    if cfg.steps is None:
        return MaskConfig()
    return MaskConfig(steps=cfg.steps, refit_steps=cfg.steps)


def run_settings(cfg: InvertCLI, models, configs: dict, random_weights: bool, demo: bool) -> dict:
    """What the results depend on (records.py): the model, the options that change a result,
    and each approach's config. Batch size, progress, shards and the output folder are not."""
    from occjax.masks import mask_steps
    from occjax.models import models_hash

    mc = mask_config(cfg)

    common = {
        "models_hash": models_hash(models),
        "model": models.name,
        "random_weights": random_weights,
        "align": cfg.align,
        "paste_back": cfg.paste_back,
        "blend": cfg.blend,
        "min_ref_quality": cfg.min_ref_quality,
        # the steps the estimate really takes (None resolves per model: masks.mask_steps)
        "mask_estimation": {**dataclasses.asdict(mc), "steps": mask_steps(models, mc)},
        "demo": {"seed": cfg.seed, "model": cfg.demo_model} if demo else None,
    }
    approaches = {a: dataclasses.asdict(c) for a, c in configs.items()}
    return {"common": common, "approaches": approaches}


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


@dataclass
class Plan:
    cfg: InvertCLI
    out: Path
    models: object
    random_weights: bool
    approaches: tuple[str, ...]
    configs: dict[str, Config]
    settings: dict
    cases: list[Case] = field(default_factory=list)
    todo: dict[str, list[str]] = field(default_factory=dict)  # case -> approaches left
    previous: dict[str, dict[str, dict]] = field(default_factory=dict)  # case -> approach -> record

    @property
    def pending(self) -> list[Case]:
        return [c for c in self.cases if self.todo[c.name]]

    def line_hash(self, approach: str) -> str:
        return records.line_hash(self.settings["common"], self.settings["approaches"][approach])


def plan(cfg: InvertCLI, out: Path) -> Plan:
    """Everything decided before the first write; a folder made with other settings is refused
    here, untouched (or emptied of its run outputs first with --overwrite)."""
    demo = not cfg.inputs_given
    models, random_weights = load_cli_models(cfg, demo)
    if random_weights:
        from occjax.cli.demo import RANDOM_WEIGHTS_NOTE

        print(RANDOM_WEIGHTS_NOTE)
    approaches = select_approaches(cfg.approach, models)
    configs = invert_configs(cfg, approaches, models, demo=demo)
    check_networks(models, configs)
    settings = run_settings(cfg, models, configs, random_weights, demo)
    try:
        if cfg.overwrite:
            records.overwrite(out)
        else:
            records.check_settings(out, settings)
        p = Plan(cfg, out, models, random_weights, approaches, configs, settings)
        recs = records.read_records(out)
        done = records.done_pairs(recs, cfg.retry_failed)
        for r in recs:
            if r.get("status") == "ok":
                p.previous.setdefault(r["case"], {})[r["approach"]] = r
    except records.RecordsError as e:
        raise UserError(str(e)) from None
    try:
        p.cases = gather_cases(cfg, models, out)
    except InputError as e:
        raise UserError(str(e)) from None
    p.todo = {c.name: [a for a in approaches if (c.name, a) not in done] for c in p.cases}
    return p
