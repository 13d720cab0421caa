"""The on-disk data layout and a reader that validates a data root before training (the writers
are in `neuralogcm_jax.data.h5write`).

Layout (described in `docs/design.md`, "Data layout")::

    ROOT/
      train/1993.h5 ... valid/2018.h5 ... test/2020.h5   one file per year
      mean_s_t_ssh.npy          [C]        per-channel mean
      std_s_t_ssh.npy           [C]        per-channel standard deviation
      climate_mean_s_t_ssh.npy  [366, n_ocean or C, H, W]  day-of-year climatology
      climate_harmonics_s_t_ssh.npy  [2 K + 1, n_ocean, H, W]  its compact form (optional:
                                fitted from the 366-day table on load when missing; see
                                `neuralogcm_jax.data.normalize`)
      land_mask.h5              optional, dataset ``fields`` [C, H, W], 1 = ocean (wet), 0 = land;
                                optional dataset ``sea_floor_m`` [H, W], the real sea-floor depth
                                (m, positive down), `Grid.sea_floor_m`

Each year file holds the dataset ``fields``: float32 ``[T, C, H, W]`` daily means, ``T`` = 365, or
366 in leap years, channels in `neuralogcm_jax.layout` order, NaN on land. Files written here also
carry the coordinates ``lat`` [H] (deg), ``lon`` [W] (deg) and ``depth`` [L] (m); files without
them are read on these assumptions (documented, never flipped behind the caller's back):

* 120 rows, and any other ``H`` except 121 (a regular global grid): centres
  ``90 - (j + 1/2) 180 / H``, north to south, as in the NeuralOGCM 1.5 deg files;
* 121 rows: ``90 .. -90`` with a pole row at each end (the other 1.5 deg variant of this lineage);
* longitudes ``(i + 1/2) 360 / W`` for ``H`` rows off the poles, ``i 360 / W`` on the 121-row variant
  (the pole-row grids of this lineage start at Greenwich);
* depths: the first ``L`` GLORYS12 levels of `GLORYS23_DEPTHS_M`, ``L = (C - 5) / 4``;
* forcing: the file attribute ``forcing_variables`` names the forcing channels (``"u10 v10 t2m
  msl"``, or with the optional freshwater channels ``"u10 v10 t2m msl e tp"``, see
  `neuralogcm_jax.layout`); without it, ``C = 4 L + 5`` has the four and ``C = 4 L + 7`` all six
  (the two counts never coincide).

The land mask of the land_mask.h5 file is multiplied into fields by the sibling loaders, hence
1 = ocean. Without it, the wet mask is the finite pattern of the first day of the first file; the
NaN check then verifies every sampled day against it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from neuralogcm_jax.calendar import days_in_year
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import DataError, GridError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid
from neuralogcm_jax.layout import (
    FORCING_VARIABLES,
    FRESHWATER_VARIABLES,
    OCEAN_3D_VARIABLES,
    ChannelLayout,
)
from neuralogcm_jax.paths import check_local

FIELDS_KEY = "fields"
MEAN_FILE = "mean_s_t_ssh.npy"
STD_FILE = "std_s_t_ssh.npy"
CLIM_FILE = "climate_mean_s_t_ssh.npy"
HARMONICS_FILE = "climate_harmonics_s_t_ssh.npy"
LAND_MASK_FILE = "land_mask.h5"
SEA_FLOOR_KEY = "sea_floor_m"  # in LAND_MASK_FILE, optional
FORCING_ATTR = "forcing_variables"  # attribute of a year file: its forcing channels' names
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1

_YEAR_RE = re.compile(r"^(\d{4})\.h5$")


# ====================================================================== default coordinates
def default_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates assumed for files without ``lat``/``lon`` datasets (see module docstring)."""
    if h == 121:
        # A pole row at each end: the 121-row 1.5 deg variant.
        lat = np.linspace(90.0, -90.0, h)
        lon = np.arange(w) * (360.0 / w)
    else:
        res = 180.0 / h
        lat = 90.0 - res * (np.arange(h) + 0.5)
        lon = (np.arange(w) + 0.5) * (360.0 / w)
    return lat, lon


