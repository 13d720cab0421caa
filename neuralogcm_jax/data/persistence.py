"""How long anomalies persist in a dataset: the lag regression behind the fitted climate damping.

`lag_regression` reads a split of an HDF5 data root and returns, for every ocean channel, the
regression coefficient of the normalised anomaly `lag` days later on today's,

    alpha_c = sum_{t, wet cells} a_c(t) a_c(t + lag) / sum_{t, wet cells} a_c(t)^2,

with both days in the same year file (the files are whole calendar years). This is the
coefficient a damped-persistence forecast ``a(t + lag) = alpha a(t)`` would use; the hybrid takes
``-ln(alpha) / lag`` as the initial rate of its relaxation toward climatology
(`neuralogcm_jax.model.fit_climate_damping`, ``model.climate_damping_fit_lag``). With
``per_level=False`` the sums run over a variable's levels together.

The anomalies are the model's own (`Stats.physical_to_anomaly`: departure from the data's
day-of-year climatology, divided by the channel's std). Days are read in blocks (`day_blocks`,
which the hybrid's fitted tendency correction reads too), so memory stays a block of days
whatever the grid.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from neuralogcm_jax.data import h5format
from neuralogcm_jax.errors import DataError

BLOCK_DAYS = 32


def lag_sums(droot, split: str, lag: int, stats=None, *, progress: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(sum a(t) a(t+lag), sum a(t)^2)`` per ocean channel ``[n_ocean]`` (float64) over the
    split's year files of `droot` (an `h5format.DataRoot`), wet cells only."""
    stats = droot.load_stats() if stats is None else stats
    n = stats.layout.n_ocean
    info = droot.split(split)
    if all(yf.n_days <= lag for yf in info.files):
        raise DataError(f"{droot.root / split}: no year file holds more than {lag} days, so "
                        f"there is no pair of days {lag} days apart to fit the damping to")
    num = np.zeros(n, np.float64)
    den = np.zeros(n, np.float64)
    total = pair_count(droot, split, lag)
    bar = tqdm(total=total, desc=f"fit damping (lag {lag} d)", unit="day", disable=not progress,
               leave=False)
    for a, _, _ in day_blocks(droot, split, stats, BLOCK_DAYS, lag):
        m = len(a) - lag  # the block's days whose partner is in it too
        num += np.einsum("tchw,tchw->c", a[:m], a[lag:], dtype=np.float64)
        den += np.einsum("tchw,tchw->c", a[:m], a[:m], dtype=np.float64)
        bar.update(m)
    bar.close()
    return num, den


def pair_count(droot, split: str, lag: int) -> int:
    """The number of pairs of days `lag` apart within the split's year files."""
    return sum(max(0, yf.n_days - lag) for yf in droot.split(split).files)


def day_blocks(droot, split: str, stats, block_days: int, overlap: int, *,
               forcing: bool = False):
    """Blocks of consecutive days of each year file of the split, in order: every
    `block_days` days a block of ``block_days + overlap`` days (fewer at the year's end), so
    that every pair of days `overlap` apart in a year file is exactly one block's
    ``(j, j + overlap)`` with ``j < len(block) - overlap``. Yields ``(a, f, doy)``: normalised
    anomalies ``[T, n_ocean, H, W]``, the normalised forcing ``[T, n_forcing, H, W]`` (None
    unless `forcing`) and the day-of-year indices ``[T]``. A year file of `overlap` days or
    fewer gives no block."""
    n = stats.layout.n_ocean
    n_read = stats.layout.n_channels if forcing else n
    for yf in droot.split(split).files:
        for t0 in range(0, yf.n_days - overlap, block_days):
            t1 = min(t0 + block_days + overlap, yf.n_days)
            x = h5format.read_days(yf.path, slice(t0, t1), n_read)
            doy = np.arange(t0, t1)  # a year file starts on 1 January
            f = stats.normalize_forcing(x[:, n:]).astype(np.float32) if forcing else None
            yield stats.physical_to_anomaly(x[:, :n], doy), f, doy


def lag_regression(num: np.ndarray, den: np.ndarray, groups: list[slice] | None = None
                   ) -> np.ndarray:
    """``alpha`` per channel from `lag_sums` (or, with `groups`, one per group of channels,
    e.g. a variable's levels). A channel with no variance (all land, or constant) -> NaN."""
    if groups is not None:
        num = np.array([num[g].sum() for g in groups])
        den = np.array([den[g].sum() for g in groups])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
