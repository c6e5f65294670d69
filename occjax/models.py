"""`load_models` and the `Models` object: the networks of one model behind one NCHW, [-1, 1] interface.

A `Network` is a configured Flax module (its architecture) with its variables; `Models` holds one
per role (generator, encoder, perceptual, discriminator; any may be absent) plus the model's
recommended inversion settings. Images cross this boundary as NCHW float32 RGB in [-1, 1] (the
reference's convention); inside, everything is NHWC. Nothing here depends on which family a network
is: families are the modules of `occjax.networks`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from occjax import layers as L
from occjax.networks import ROLES, family
from occjax.networks.build import Network, network_from_flat
from occjax.params import (
    BUNDLE_JSON,
    BundleError,
    bundle_hash,
    load_flat,
    read_bundle_doc,
    sha256_file,
)

Array = jax.Array
BUILTIN = Path(__file__).resolve().parent / "bundles"


def resolve_bundle(bundle: str | Path) -> Path:
    """A bundle folder; a bare name (no path separator, not an existing folder) is a built-in."""
    p = Path(bundle)
    if p.is_dir():
        return p
    if len(p.parts) == 1 and (BUILTIN / p).is_dir():
        return BUILTIN / p
    names = sorted(b.parent.name for b in BUILTIN.glob("*/bundle.json"))
    raise BundleError(
        f"model bundle {bundle}: no such folder, and no built-in model of that name (built in: "
        f"{', '.join(names) or 'none'}; convert checkpoints with scripts/convert.py)"
    )


def load_network(role: str, source: str | Path) -> Network:
    """One network from a .pth/.pt checkpoint (needs torch) or from a converted bundle folder."""
    source = Path(source)
    if source.is_dir():
        nets = read_bundle_doc(source)["networks"]
        if role not in nets:
            raise BundleError(
                f"bundle {source} has no {role} (it has: {', '.join(nets) or 'none'})"
            )
        entry = nets[role]
        path = source / entry["file"]
        if not path.is_file():
            raise BundleError(f"bundle {source}: {entry['file']} is missing")
        # the run records and the reference cache identify weights by the bundle's hashes: a file
        # replaced behind them must not pass as the one described
        if "sha256" not in entry:
            raise BundleError(f"bundle {source}: {entry['file']} has no sha256 in bundle.json")
        if (digest := sha256_file(path)) != entry["sha256"]:
            raise BundleError(
                f"bundle {source}: {entry['file']} does not match bundle.json (sha256 {digest[:12]}"
                f"... instead of {entry['sha256'][:12]}...); the file was changed or replaced: "
                "convert the model again (scripts/convert.py)"
            )
        info = {k: v for k, v in entry.items() if k != "config"}
        info["bundle"] = str(source)
        return network_from_flat(
            entry["family"], load_flat(path), info, str(path), entry.get("config")
        )
    if not source.exists():
        raise FileNotFoundError(f"{role} checkpoint {source}: no such file")
    if source.suffix == ".safetensors":
        raise BundleError(
            f"{source}: pass the bundle folder ({source.parent}), not one of its files"
        )
    from converters import convert_file  # torch is needed only here

    c = convert_file(source, role)
    return network_from_flat(c.family, c.variables, c.info, str(source))


class Models:
    """The networks of one model (`nets[role]`; any may be absent), its recommended inversion
    settings (`defaults`, applied by `preset`) and where it came from (`name`, `info`)."""

    def __init__(
        self,
        nets: dict[str, Network] | None = None,
        bundle: str | None = None,
        defaults: dict | None = None,
        info: dict | None = None,
    ):
        self.nets: dict[str, Network] = {r: n for r, n in (nets or {}).items() if n is not None}
        self.bundle = bundle
        self.defaults = dict(defaults or {})
        self.info = dict(info or {})

    # ---- what the model is ----

    def net(self, role: str) -> Network:
        if role not in self.nets:
            raise ValueError(
                f"no {role} loaded: pass {role}= (a .pth file) or bundle= to load_models"
            )
        return self.nets[role]

    def has(self, role: str) -> bool:
        return role in self.nets

    @property
    def name(self) -> str:
        return self.info.get("name") or (Path(self.bundle).name if self.bundle else "models")

    @property
    def family(self) -> str:
        """The generator's model family ("idinvert", "dcgan", ...)."""
        return family(self.net("generator").family).model_family

    @property
    def resolution(self) -> int:
        return self.net("generator").module.resolution

    @property
    def code_shape(self) -> tuple[int, int]:
        """(L, D) of a code: W+ layers x w_dim (idinvert), (1, z_dim) (dcgan)."""
        return tuple(self.net("generator").module.code_shape)

    @property
    def z_dim(self) -> int:
        return self.net("generator").module.z_dim

    def preset(self, approach: str, **overrides):
        """The approach's preset with this model's recommended values (`defaults`), then
        `overrides`; raises if the model lacks a network the approach needs."""
        from occjax.config import OPT_IN_APPROACHES, preset

        if approach in OPT_IN_APPROACHES:
            raise ValueError(
                f"{approach!r} has no InvertConfig preset: its config is "
                f"occjax.personal.personal_config(models, **overrides) (a PersonalConfig)"
            )
        self.check_supports(approach)
        return preset(approach, **{**self.defaults, **overrides})

    def unsupported(self, approach: str) -> str | None:
        """Why the approach cannot run on this model (a missing network), or None."""
        from occjax.config import OPT_IN_APPROACHES, preset

        if approach in OPT_IN_APPROACHES:  # personal: its pivots are baseline inversions (LPIPS)
            if not self.has("perceptual"):
                return (
                    f"approach {approach!r} needs a perceptual network, and the model "
                    f"{self.name} has none"
                )
            return None
        cfg = preset(approach)
        if approach == "enc" and not self.has("encoder"):
            return f"approach 'enc' needs an encoder, and the model {self.name} has none"
        if cfg.uses_discriminator and not self.has("discriminator"):
            return (
                f"approach {approach!r} needs a discriminator, and the model {self.name} "
                f"({self.family}) has none"
            )
        return None

    def supported_approaches(self, opt_in: bool = False) -> tuple[str, ...]:
        """The approaches this model can run, in the presets' order (the CLI's default set); with
        `opt_in`, followed by the opt-in ones it can run (`personal`: the page's list)."""
        from occjax.config import APPROACHES, OPT_IN_APPROACHES

        names = APPROACHES + (OPT_IN_APPROACHES if opt_in else ())
        return tuple(a for a in names if not self.unsupported(a))

    def check_supports(self, approach: str) -> None:
        if msg := self.unsupported(approach):
            raise ValueError(msg)

    # ---- the networks, NCHW in [-1, 1] ----

    @staticmethod
    def _image(x, what: str) -> Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{what}: images must be NCHW [N, 3, H, W] in [-1, 1], got {x.shape}")
        return L.nchw_to_nhwc(x)

    def _z(self, z) -> Array:
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {z.shape}")
        return z

    def _needs_mapping(self, what: str) -> Any:
        g = self.net("generator")
        if not hasattr(g.module, "mapping"):
            raise ValueError(
                f"{what}: the {self.family} generator has no mapping network (its code is "
                "z itself); use codes(z) or generate(z)"
            )
        return g

    def mapping(self, z) -> Array:
        """z [N, z_dim] -> w+ [N, L, w_dim] (generators with a mapping network)."""
        return self._needs_mapping("mapping").apply(self._z(z), method="mapping")

    def truncation(self, w) -> Array:
        """w+ [N, L, w_dim] -> w_avg + (w - w_avg) * psi on the first layers."""
        g = self._needs_mapping("truncation")
        return g.apply(jnp.asarray(w, jnp.float32), method="truncation")

    def codes(self, z) -> Array:
        """The code [N, L, D] that `generate` synthesises for z [N, z_dim]."""
        return self.net("generator").apply(self._z(z), method="codes")

    def synthesis(self, code) -> Array:
        """code [N, L, D] -> images [N, 3, H, W] in (-1, 1) (no truncation)."""
        code = jnp.asarray(code, jnp.float32)
        if code.ndim != 3 or tuple(code.shape[1:]) != self.code_shape:
            raise ValueError(f"codes must be [N, {self.code_shape[0]}, {self.code_shape[1]}], got {code.shape}")  # fmt: skip
        return L.nhwc_to_nchw(self.net("generator").apply(code, method="synthesis"))

    def generate(self, z) -> Array:
        """z [N, z_dim] -> images [N, 3, H, W] (mapping and truncation where the family has them)."""
        return L.nhwc_to_nchw(self.net("generator").apply(self._z(z)))

    def encode(self, images) -> Array:
        """Images [N, 3, H, W] -> codes [N, L, D]."""
        return self.net("encoder").apply(self._image(images, "encode"))

    def perceptual(self, images):
        """Images [N, 3, H, W] -> the perceptual network's features (NCHW): VGG16 relu(conv4_3)
        [N, C, H/8, W/8] (idinvert), or LPIPS' five unit-normalised taps (a list)."""
        f = self.net("perceptual").apply(self._image(images, "perceptual"), method="features")
        return jax.tree.map(L.nhwc_to_nchw, f)

    def perceptual_distance(self, a, b) -> Array:
        """The perceptual term's distance between images a and b [N, 3, H, W] -> [N]."""
        v = self.net("perceptual")
        fa = v.apply(self._image(a, "perceptual_distance"), method="features")
        fb = v.apply(self._image(b, "perceptual_distance"), method="features")
        return v.apply(fa, fb, method="distance")

    def discriminate(self, images, group_size: int | None = None) -> Array:
        """Images [N, 3, H, W] -> raw scores [N]; minibatch stddev over the batch as the reference
        (groups of min(4, N)); group_size=1 scores each image on its own."""
        g = 4 if group_size is None else group_size
        return self.net("discriminator").apply(self._image(images, "discriminate"), group_size=g)

    # ---- records ----

    def hashes(self) -> dict[str, str]:
        """sha256 of each network's source file (for run records)."""
        return {
            r: n.info.get("source_sha256") or n.info.get("sha256", "") for r, n in self.nets.items()
        }

    def __repr__(self) -> str:
        parts = [f"{r}={n.family}" for r, n in self.nets.items()]
        return f"Models({', '.join(parts)})"