def layout_of(C: int, depth, forcing_attr, where) -> ChannelLayout:
    """The channel layout of a year file: `C` channels, its ``depth`` [L] (or None: the first
    GLORYS levels) and its ``forcing_variables`` attribute (or None: inferred from `C`, see the
    module docstring). `DataError` naming `where` when they do not fit together."""
    if forcing_attr is not None:
        if isinstance(forcing_attr, bytes):
            forcing_attr = forcing_attr.decode()
        names = str(forcing_attr).split()
        if names == list(FORCING_VARIABLES):
            freshwater = False
        elif names == list(FORCING_VARIABLES + FRESHWATER_VARIABLES):
            freshwater = True
        else:
            raise DataError(
                f"{where}: attribute {FORCING_ATTR!r} is {forcing_attr!r}; known are "
                f"{' '.join(FORCING_VARIABLES)!r} and "
                f"{' '.join(FORCING_VARIABLES + FRESHWATER_VARIABLES)!r}")
    elif depth is not None:
        freshwater = C == 4 * len(depth) + 5 + len(FRESHWATER_VARIABLES)
    else:
        freshwater = (C - 5) % 4 != 0
    extra = 5 + (len(FRESHWATER_VARIABLES) if freshwater else 0)
    if depth is not None:
        if C != 4 * len(depth) + extra:
            raise DataError(
                f"{where}: {C} channels in {FIELDS_KEY}, but {len(depth)} depth levels "
                f"{'with' if freshwater else 'without'} freshwater forcing make "
                f"{4 * len(depth) + extra}")
        return ChannelLayout(tuple(depth), freshwater)
    if (C - extra) % 4 or C < 4 + extra:
        raise DataError(f"{where}: {C} channels is not 4 L + 5 (or 4 L + 7 with the freshwater "
                        f"forcing) for any number of levels L")
    n_levels = (C - extra) // 4
    if n_levels > len(GLORYS23_DEPTHS_M):
        raise DataError(
            f"{where}: {n_levels} levels and no 'depth' dataset; only up to "
            f"{len(GLORYS23_DEPTHS_M)} GLORYS levels are known")
    return ChannelLayout.with_levels(n_levels, freshwater=freshwater)


def layout_attrs(layout: ChannelLayout) -> dict:
    """The year-file attributes that describe `layout`'s forcing channels."""
    return {FORCING_ATTR: " ".join(layout.forcing_variables)}


# ====================================================================== reader
@dataclasses.dataclass(frozen=True)
class YearFile:
    """One yearly file of a split: calendar year, path, number of days (365/366)."""

    year: int
    path: Path
    n_days: int


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """The yearly files of one split, consecutive years in order."""

    name: str
    files: tuple[YearFile, ...]

    @property
    def years(self) -> list[int]:
        return [f.year for f in self.files]

    @property
    def n_days(self) -> int:
        """Total days in the split (leap days included)."""
        return sum(f.n_days for f in self.files)

    @property
    def day_offsets(self) -> np.ndarray:
        """``[n_files + 1]`` int64: global day index at which each file starts (last = total)."""
        return np.concatenate([[0], np.cumsum([f.n_days for f in self.files])]).astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class DataRoot:
    """A validated data root: where everything is, and what it describes.

    Attributes:
      root: the folder.
      layout: channel layout of the files.
      grid: the grid read from the files (orientation as stored), wet mask from the land mask.
      wet_channels: ``[C, H, W]`` bool, per-channel wet mask (forcing channels all True).
      splits: name -> `SplitInfo` for every split that was opened.
      has_land_mask: whether ``land_mask.h5`` was present (else the mask came from the data).
    """

    root: Path
    layout: ChannelLayout
    grid: Grid
    wet_channels: np.ndarray
    splits: dict[str, SplitInfo]
    has_land_mask: bool

    def split(self, name: str) -> SplitInfo:
        if name not in self.splits:
            raise DataError(f"{self.root}: split {name!r} was not opened; have {sorted(self.splits)}")
        return self.splits[name]

    @property
    def stats_paths(self) -> tuple[Path, Path, Path, Path]:
        return (self.root / MEAN_FILE, self.root / STD_FILE, self.root / CLIM_FILE,
                self.root / HARMONICS_FILE)

    def load_stats(self):
        """The `Stats` of this root (see `load_stats`)."""
        return load_stats(self.root, self.layout, self.wet_channels)


# Alias under the name the design uses for the dataset description.
DatasetInfo = DataRoot


def load_stats(root: str | os.PathLike, layout: ChannelLayout, wet_channels: np.ndarray,
               *, progress: bool = True):
    """Read the stats of a data root: its climatology harmonics, or, for a root written before
    they existed, a fit of its 366-day climatology (memory-mapped, read one channel at a time,
    with a progress bar)."""
    root = Path(root)
    mean, std, clim, harmonics = _read_stats_arrays(root)
    where = root / (HARMONICS_FILE if harmonics is not None else CLIM_FILE)
    try:
        return Stats.build(
            mean, std, clim if harmonics is None else None, wet_channels, layout,
            harmonics=harmonics, progress=progress,
        )
    except DataError as e:
        raise DataError(f"{where}: {e}") from None


