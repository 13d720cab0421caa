"""Normalisation statistics: mean, std and the day-of-year climatology (DESIGN.md decision 1).

Ocean channels are normalised anomalies ``a = (x - clim[doy] - mean) / std``; forcing channels are
``(x - mean) / std`` on raw values. Land is 0 in anomaly space, whatever the raw value (NaN in the
real files), and `anomaly_to_physical` returns 0 on land so nothing downstream reads garbage.

`doy` is the 0-based day of year (0 .. 365; index 365 is 31 Dec of a leap year). Functions work on
numpy and jax arrays alike; `doy` may be traced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout

Array = Any


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


@dataclasses.dataclass(frozen=True, eq=False)
class Stats:
    """Normalisation statistics of a dataset.

    Attributes:
      mean: ``[C]`` per-channel mean (all channels).
      std: ``[C]`` per-channel standard deviation (> 0).
      clim: ``[366, n_ocean, H, W]`` day-of-year climatology of the ocean channels (0 on land);
        may be a read-only memory map.
      wet: ``[n_ocean, H, W]`` bool, the ocean channels' wet masks.
      layout: the channel layout these belong to.
    """

    mean: np.ndarray
    std: np.ndarray
    clim: np.ndarray
    wet: np.ndarray
    layout: ChannelLayout

    def __post_init__(self):
        L = self.layout
        if self.mean.shape != (L.n_channels,) or self.std.shape != (L.n_channels,):
            raise DataError(
                f"stats mean/std have shapes {self.mean.shape}/{self.std.shape}, expected "
                f"({L.n_channels},) for a {L.n_levels}-level layout"
            )
        if not np.all(np.isfinite(self.std)) or np.any(self.std <= 0):
            bad = int(np.argmax(~(np.isfinite(self.std) & (self.std > 0))))
            raise DataError(
                f"std of channel {bad} ({L.channel_names[bad]}) is {self.std[bad]}; must be > 0"
            )
        if self.clim.ndim != 4 or self.clim.shape[:2] != (366, L.n_ocean):
            raise DataError(
                f"climatology has shape {self.clim.shape}, expected [366, {L.n_ocean}, lat, lon]"
            )
        if self.wet.shape != (L.n_ocean,) + self.clim.shape[2:]:
            raise DataError(
                f"wet mask has shape {self.wet.shape}, expected {(L.n_ocean,) + self.clim.shape[2:]}"
            )

    @classmethod
    def build(
        cls,
        mean: np.ndarray,
        std: np.ndarray,
        clim: np.ndarray,
        wet: np.ndarray,
        layout: ChannelLayout,
    ) -> Stats:
        """Stats from arrays; a ``[366, n_channels, H, W]`` climatology is cut to its ocean part,
        a ``[L, H, W]`` grid wet mask is expanded to channels, NaN on land becomes 0."""
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        wet = np.asarray(wet, dtype=bool)
        if wet.ndim == 3 and wet.shape[0] == layout.n_levels:
            wet = layout.wet_channels(wet)[: layout.n_ocean]
        elif wet.ndim == 3 and wet.shape[0] == layout.n_channels:
            wet = wet[: layout.n_ocean]
        if clim.ndim == 4 and clim.shape[1] == layout.n_channels:
            clim = clim[:, : layout.n_ocean]
        if not isinstance(clim, np.memmap):
            clim = np.where(wet[None] if clim.shape[1:] == wet.shape else True, clim, 0.0)
            clim = np.nan_to_num(np.asarray(clim, dtype=np.float32))
        return cls(mean=mean, std=std, clim=clim, wet=wet, layout=layout)

    # ---------------------------------------------------------------- ocean channels
    def clim_at(self, doy) -> Array:
        """``[n_ocean, H, W]`` climatology of day-of-year index `doy` (int or traced int)."""
        if isinstance(doy, (int, np.integer)):
            return np.nan_to_num(np.asarray(self.clim[int(doy)], dtype=np.float32))
        import jax.numpy as jnp

        return jnp.take(jnp.asarray(self.clim), doy, axis=0)

    def physical_to_anomaly(self, x: Array, doy, clim: Array | None = None) -> Array:
        """``[..., n_ocean, H, W]`` physical -> normalised anomaly; land (and NaN there) -> 0."""
        xp = _xp(x)
        n = self.layout.n_ocean
        c = self.clim_at(doy) if clim is None else clim
        mean = xp.asarray(self.mean[:n])[:, None, None]
        std = xp.asarray(self.std[:n])[:, None, None]
        wet = xp.asarray(self.wet)
        return xp.where(wet, (xp.where(wet, x, 0.0) - c - mean) / std, 0.0).astype(
            xp.float32 if xp is np else x.dtype
        )

    def anomaly_to_physical(self, a: Array, doy, clim: Array | None = None) -> Array:
        """``[..., n_ocean, H, W]`` normalised anomaly -> physical units; land -> 0."""
        xp = _xp(a)
        n = self.layout.n_ocean
        c = self.clim_at(doy) if clim is None else clim
        mean = xp.asarray(self.mean[:n])[:, None, None]
        std = xp.asarray(self.std[:n])[:, None, None]
        return xp.where(xp.asarray(self.wet), a * std + mean + c, 0.0)

    # ---------------------------------------------------------------- forcing channels
    def normalize_forcing(self, f: Array) -> Array:
        """``[..., 4, H, W]`` raw forcing -> ``(f - mean) / std``."""
        xp = _xp(f)
        n = self.layout.n_ocean
        return (f - xp.asarray(self.mean[n:])[:, None, None]) / xp.asarray(self.std[n:])[
            :, None, None
        ]

    def denormalize_forcing(self, f: Array) -> Array:
        xp = _xp(f)
        n = self.layout.n_ocean
        return f * xp.asarray(self.std[n:])[:, None, None] + xp.asarray(self.mean[n:])[
            :, None, None
        ]
