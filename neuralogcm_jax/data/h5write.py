"""Writers of the on-disk data layout described in `neuralogcm_jax.data.h5format` (one HDF5 file
per year, the statistics as .npy files, the optional land mask). Every file is written under a
temporary name and renamed over its target once complete, so an interrupted write never leaves a
half file under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from neuralogcm_jax.data import h5format
from neuralogcm_jax.data.h5format import (
    CLIM_FILE,
    FIELDS_KEY,
    FORMAT_VERSION,
    HARMONICS_FILE,
    LAND_MASK_FILE,
    SEA_FLOOR_KEY,
    MEAN_FILE,
    STD_FILE,
)
from neuralogcm_jax.data.normalize import fit_harmonics
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout


def _atomic_target(path: Path) -> Path:
    """A temporary sibling of `path`; renamed over it only once fully written, so an interrupted
    write never leaves a half file under the final name."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _with_forcing_attr(attrs: dict | None, C: int, depth, path) -> dict:
    """`attrs` with the forcing channels' names (`h5format.FORCING_ATTR`), inferred from the
    channel count and the depths (`h5format.layout_of`; an attribute the caller gives must fit
    them). Without depths, a channel count that fits no layout is written as it is, without the
    attribute (the reader names the fault); with depths it is an error here."""
    attrs = dict(attrs or {})
    try:
        layout = h5format.layout_of(C, depth, attrs.get(h5format.FORCING_ATTR), path)
    except DataError:
        if depth is not None or h5format.FORCING_ATTR in attrs:
            raise
        return attrs
    attrs.update(h5format.layout_attrs(layout))
    return attrs