def _load_npy(p: Path, required: bool = True):
    if not p.is_file():
        if required:
            raise DataError(f"{p}: statistics file is missing")
        return None
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{p}: not a readable .npy file ({e})") from None


def _read_stats_arrays(root: Path):
    """``(mean, std, clim or None, harmonics or None)``: the 366-day climatology (memory map) is
    required only when the harmonics file is missing."""
    mean = _load_npy(root / MEAN_FILE)
    std = _load_npy(root / STD_FILE)
    harmonics = _load_npy(root / HARMONICS_FILE, required=False)
    clim = _load_npy(root / CLIM_FILE, required=harmonics is None)
    if harmonics is not None:
        harmonics = np.asarray(harmonics, dtype=np.float32)
    return np.asarray(mean), np.asarray(std), clim, harmonics


def _open_h5(path: Path):
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot open as HDF5 (truncated or corrupt?): {e}") from None


def _fields(f, path: Path):
    if FIELDS_KEY not in f:
        raise DataError(f"{path}: no dataset {FIELDS_KEY!r} (keys: {sorted(f.keys())})")
    d = f[FIELDS_KEY]
    if d.ndim != 4:
        raise DataError(f"{path}: dataset {FIELDS_KEY!r} has shape {d.shape}, expected [T, C, H, W]")
    return d


