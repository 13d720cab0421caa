"""Normalisation statistics: mean, std and the day-of-year climatology (see `docs/design.md`).

Ocean channels are normalised anomalies ``a = (x - clim(doy) - mean) / std``; forcing channels are
``(x - mean) / std`` on raw values. Land is 0 in anomaly space, whatever the raw value (NaN in the
real files), and `anomaly_to_physical` returns 0 on land so nothing downstream reads garbage.

The climatology is *compact*: per ocean channel and cell, a mean plus `n_harmonics` annual
harmonics,

    clim(doy) = h[0] + sum_k h[2k-1] cos(2 pi k doy / 365.25) + h[2k] sin(2 pi k doy / 365.25)

(``harmonics [2 K + 1, n_ocean, H, W]``, K = `DEFAULT_HARMONICS` = 4; 96 MB at 1.5 deg instead of
the 3.9 GB of a 366-day table). The data tools store the coefficients beside the 366-day table
(`fit_harmonics`); a data root that has only the table is fitted when its stats are loaded. The
data pipeline, the models and the evaluation all evaluate the same coefficients through
`clim_at`/`climatology_at`, so training samples and the models' own conversions agree (to float32
rounding of the K-term sum). Fit errors against the 366-day table: see `DEFAULT_HARMONICS`.

`doy` is the 0-based day of year (0 .. 365; index 365 is 31 Dec of a leap year). Functions work on
numpy and jax arrays alike; `doy` may be traced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from tqdm import tqdm

from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout

Array = Any

CLIM_DAYS = 366
YEAR_LENGTH_DAYS = 365.25
DEFAULT_HARMONICS = 4
"""Annual harmonics K of the compact climatology. Chosen from the fit error against the 366-day
table of the demo twin (`neuralogcm make-data --preset demo`: 6 deg x 4 levels, a climatology of
only 2 training years, so its day-to-day noise is large), over wet cells and days 0..365; error
relative to each channel's anomaly std (RMS, max over all channels), and the share of the
seasonal variance (table minus its annual mean) the fit leaves:

    K=1: RMS 0.58, max 11.7, 11.3 %    K=2: 0.36, 6.8, 4.0 %    K=3: 0.25, 5.2, 1.8 %
    K=4: 0.19, 4.1, 0.93 %             K=6: 0.10, 1.9, 0.21 %   K=8: 0.06, 1.4