def write_year(
    path: str | os.PathLike,
    fields: np.ndarray,
    lat: Sequence[float] | None = None,
    lon: Sequence[float] | None = None,
    depth: Sequence[float] | None = None,
    *,
    attrs: dict | None = None,
) -> Path:
    """Write one year file: ``fields`` float32 ``[T, C, H, W]`` (NaN on land) plus coordinates.

    Chunked one day per chunk (a training read is a few consecutive days), uncompressed (reads are
    I/O- not CPU-bound on a 2-core host). `lat` [H] and `lon` [W] in degrees, `depth` [L] in m;
    each is stored when given. The file is written beside the target and renamed into place.
    """
    path = Path(path)
    fields = np.asarray(fields, dtype=np.float32)
    if fields.ndim != 4:
        raise DataError(f"{path}: fields must be [T, C, H, W], got shape {fields.shape}")
    T, C, H, W = fields.shape
    if lat is not None and np.shape(lat) != (H,):
        raise DataError(f"{path}: lat has shape {np.shape(lat)}, fields have {H} rows")
    if lon is not None and np.shape(lon) != (W,):
        raise DataError(f"{path}: lon has shape {np.shape(lon)}, fields have {W} columns")
    attrs = _with_forcing_attr(attrs, C, depth, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_target(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(FIELDS_KEY, data=fields, chunks=(1, C, H, W))
            if lat is not None:
                f.create_dataset("lat", data=np.asarray(lat, dtype=np.float64))
            if lon is not None:
                f.create_dataset("lon", data=np.asarray(lon, dtype=np.float64))
            if depth is not None:
                f.create_dataset("depth", data=np.asarray(depth, dtype=np.float64))
            f.attrs["format_version"] = FORMAT_VERSION
            for k, v in attrs.items():
                f.attrs[k] = v
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class YearWriter:
    """Write a year file one day at a time (a 1.5 deg year is 4 GB: too big to hold whole).

    ``with YearWriter(path, n_days, n_channels, (H, W), lat, lon, depth) as w: w.write_day(t, x)``
    with ``x`` ``[C, H, W]``. The file is renamed into place only when every day was written and
    the block exits without an error; otherwise the temporary file is removed.
    """

    def __init__(self, path, n_days, n_channels, shape, lat=None, lon=None, depth=None, attrs=None):
        self.path = Path(path)
        self.shape = (int(n_days), int(n_channels), int(shape[0]), int(shape[1]))
        self.coords = {"lat": lat, "lon": lon, "depth": depth}
        self.attrs = _with_forcing_attr(attrs, self.shape[1], depth, self.path)
        self._tmp = _atomic_target(self.path)
        self._written = np.zeros(self.shape[0], dtype=bool)
        self._f = None

    def __enter__(self) -> YearWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = h5py.File(self._tmp, "w")
        T, C, H, W = self.shape
        self._d = self._f.create_dataset(FIELDS_KEY, shape=self.shape, dtype="<f4", chunks=(1, C, H, W))
        for k, v in self.coords.items():
            if v is not None:
                self._f.create_dataset(k, data=np.asarray(v, dtype=np.float64))
        self._f.attrs["format_version"] = FORMAT_VERSION
        for k, v in self.attrs.items():
            self._f.attrs[k] = v
        return self

    def write_day(self, t: int, day: np.ndarray) -> None:
        day = np.asarray(day, dtype=np.float32)
        if day.shape != self.shape[1:]:
            raise DataError(f"{self.path}: day {t} has shape {day.shape}, expected {self.shape[1:]}")
        self._d[t] = day
        self._written[t] = True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._f.close()
            if exc_type is None:
                if not self._written.all():
                    missing = int(np.argmin(self._written))
                    raise DataError(f"{self.path}: day {missing} was never written")
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()


def write_stats(
    root: str | os.PathLike, mean: np.ndarray, std: np.ndarray, clim: np.ndarray,
    harmonics: np.ndarray | None = None,
) -> None:
    """Write ``mean`` [C], ``std`` [C], the climatology ``clim`` [366, n_ocean or C, H, W]
    (float32, NaN or 0 on land) and its harmonics [2 K + 1, same channels, H, W] (fitted from
    `clim` when None) as the four .npy files of the layout."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    clim = np.asarray(clim, dtype=np.float32)
    if mean.ndim != 1 or std.shape != mean.shape:
        raise DataError(f"{root}: mean/std must be [C] of one size, got {mean.shape}/{std.shape}")
    if clim.ndim != 4 or clim.shape[0] != 366:
        raise DataError(f"{root}: climatology must be [366, C, H, W], got shape {clim.shape}")
    if harmonics is None:
        harmonics = fit_harmonics(clim)
    harmonics = np.asarray(harmonics, dtype=np.float32)
    if harmonics.shape[1:] != clim.shape[1:] or harmonics.shape[0] % 2 != 1:
        raise DataError(
            f"{root}: harmonics must be [2 K + 1, {', '.join(map(str, clim.shape[1:]))}], got "
            f"shape {harmonics.shape}"
        )
    for name, arr in ((MEAN_FILE, mean), (STD_FILE, std), (CLIM_FILE, clim),
                      (HARMONICS_FILE, harmonics)):
        write_npy(root / name, arr)


def write_npy(target: Path, arr: np.ndarray) -> None:
    """``np.save`` to `target` atomically (a temporary file renamed into place)."""
    tmp = _atomic_target(target).with_suffix(".npy")
    try:
        np.save(tmp, arr)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_land_mask(
    root: str | os.PathLike,
    mask: np.ndarray,
    lat: Sequence[float] | None = None,
    lon: Sequence[float] | None = None,
    sea_floor_m: np.ndarray | None = None,
) -> Path:
    """Write ``land_mask.h5``: ``mask`` ``[C, H, W]`` with 1 = ocean (wet), 0 = land, and, when
    given, the real sea-floor depth ``sea_floor_m`` ``[H, W]`` (m, positive down; the depth the
    deepest level may lie above, `Grid.sea_floor_m`).

    A grid wet mask ``[L, H, W]`` is not accepted here: expand it with
    `ChannelLayout.wet_channels` first, so every channel's mask is explicit on disk."""
    path = Path(root) / LAND_MASK_FILE
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise DataError(f"{path}: land mask must be [C, H, W], got shape {mask.shape}")
    if sea_floor_m is not None and np.shape(sea_floor_m) != mask.shape[1:]:
        raise DataError(f"{path}: sea floor depth must be [H, W] = {mask.shape[1:]}, got shape "
                        f"{np.shape(sea_floor_m)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_target(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(FIELDS_KEY, data=mask.astype(np.float32))
            if lat is not None:
                f.create_dataset("lat", data=np.asarray(lat, dtype=np.float64))
            if lon is not None:
                f.create_dataset("lon", data=np.asarray(lon, dtype=np.float64))
            if sea_floor_m is not None:
                f.create_dataset(SEA_FLOOR_KEY, data=np.asarray(sea_floor_m, dtype=np.float32))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