def _read(d, sel, path: Path) -> np.ndarray:
    try:
        return np.asarray(d[sel], dtype=np.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: read of {FIELDS_KEY}[{sel}] failed (truncated or corrupt?): {e}") from None


def read_days(path: Path, days: slice, n_channels: int) -> np.ndarray:
    """``fields[days, :n_channels]`` of one year file as float32 ``[T, C, H, W]``; a missing,
    corrupt or truncated file -> one DataError naming it."""
    with _open_h5(Path(path)) as f:
        return _read(_fields(f, Path(path)), (days, slice(0, n_channels)), Path(path))


def list_split(root: Path, split: str) -> list[tuple[int, Path]]:
    """``(year, path)`` of every ``YEAR.h5`` in a split folder, sorted; errors on a missing or
    empty folder and on .h5 files not named after a year."""
    d = root / split
    if not d.is_dir():
        raise DataError(f"{d}: split folder {split!r} is missing")
    out = []
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            continue
        if p.suffix == ".h5":
            m = _YEAR_RE.match(p.name)
            if not m:
                raise DataError(f"{p}: yearly files must be named YEAR.h5 (e.g. 1993.h5)")
            out.append((int(m.group(1)), p))
    if not out:
        raise DataError(f"{d}: split {split!r} holds no YEAR.h5 files")
    out.sort()
    years = [y for y, _ in out]
    for a, b in zip(years[:-1], years[1:]):
        if b != a + 1:
            missing = ", ".join(str(y) for y in range(a + 1, b))
            raise DataError(f"{d}: split {split!r} has a year gap: {missing} missing between {a} and {b}")
    return out


def _sample_days(n_days: int, n_sample: int) -> list[int]:
    if n_sample <= 0:
        return []
    if n_sample >= n_days:
        return list(range(n_days))
    # First and last days always (year ends are where writers fail), the rest spread evenly.
    return sorted({int(round(x)) for x in np.linspace(0, n_days - 1, n_sample)})


def _first_bad(bad: np.ndarray, layout: ChannelLayout) -> tuple[tuple[int, ...], int, str]:
    """Of a mask ``[..., C, H, W]`` with a True cell: the leading indices and channel of the first
    one, and ``"first at channel c (name), row j, column i"`` for the error message."""
    *lead, c, j, i = (int(v) for v in np.argwhere(bad)[0])
    return tuple(lead), c, f"first at channel {c} ({layout.channel_names[c]}), row {j}, column {i}"


def _check_day(day: np.ndarray, wet: np.ndarray, layout: ChannelLayout, path: Path, t: int) -> None:
    """NaN in an ocean cell of an ocean channel, or anywhere in a forcing channel -> DataError."""
    bad = ~np.isfinite(day) & wet
    if bad.any():
        _, c, where = _first_bad(bad, layout)
        kind = "forcing" if c >= layout.n_ocean else "ocean"
        raise DataError(f"{path}: day {t}: non-finite value in {int(bad.sum())} {kind} cell(s), {where}")


def open_dataset(
    root: str | os.PathLike,
    layout: ChannelLayout | None = None,
    *,
    splits: Sequence[str] | None = None,
    nan_check_days: int = 3,
    full_nan_check: bool = False,
    require_stats: bool = True,
) -> DataRoot:
    """Open and validate a data root before any training.

    Checks, each failing with a `DataError` naming the file and the fault: missing split folder,
    empty split, file names, year gaps, unreadable (truncated/corrupt) HDF5, missing ``fields``,
    day count (365/366 by calendar year), channel count (against `layout`, or consistent with
    ``4 L + 5``), grid shape and coordinates equal in every file, land mask shape, stats shapes
    against the data, and NaN in ocean cells on `nan_check_days` days per file (first, last and
    evenly between; every day with `full_nan_check`).

    `splits`: the splits to open (each must exist); None opens those of train/valid/test present
    (at least one). `layout`: None infers it from the channel count and the ``depth`` dataset.
    """
    check_local(root, "data root")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a folder")
    if splits is None:
        splits = [s for s in SPLITS if (root / s).is_dir()]
        if not splits:
            raise DataError(f"{root}: no split folder (expected some of {', '.join(SPLITS)})")
    listed = {s: list_split(root, s) for s in splits}

    # -- shapes and coordinates, from headers only (cheap)
    ref = None  # (path, C, H, W, lat, lon, depth)
    infos: dict[str, list[YearFile]] = {}
    for s, entries in listed.items():
        infos[s] = []
        for year, path in entries:
            with _open_h5(path) as f:
                d = _fields(f, path)
                T, C, H, W = d.shape
                lat = np.asarray(f["lat"][()], np.float64) if "lat" in f else None
                lon = np.asarray(f["lon"][()], np.float64) if "lon" in f else None
                depth = np.asarray(f["depth"][()], np.float64) if "depth" in f else None
                forcing_attr = f.attrs.get(FORCING_ATTR)
            if T != days_in_year(year):
                raise DataError(
                    f"{path}: {T} days in {FIELDS_KEY} {(T, C, H, W)}, year {year} has "
                    f"{days_in_year(year)}"
                )
            if ref is None:
                file_layout = layout_of(C, depth, forcing_attr, path)
                ref = (path, C, H, W, lat, lon, depth, file_layout)
                if layout is not None and C != layout.n_channels:
                    raise DataError(
                        f"{path}: {C} channels in {FIELDS_KEY} {(T, C, H, W)}, the layout "
                        f"expects {layout.n_channels} ({layout.describe()})"
                    )
            else:
                rpath, rC, rH, rW, rlat, rlon, rdepth, _ = ref
                if C != rC:
                    raise DataError(
                        f"{path}: {C} channels in {FIELDS_KEY} {(T, C, H, W)}, {rpath} has {rC}"
                    )
                layout_of(C, depth, forcing_attr, path)  # its attribute fits its channels
                if (H, W) != (rH, rW):
                    raise DataError(
                        f"{path}: grid {H}x{W} in {FIELDS_KEY} {(T, C, H, W)}, {rpath} has {rH}x{rW}"
                    )
                for name, a, b in (("lat", lat, rlat), ("lon", lon, rlon), ("depth", depth, rdepth)):
                    if (a is None) != (b is None) or (a is not None and not np.allclose(a, b)):
                        raise DataError(
                            f"{path}: coordinate {name!r} differs from {rpath} (orientation or "
                            f"grid change within the data root)"
                        )
            infos[s].append(YearFile(year, path, T))
    assert ref is not None
    rpath, C, H, W, lat, lon, depth, file_layout = ref

    # -- layout
    if layout is None:
        layout = file_layout
    elif depth is not None and not np.allclose(depth, layout.depths_m, rtol=1e-4):
        raise DataError(f"{rpath}: depth levels {depth.tolist()} differ from the layout's")

    # -- coordinates
    if lat is None or lon is None:
        dlat, dlon = default_coords(H, W)
        lat = dlat if lat is None else lat
        lon = dlon if lon is None else lon

    # -- wet mask
    mask_path = root / LAND_MASK_FILE
    has_mask = mask_path.is_file()
    sea_floor = None
    if has_mask:
        with _open_h5(mask_path) as f:
            if FIELDS_KEY not in f:
                raise DataError(f"{mask_path}: no dataset {FIELDS_KEY!r}")
            m = _read(f[FIELDS_KEY], (), mask_path)
            mlat = np.asarray(f["lat"][()]) if "lat" in f else None
            if SEA_FLOOR_KEY in f:
                sea_floor = _read(f[SEA_FLOOR_KEY], (), mask_path)
        if m.shape != (C, H, W):
            raise DataError(f"{mask_path}: land mask has shape {m.shape}, data is {(C, H, W)}")
        if mlat is not None and not np.allclose(mlat, lat):
            raise DataError(f"{mask_path}: 'lat' differs from the data's (flipped orientation?)")
        wet_ch = np.nan_to_num(m) > 0.5
        wet_ch[layout.n_ocean :] = True
    else:
        with _open_h5(rpath) as f:
            first = _read(_fields(f, rpath), 0, rpath)
        wet_ch = np.isfinite(first)
        wet_ch[layout.n_ocean :] = True
    L = layout.n_levels
    wet_levels = np.ones((L, H, W), dtype=bool)
    for v in OCEAN_3D_VARIABLES:
        wet_levels &= wet_ch[layout.var_slice(v)]
    try:
        grid = Grid.from_coords(lat, lon, layout.depths_m, wet_levels)
    except GridError as e:
        raise DataError(f"{rpath}: coordinates do not describe a global grid: {e}") from None
    if sea_floor is not None:
        try:
            grid = grid.with_sea_floor(sea_floor)
        except GridError as e:
            raise DataError(f"{mask_path}: dataset {SEA_FLOOR_KEY!r}: {e}") from None

    # -- stats
    if require_stats:
        mean, std, clim, harmonics = _read_stats_arrays(root)
        for name, arr in ((MEAN_FILE, mean), (STD_FILE, std)):
            if arr.shape != (C,):
                raise DataError(f"{root / name}: shape {arr.shape}, the data has {C} channels")
        bad = ~(np.isfinite(std) & (std > 0))
        if bad.any():
            c = int(np.argmax(bad))
            raise DataError(f"{root / STD_FILE}: std of channel {c} is {std[c]}, must be > 0")
        n = layout.n_ocean
        if harmonics is not None:
            h = harmonics
            ok = h.ndim == 4 and h.shape[0] % 2 == 1 and h.shape[1] in (n, C)
            if not ok or h.shape[2:] != (H, W):
                raise DataError(
                    f"{root / HARMONICS_FILE}: shape {h.shape}, expected [2 K + 1, {n} or {C}, "
                    f"{H}, {W}] to match the data"
                )
            bad = ~np.isfinite(h[:, :n]) & wet_ch[None, :n]
            if bad.any():
                (k,), _, where = _first_bad(bad, layout)
                raise DataError(
                    f"{root / HARMONICS_FILE}: non-finite harmonic {k} in {int(bad.sum())} ocean "
                    f"cell(s), {where}"
                )
        if clim is not None:
            ok = clim.ndim == 4 and clim.shape[0] == 366 and clim.shape[1] in (n, C)
            if not ok or clim.shape[2:] != (H, W):
                raise DataError(
                    f"{root / CLIM_FILE}: shape {clim.shape}, expected [366, {n} or {C}, "
                    f"{H}, {W}] to match the data"
                )
        if harmonics is None:
            # The climatology must be finite on ocean cells (NaN or anything on land): two days.
            for d in (0, 365):
                day = np.asarray(clim[d, :n], dtype=np.float32)
                bad = ~np.isfinite(day) & wet_ch[:n]
                if bad.any():
                    raise DataError(
                        f"{root / CLIM_FILE}: day of year {d}: non-finite climatology in "
                        f"{int(bad.sum())} ocean cell(s), {_first_bad(bad, layout)[2]}"
                    )

    # -- NaN in ocean cells (a sample of days, or all)
    for s, files in infos.items():
        for yf in files:
            days = range(yf.n_days) if full_nan_check else _sample_days(yf.n_days, nan_check_days)
            if not days:
                continue
            with _open_h5(yf.path) as f:
                d = _fields(f, yf.path)
                for t in days:
                    _check_day(_read(d, t, yf.path), wet_ch, layout, yf.path, t)

    return DataRoot(
        root=root,
        layout=layout,
        grid=grid,
        wet_channels=wet_ch,
        splits={s: SplitInfo(s, tuple(v)) for s, v in infos.items()},
        has_land_mask=has_mask,
    )


__all__ = [
    "DataRoot",
    "DatasetInfo",
    "SplitInfo",
    "YearFile",
    "days_in_year",
    "default_coords",
    "list_split",
    "load_stats",
    "open_dataset",
]
