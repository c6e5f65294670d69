"""How a call runs, apart from what it computes: devices, memory budget, batch invariance,
progress and the reference cache. One object threads them through `invert`, the references,
`estimate_mask` and `screen_references`, checked once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax


@dataclass(frozen=True)
class Options:
    devices: object = None
    """None: every local device (the batch is sharded over them); an int n >= 1: the first n;
    or a list of jax devices."""
    chunk_size: int | None = None
    """At most this many problems per compiled call (a memory budget); None: all at once."""
    batch_invariant: bool = False
    """Each problem solved by the batch-1 program it would get alone, on one device."""
    progress: bool | Callable[[int], None] = False
    """A tqdm bar over steps, or a callback(steps done)."""
    cache: str | Path | None = None
    """Folder of the reference codes' cache (None: no cache)."""

    def __post_init__(self):
        d = self.devices
        n_local = len(jax.local_devices())
        if isinstance(d, bool) or (d is not None and not isinstance(d, int | list | tuple)):
            raise ValueError(f"devices: expected None, an int or a list of devices, got {d!r}")
        if isinstance(d, int) and not 1 <= d <= n_local:
            raise ValueError(f"devices={d}: need 1 <= devices <= {n_local} (the local devices)")
        if isinstance(d, list | tuple) and not d:
            raise ValueError("devices: an empty list; pass None for every local device")
        c = self.chunk_size
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ValueError(f"chunk_size={c!r}: need an int >= 1, or None")

    def device_list(self) -> list:
        if self.devices is None:
            return jax.local_devices()
        if isinstance(self.devices, int):
            return jax.local_devices()[: self.devices]
        return list(self.devices)