def load_models(
    generator: str | Path | None = None,
    encoder: str | Path | None = None,
    perceptual: str | Path | None = None,
    discriminator: str | Path | None = None,
    bundle: str | Path | None = None,
) -> Models:
    """Load any subset of the networks.

    Each argument is a `.pth`/`.pt` checkpoint (converted on the fly; needs torch) or a converted
    bundle folder. `bundle=` loads every network the bundle holds, with its recommended settings;
    a bare name ("faces64") is a model built into occjax. Explicit arguments override the bundle.
    A bundle folder given alone (`load_models("models/sg2")`) is the whole bundle.
    `discriminator=` takes either family (genforce StyleGAN D or StyleNAT D), recognised by its keys.
    """
    lone = generator is not None and not any((encoder, perceptual, discriminator, bundle))
    if lone and (Path(generator) / BUNDLE_JSON).is_file():
        bundle, generator = generator, None  # load_models("models/sg2"): the whole bundle
    given = {
        "generator": generator,
        "encoder": encoder,
        "perceptual": perceptual,
        "discriminator": discriminator,
    }
    sources: dict[str, str | Path] = {}
    defaults, info = {}, {}
    if bundle is not None:
        bundle = resolve_bundle(bundle)
        doc = read_bundle_doc(bundle)
        sources.update({r: bundle for r in doc["networks"] if r in ROLES})
        defaults = doc.get("defaults", {})
        info = {k: v for k, v in doc.items() if k not in ("networks", "defaults")}
    sources.update({r: s for r, s in given.items() if s is not None})
    if not sources:
        raise ValueError("load_models: nothing to load (pass checkpoint paths or bundle=)")
    nets = {role: load_network(role, src) for role, src in sources.items()}
    return Models(nets, str(bundle) if bundle is not None else None, defaults, info)


def models_hash(models: Models) -> str:
    """A short hash identifying the loaded weights (bundle hash, or the sources' sha256)."""
    if models.bundle is not None and not any(
        n.info.get("bundle") != models.bundle for n in models.nets.values()
    ):
        return bundle_hash(models.bundle)
    h = hashlib.sha256()
    for role, digest in sorted(models.hashes().items()):
        h.update(f"{role}:{digest};".encode())
    return h.hexdigest()[:16]


__all__ = ["Models", "Network", "load_models", "network_from_flat"]
