"""`load_models` and the `Models` object: the four networks behind one NCHW, [-1, 1] interface.

Each network is (family, spec, params); the compute is the pure functions of its module, jitted with
the spec static. Images cross this boundary as NCHW float32 RGB in [-1, 1] (the reference's
convention); inside, everything is NHWC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from occjax import discriminator, encoder, generator, nn, vgg
from occjax.params import (
    ROLES,
    BundleError,
    bundle_hash,
    check_shapes,
    load_flat,
    read_bundle_json,
    shapes,
    unflatten,
)

Array = jax.Array


def _network_modules() -> dict[str, Any]:
    mods = {
        "idinvert_generator": generator,
        "idinvert_encoder": encoder,
        "idinvert_vgg16": vgg,
        "stylegan_discriminator": discriminator,
    }
    try:
        from occjax import stylenat

        mods["stylenat_discriminator"] = stylenat
    except ImportError:  # pragma: no cover
        pass
    return mods


NETWORKS = _network_modules()
ROLE_OF_FAMILY = {
    "idinvert_generator": "generator",
    "idinvert_encoder": "encoder",
    "idinvert_vgg16": "perceptual",
    "stylegan_discriminator": "discriminator",
    "stylenat_discriminator": "discriminator",
}


@dataclass
class Network:
    family: str
    spec: Any
    params: dict  # nested, jnp arrays
    info: dict = field(default_factory=dict)  # source path, sha256, sizes

    @property
    def module(self):
        return NETWORKS[self.family]


def network_from_flat(family: str, flat: dict[str, np.ndarray], info: dict, where: str) -> Network:
    if family not in NETWORKS:
        raise BundleError(f"{where}: unknown network family {family!r}")
    mod = NETWORKS[family]
    try:
        spec = mod.spec_from_shapes(shapes(flat))
    except (KeyError, ValueError, IndexError) as e:
        raise BundleError(f"{where}: cannot infer the {family} architecture ({e})") from None
    check_shapes(where, shapes(flat), mod.param_shapes(spec))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), unflatten(flat))
    return Network(family, spec, params, info)


def load_network(role: str, source: str | Path) -> Network:
    """One network from a .pth/.pt checkpoint (needs torch) or from a converted bundle folder."""
    source = Path(source)
    if source.is_dir():
        nets = read_bundle_json(source)
        if role not in nets:
            raise BundleError(
                f"bundle {source} has no {role} (it has: {', '.join(nets) or 'none'})"
            )
        entry = nets[role]
        path = source / entry["file"]
        if not path.is_file():
            raise BundleError(f"bundle {source}: {entry['file']} is missing")
        info = {k: v for k, v in entry.items() if k != "spec"}
        info["bundle"] = str(source)
        return network_from_flat(entry["family"], load_flat(path), info, str(path))
    if not source.exists():
        raise FileNotFoundError(f"{role} checkpoint {source}: no such file")
    if source.suffix == ".safetensors":
        raise BundleError(
            f"{source}: pass the bundle folder ({source.parent}), not one of its files"
        )
    from converters import convert_file  # torch is needed only here

    c = convert_file(source, role)
    return network_from_flat(c.family, c.params, c.info, str(source))


# ---- jitted entry points (spec static) ---------------------------------------------------------


@partial(jax.jit, static_argnums=2)
def _mapping(params, z, spec):
    return generator.mapping(params, z, spec)


@partial(jax.jit, static_argnums=2)
def _truncation(params, w, spec):
    return generator.truncation(params, w, spec)


@partial(jax.jit, static_argnums=2)
def _synthesis(params, wp, spec):
    return nn.nhwc_to_nchw(generator.synthesis(params, wp, spec))


@partial(jax.jit, static_argnums=2)
def _generate(params, z, spec):
    return nn.nhwc_to_nchw(generator.generate(params, z, spec))


@partial(jax.jit, static_argnums=2)
def _encode(params, x, spec):
    return encoder.encode(params, nn.nchw_to_nhwc(x), spec)


@partial(jax.jit, static_argnums=2)
def _perceptual(params, x, spec):
    return nn.nhwc_to_nchw(vgg.features(params, nn.nchw_to_nhwc(x), spec))


@partial(jax.jit, static_argnums=(2, 3, 4))
def _discriminate(params, x, family, spec, group_size):
    return NETWORKS[family].discriminate(params, nn.nchw_to_nhwc(x), spec, group_size=group_size)


class Models:
    """The networks of one inversion set-up (`nets[role]`); any of them may be absent."""

    def __init__(self, nets: dict[str, Network] | None = None, bundle: str | None = None):
        self.nets: dict[str, Network] = {r: n for r, n in (nets or {}).items() if n is not None}
        self.bundle = bundle

    def net(self, role: str) -> Network:
        if role not in self.nets:
            raise ValueError(
                f"no {role} loaded: pass {role}= (a .pth file) or bundle= to load_models"
            )
        return self.nets[role]

    def has(self, role: str) -> bool:
        return role in self.nets

    @staticmethod
    def _image(x, what: str) -> Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{what}: images must be NCHW [N, 3, H, W] in [-1, 1], got {x.shape}")
        return x

    @property
    def resolution(self) -> int:
        return self.net("generator").spec.resolution

    def mapping(self, z) -> Array:
        """z [N, z_dim] -> w+ [N, L, w_dim] (mapping output viewed per W+ layer)."""
        g = self.net("generator")
        return _mapping(g.params, jnp.asarray(z, jnp.float32), g.spec)

    def truncation(self, w) -> Array:
        """w+ [N, L, w_dim] -> w_avg + (w - w_avg) * psi on the first layers."""
        g = self.net("generator")
        return _truncation(g.params, jnp.asarray(w, jnp.float32), g.spec)

    def synthesis(self, wp) -> Array:
        """w+ [N, L, w_dim] -> images [N, 3, H, W] in (-1, 1), no truncation."""
        g = self.net("generator")
        return _synthesis(g.params, jnp.asarray(wp, jnp.float32), g.spec)

    def generate(self, z) -> Array:
        """z [N, z_dim] -> mapping -> truncation -> synthesis -> [N, 3, H, W]."""
        g = self.net("generator")
        return _generate(g.params, jnp.asarray(z, jnp.float32), g.spec)

    def encode(self, images) -> Array:
        """Images [N, 3, H, W] -> w+ codes [N, L, w_dim]."""
        e = self.net("encoder")
        return _encode(e.params, self._image(images, "encode"), e.spec)

    def perceptual(self, images) -> Array:
        """Images [N, 3, H, W] -> VGG16 relu(conv4_3) features [N, C, H/8, W/8]."""
        v = self.net("perceptual")
        return _perceptual(v.params, self._image(images, "perceptual"), v.spec)

    def discriminate(self, images, group_size: int | None = None) -> Array:
        """Images [N, 3, H, W] -> raw scores [N]; minibatch stddev over the batch as the reference
        (groups of min(4, N)); group_size=1 scores each image on its own."""
        d = self.net("discriminator")
        g = 4 if group_size is None else group_size
        return _discriminate(d.params, self._image(images, "discriminate"), d.family, d.spec, g)

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
    bundle folder. `bundle=` loads every network the bundle holds; explicit arguments override it.
    `discriminator=` takes either family (genforce StyleGAN D or StyleNAT D), recognised by its keys.
    """
    given = {
        "generator": generator,
        "encoder": encoder,
        "perceptual": perceptual,
        "discriminator": discriminator,
    }
    sources: dict[str, str | Path] = {}
    if bundle is not None:
        sources.update({r: bundle for r in read_bundle_json(bundle) if r in ROLES})
    sources.update({r: s for r, s in given.items() if s is not None})
    if not sources:
        raise ValueError("load_models: nothing to load (pass checkpoint paths or bundle=)")
    nets = {role: load_network(role, src) for role, src in sources.items()}
    m = Models(nets, str(bundle) if bundle is not None else None)
    return m


def models_hash(models: Models) -> str:
    """A short hash identifying the loaded weights (bundle hash, or the sources' sha256)."""
    if models.bundle is not None:
        return bundle_hash(models.bundle)
    import hashlib

    h = hashlib.sha256()
    for role, digest in sorted(models.hashes().items()):
        h.update(f"{role}:{digest};".encode())
    return h.hexdigest()[:16]