The residual is mostly the noise of the 2-year table (largest in deep salinity, whose anomaly std
is tiny); K = 4 keeps 99 % of the seasonal variance in 9 terms. Since the data pipeline uses the
same harmonics as the models, the residual is part of the anomalies, not an error of the model."""


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    # imported here, not at the top: `neuralogcm convert-glorys --help` imports this module
    # (through data.convert) and must not import JAX
    import jax.numpy as jnp

    return jnp


def harmonic_basis(n_harmonics: int) -> np.ndarray:
    """``[366, 2 K + 1]`` float64: 1, cos(2 pi k d / 365.25), sin(...) for k = 1..K, d = 0..365."""
    d = np.arange(CLIM_DAYS, dtype=np.float64)
    cols = [np.ones_like(d)]
    for k in range(1, int(n_harmonics) + 1):
        theta = 2.0 * np.pi * k * d / YEAR_LENGTH_DAYS
        cols += [np.cos(theta), np.sin(theta)]
    return np.stack(cols, axis=1)


def fit_harmonics(
    clim: np.ndarray, n_harmonics: int = DEFAULT_HARMONICS, *, progress: bool = False,
    desc: str = "fitting climatology harmonics",
) -> np.ndarray:
    """Least-squares harmonics ``[2 K + 1, C, H, W]`` float32 of a ``[366, C, H, W]``
    climatology (NaN counts as 0; may be a memory map, read one channel at a time)."""
    if clim.ndim != 4 or clim.shape[0] != CLIM_DAYS:
        raise DataError(f"climatology has shape {clim.shape}, expected [366, C, lat, lon]")
    basis = harmonic_basis(n_harmonics)
    proj = np.linalg.pinv(basis)  # [2K+1, 366]
    out = np.zeros((basis.shape[1],) + clim.shape[1:], dtype=np.float32)
    for c in tqdm(range(clim.shape[1]), desc=desc, unit="channel", disable=not progress,
                  leave=False):
        x = np.nan_to_num(np.asarray(clim[:, c], dtype=np.float64)).reshape(CLIM_DAYS, -1)
        out[:, c] = (proj @ x).reshape((basis.shape[1],) + clim.shape[2:])
    return out


def climatology_at(harmonics: Array, doy) -> Array:
    """``[..., n_ocean, H, W]`` climatology of the day-of-year index `doy` (int, or int array of
    shape ``[...]``, possibly traced) from ``harmonics [2 K + 1, n_ocean, H, W]``.

    The K-term sum runs in the same order in numpy and jax, on the float32 basis table, so the
    data pipeline and the models compute the same numbers (up to fused multiply-adds)."""
    xp = _xp(harmonics)
    n_terms = harmonics.shape[0]
    table = harmonic_basis((n_terms - 1) // 2).astype(np.float32)
    if xp is np:
        b = table[np.asarray(doy, dtype=np.int64)]
    else:
        b = xp.take(xp.asarray(table, dtype=harmonics.dtype), xp.asarray(doy, xp.int32), axis=0)
    b = b[..., None, None, None]  # [..., 2K+1, 1, 1, 1]
    c = b[..., 0, :, :, :] * harmonics[0]
    for k in range(1, n_terms):
        c = c + b[..., k, :, :, :] * harmonics[k]
    return c


@dataclasses.dataclass(frozen=True, eq=False)
class Stats:
    """Normalisation statistics of a dataset.

    Attributes:
      mean: ``[C]`` per-channel mean (all channels).
      std: ``[C]`` per-channel standard deviation (> 0).
      harmonics: ``[2 K + 1, n_ocean, H, W]`` float32 compact day-of-year climatology of the
        ocean channels (0 on land); see the module docstring.
      wet: ``[n_ocean, H, W]`` bool, the ocean channels' wet masks.
      layout: the channel layout these belong to.
    """

    mean: np.ndarray
    std: np.ndarray
    harmonics: np.ndarray
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
        if not np.all(np.isfinite(self.mean)):
            bad = int(np.argmax(~np.isfinite(self.mean)))
            raise DataError(f"mean of channel {bad} ({L.channel_names[bad]}) is {self.mean[bad]}")
        h = self.harmonics
        if h.ndim != 4 or h.shape[1] != L.n_ocean or h.shape[0] % 2 != 1:
            raise DataError(
                f"climatology harmonics have shape {h.shape}, expected [2 K + 1, {L.n_ocean}, "
                f"lat, lon]"
            )
        if self.wet.shape != (L.n_ocean,) + h.shape[2:]:
            raise DataError(
                f"wet mask has shape {self.wet.shape}, expected {(L.n_ocean,) + h.shape[2:]}"
            )
        if not np.all(np.isfinite(h)):
            k, c, j, i = (int(v) for v in np.argwhere(~np.isfinite(h))[0])
            raise DataError(
                f"climatology harmonic {k} of channel {c} ({L.channel_names[c]}) is {h[k, c, j, i]}"
                f" at row {j}, column {i}"
            )

    @property
    def n_harmonics(self) -> int:
        return (self.harmonics.shape[0] - 1) // 2

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the grid."""
        return tuple(self.harmonics.shape[2:])

    @classmethod
    def build(
        cls,
        mean: np.ndarray,
        std: np.ndarray,
        clim: np.ndarray | None,
        wet: np.ndarray,
        layout: ChannelLayout,
        *,
        harmonics: np.ndarray | None = None,
        n_harmonics: int = DEFAULT_HARMONICS,
        progress: bool = False,
    ) -> Stats:
        """Stats from arrays: either the ``[366, n_ocean or n_channels, H, W]`` climatology
        `clim` (fitted with `n_harmonics` harmonics) or its `harmonics` ``[2 K + 1, n_ocean or
        n_channels, H, W]``. A ``[L, H, W]`` grid wet mask is expanded to channels; NaN and
        land become 0."""
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        wet = np.asarray(wet, dtype=bool)
        if wet.ndim == 3 and wet.shape[0] == layout.n_levels:
            wet = layout.wet_channels(wet)[: layout.n_ocean]
        elif wet.ndim == 3 and wet.shape[0] == layout.n_channels:
            wet = wet[: layout.n_ocean]
        if harmonics is None:
            if clim is None:
                raise DataError("Stats.build needs the climatology or its harmonics")
            if clim.ndim == 4 and clim.shape[1] == layout.n_channels:
                clim = clim[:, : layout.n_ocean]
            harmonics = fit_harmonics(clim, n_harmonics, progress=progress)
        harmonics = np.asarray(harmonics)
        if harmonics.ndim == 4 and harmonics.shape[1] == layout.n_channels:
            harmonics = harmonics[:, : layout.n_ocean]
        if harmonics.shape[1:] == wet.shape:
            harmonics = np.where(wet[None], harmonics, 0.0)
        harmonics = np.asarray(harmonics, dtype=np.float32)
        return cls(mean=mean, std=std, harmonics=harmonics, wet=wet, layout=layout)

    @classmethod
    def identity(cls, wet: np.ndarray, layout: ChannelLayout,
                 n_harmonics: int = DEFAULT_HARMONICS) -> Stats:
        """Statistics that leave values unchanged: mean 0, std 1, climatology 0."""
        wet = layout.wet_channels(np.asarray(wet, bool))[: layout.n_ocean]
        h = np.zeros((2 * n_harmonics + 1,) + wet.shape, np.float32)
        return cls.build(np.zeros(layout.n_channels), np.ones(layout.n_channels), None, wet,
                         layout, harmonics=h)

    # ---------------------------------------------------------------- ocean channels
    def clim_at(self, doy) -> Array:
        """``[n_ocean, H, W]`` (or ``[..., n_ocean, H, W]`` for an array of days) climatology of
        day-of-year index `doy` (int, or a traced int array: a jax result)."""
        if isinstance(doy, (int, np.integer)) or (
            isinstance(doy, np.ndarray) and doy.dtype.kind in "iu"
        ):
            return climatology_at(self.harmonics, doy)
        import jax.numpy as jnp  # not at the top: see `_xp`

        return climatology_at(jnp.asarray(self.harmonics), doy)

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
        """``[..., n_forcing, H, W]`` raw forcing -> ``(f - mean) / std``."""
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
