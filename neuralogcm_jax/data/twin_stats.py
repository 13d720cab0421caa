"""Normalisation statistics of a twin dataset, from its training years' files.

Statistics (training years only): ocean channels' climatology by day of year (0-based ordinal day,
index 365 = 31 December of leap years), smoothed by a circular 31-day window weighted by the number
of samples of each day, 0 on land; ocean channels' mean and std of the anomalies about it (wet
cells); forcing channels' mean and std of the raw values (all cells). A std is floored at 1% of
the largest std of the same variable over its levels, so a channel that barely varies (deep
currents) cannot blow up normalised errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from neuralogcm_jax.data.normalize import climatology_at, fit_harmonics
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout


def smooth_circular(sums: np.ndarray, counts: np.ndarray, half_width: int = 15) -> np.ndarray:
    """``[366, ...]`` sums and ``[366]`` sample counts -> windowed means over ``2 hw + 1`` days,
    circular in the day of year (float32)."""
    n = sums.shape[0]
    out = np.empty(sums.shape, dtype=np.float32)
    # A running window sum (float64): one add and one subtract per day instead of 31 adds.
    window = np.zeros(sums.shape[1:], dtype=np.float64)
    count = 0
    for j in range(-half_width, half_width + 1):
        window += sums[j % n]
        count += counts[j % n]
    for d in range(n):
        if d > 0:
            enter, leave = (d + half_width) % n, (d - half_width - 1) % n
            window += sums[enter]
            window -= sums[leave]
            count += counts[enter] - counts[leave]
        if count == 0:
            raise DataError("a 31-day window holds no training day; need at least one full year")
        out[d] = window / count
    return out


def _read_year(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return np.asarray(f["fields"], dtype=np.float32)


def compute_stats(
    train_files: Sequence[tuple[int, Path]], layout: ChannelLayout, wet: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stats of the training years (see the module doc): ``mean [C]``, ``std [C]``,
    ``clim [366, n_ocean, H, W]`` (0 on land) and its harmonics ``[2 K + 1, n_ocean, H, W]``
    (`normalize.fit_harmonics`); the ocean mean/std are of the anomalies from the harmonic
    climatology, the one the pipeline and the models use."""
    n_oc = layout.n_ocean
    wet_ch = layout.wet_channels(wet)[:n_oc]
    h, w = wet.shape[1:]
    # float64 sums where they fit in ~1 GB; float32 (ample for <= a few dozen years) otherwise.
    big = 366 * n_oc * h * w * 8 > 1e9
    sums = np.zeros((366, n_oc, h, w), dtype=np.float32 if big else np.float64)
    counts = np.zeros(366, dtype=np.int64)
    for _, path in train_files:
        x = _read_year(path)
        sums[: x.shape[0]] += np.nan_to_num(x[:, :n_oc])
        counts[: x.shape[0]] += 1
    clim = smooth_circular(sums, counts)
    del sums
    clim *= wet_ch[None]
    harmonics = fit_harmonics(clim) * wet_ch[None]
    C = layout.n_channels
    s1 = np.zeros(C)
    s2 = np.zeros(C)
    n = np.zeros(C)
    for _, path in train_files:
        x = _read_year(path)
        for t in range(x.shape[0]):
            a = x[t, :n_oc] - climatology_at(harmonics, t)
            a = np.where(wet_ch, a, 0.0).astype(np.float64)
            s1[:n_oc] += a.sum(axis=(1, 2))
            s2[:n_oc] += (a * a).sum(axis=(1, 2))
            n[:n_oc] += wet_ch.sum(axis=(1, 2))
            fr = x[t, n_oc:].astype(np.float64)
            s1[n_oc:] += fr.sum(axis=(1, 2))
            s2[n_oc:] += (fr * fr).sum(axis=(1, 2))
            n[n_oc:] += h * w
    mean = s1 / np.maximum(n, 1)
    std = np.sqrt(np.maximum(s2 / np.maximum(n, 1) - mean**2, 0.0))
    # Floor each ocean channel's std at 1% of its variable's largest std over levels.
    for var in ("S", "U", "V", "T", "SSH"):
        sl = layout.var_slice(var)
        top = std[sl].max()
        std[sl] = np.maximum(std[sl], max(0.01 * top, 1e-6))
    std[n_oc:] = np.maximum(std[n_oc:], 1e-6)
    return mean.astype(np.float32), std.astype(np.float32), clim, harmonics
