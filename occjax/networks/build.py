"""A network from flat variables, once: its configured Flax module (from a bundle's config or read
from the variables' shapes), every variable checked against the module's own, and the `Network`
that holds both. `occjax.models` (bundles) and `converters/` (checkpoints) both build through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from occjax import layers as L
from occjax.networks import family
from occjax.params import BundleError, check_shapes, flatten, shapes, unflatten

# what the inversion step calls on each role's module (and prepares)
STEP_METHOD = {
    "generator": "synthesis",
    "encoder": None,
    "perceptual": "features",
    "discriminator": None,
}


def expected_shapes(module) -> dict[str, tuple[int, ...]]:
    """Every variable the module creates, "collection/path" -> shape (the architecture itself)."""
    tree = jax.eval_shape(lambda: module.init(jax.random.key(0), *module.init_inputs()))
    tree = {c: v for c, v in tree.items() if c != "intermediates"}
    return {k: tuple(v.shape) for k, v in flatten(tree).items()}


@dataclass(eq=False)
class Network:
    """One network: `family` (occjax.networks), `module` (configured Flax module), `variables`."""

    family: str
    module: Any
    variables: dict  # {"params": ..., "batch_stats": ..., "buffers": ...}, jnp arrays
    info: dict = field(default_factory=dict)  # source path, sha256, sizes, licence
    _prepared: dict = field(default_factory=dict, repr=False)

    @property
    def role(self) -> str:
        return family(self.family).role

    def apply(self, *args, method: str | None = None, **kw):
        """The module's `method` (default `__call__`) on these variables, jitted."""
        return _apply(self.module, self.variables, *args, method=method, kw=tuple(kw.items()))

    def prepared(self, dtype: str = "float32") -> dict:
        """The variables plus the "prepared" collection (weight-only work of the step done once:
        input-gradient kernels, phase kernels, spectral norms), in `dtype`; cached."""
        if dtype not in self._prepared:
            args = _step_inputs(self)
            method = STEP_METHOD[self.role]
            extra = _prepare(self.module, self.variables, args, method)
            variables = {**self.variables, **extra}
            if dtype != "float32":  # cast once here, not every step
                cd = jnp.dtype(dtype)
                variables = jax.tree.map(
                    lambda a: a.astype(cd) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                    variables,
                )
            self._prepared[dtype] = variables
        return self._prepared[dtype]


@partial(jax.jit, static_argnames=("module", "method", "kw"))
def _apply(module, variables, *args, method=None, kw=()):
    return module.apply(variables, *args, method=method, **dict(kw))


@partial(jax.jit, static_argnames=("module", "method"))
def _prepare(module, variables, args, method):
    # the forward pass only feeds the "prepared" collection; XLA drops the rest of it
    _, state = module.apply(variables, *args, method=method, mutable=[L.PREPARED])
    return state


def _step_inputs(net: Network) -> tuple:
    m = net.module
    if net.role == "generator":
        return (jnp.zeros((1, *m.code_shape), jnp.float32),)
    return m.init_inputs()


def network_from_flat(
    fam: str, flat: dict[str, np.ndarray], info: dict, where: str, config: dict | None = None
) -> Network:
    """A Network from flat variables ("collection/path" -> array): the architecture from `config`
    (a bundle's) or read from the shapes, every variable checked against the module's own."""
    f = family(fam)
    try:
        module = f.from_config(config) if config else f.config_from_shapes(shapes(flat))
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise BundleError(f"{where}: cannot infer the {fam} architecture ({e})") from None
    check_shapes(where, shapes(flat), expected_shapes(module))
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), unflatten(flat))
    return Network(fam, module, variables, info)
