"""``neuralogcm convert-glorys``: GLORYS12 ocean and ERA5 atmosphere netCDF -> the HDF5 layout.

Inputs (any number of files each, split by time and/or by variable as the services deliver them):

* GLORYS12 (Copernicus Marine): ``thetao`` (degC), ``so`` (psu), ``uo``, ``vo`` (m/s) on
  ``(time, depth, latitude, longitude)``, ``zos`` (m) on ``(time, latitude, longitude)``; daily
  means, NaN (masked) on land, latitudes south to north, longitudes -180 .. 180.
* ERA5 (Copernicus CDS): ``u10``, ``v10`` (m/s), ``t2m`` (K), ``msl`` (Pa) on
  ``(time or valid_time, latitude, longitude)``, latitudes north to south, longitudes 0 .. 360;
  hourly, sub-daily or daily: every value falling on a calendar date is averaged into that day.
  With a freshwater layout (``--freshwater``) also ``e`` (evaporation) and ``tp`` (total
  precipitation), accumulations in m of water over `era5_accumulation_hours` (1 for ERA5's hourly
  data, whose value at hh:00 accumulates the hour before it): the day's total is the mean of the
  values falling on the date times ``24 / era5_accumulation_hours`` (ECMWF's signs kept: ``e`` is
  negative where water evaporates).

* optionally the GLORYS12 static file (``GLO-MFC_001_030_mask_bathy.nc``): ``deptho`` (m), the
  sea-floor depth on ``(latitude, longitude)``, NaN on land, regridded as the mean over the
  ocean under each target cell into ``land_mask.h5``'s ``sea_floor_m`` (`Grid.sea_floor_m`).

Output: ``OUT/SPLIT/YEAR.h5`` (`h5write.write_year` layout, coordinates stored), ``land_mask.h5``,
and for the training split the statistics (`compute_stats`).

Regridding is first-order conservative (area-weighted block averaging): a target cell takes the
average of the source cells it overlaps, each weighted by the overlapping area on the sphere
(``d(sin lat) d(lon)``), over the valid (non-NaN) source cells only; the cell is ocean when at least
`wet_fraction` (default 0.5) of its area is valid ocean in the source, and NaN otherwise. This is the
right operator for coarsening 1/12 deg to 1.5 deg (it conserves area integrals; bilinear sampling
would alias the eddies of the source into the coarse grid). It is separable on regular lat-lon
grids: two sparse overlap matrices per source grid, applied as ``A_lat @ x @ A_lon^T``.

Vertically, each target level takes the nearest GLORYS level (the default 23 levels are GLORYS12
levels, so this is exact; a level more than 5 % away is an error), or with ``--vertical linear``
linear interpolation in depth between the two bracketing levels (NaN where either is land).
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neuralogcm_jax.calendar import year_dates
from neuralogcm_jax.data import h5format, normalize
from neuralogcm_jax.data import h5write
from neuralogcm_jax.errors import ConfigError, DataError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import (
    FORCING_VARIABLES,
    FRESHWATER_VARIABLES,
    OCEAN_3D_VARIABLES,
    ChannelLayout,
)

# layout variable -> GLORYS12 variable name
GLORYS_VARIABLES = {"S": "so", "U": "uo", "V": "vo", "T": "thetao", "SSH": "zos"}
ERA5_VARIABLES = FORCING_VARIABLES  # u10, v10, t2m, msl: same names in the files
ERA5_ACCUMULATED = FRESHWATER_VARIABLES  # e, tp: accumulations (m of water), same names
_TIME_NAMES = ("time", "valid_time")
_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon")


# ====================================================================== conservative regridding
def cell_edges(centres: np.ndarray, *, clip_lat: bool = False) -> np.ndarray:
    """Edges ``[n+1]`` of cells centred at `centres` (either order): midpoints inside, the outer
    edges half a step beyond the end centres (clipped to +-90 for latitudes)."""
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise DataError(f"coordinate must be 1-D with at least 2 points, got shape {c.shape}")
    mid = 0.5 * (c[1:] + c[:-1])
    edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.clip(edges, -90.0, 90.0) if clip_lat else edges


def _overlap(src_lo, src_hi, tgt_lo, tgt_hi) -> np.ndarray:
    """``[n_tgt, n_src]`` length of the overlap of target and source intervals (lo < hi)."""
    lo = np.maximum(tgt_lo[:, None], src_lo[None, :])
    hi = np.minimum(tgt_hi[:, None], src_hi[None, :])
    return np.maximum(hi - lo, 0.0)


def _sparse(a: np.ndarray):
    """`a` as a scipy CSR matrix, or the dense array itself where scipy (an optional dependency,
    needed only for large grids) is not installed: `ConservativeRegridder` works with either."""
    try:
        import scipy.sparse as sp  # optional dependency (the xarray extra)
    except ImportError:  # pragma: no cover - scipy is in the test extra
        return a
    return sp.csr_matrix(a)


def lat_overlap_matrix(src_lat: np.ndarray, tgt_lat: np.ndarray):
    """Sparse ``[H_tgt, H_src]``: overlap of cells in ``sin(lat)`` (area per unit longitude)."""
    se = np.sin(np.deg2rad(cell_edges(src_lat, clip_lat=True)))
    te = np.sin(np.deg2rad(cell_edges(tgt_lat, clip_lat=True)))
    a = _overlap(np.minimum(se[:-1], se[1:]), np.maximum(se[:-1], se[1:]),
                 np.minimum(te[:-1], te[1:]), np.maximum(te[:-1], te[1:]))
    return _sparse(a)


def lon_overlap_matrix(src_lon: np.ndarray, tgt_lon: np.ndarray):
    """Sparse ``[W_tgt, W_src]``: overlap of cells in degrees of longitude, periodic in 360."""
    se = cell_edges(src_lon)
    te = cell_edges(tgt_lon)
    if np.any(np.diff(se) <= 0) or np.any(np.diff(te) <= 0):
        raise DataError("longitudes must increase monotonically")
    # Bring the source into [t0, t0 + 360) and also count the copies one turn either side, so cells
    # straddling the seam (e.g. -180/180 against 0/360 conventions) are split correctly.
    shift = np.floor((se[0] - te[0]) / 360.0) * 360.0
    lo, hi = se[:-1] - shift, se[1:] - shift
    a = sum(_overlap(lo + k, hi + k, te[:-1], te[1:]) for k in (-360.0, 0.0, 360.0))
    return _sparse(a)


class ConservativeRegridder:
    """Area-weighted block averaging from one regular lat-lon grid to another (see module doc).

    ``regrid(x)`` takes ``[H_src, W_src]`` (NaN = no data) and returns the target mean
    ``[H_tgt, W_tgt]`` (NaN where less than `wet_fraction` of the cell is covered by valid data)."""

    def __init__(self, src_lat, src_lon, tgt_lat, tgt_lon, *, wet_fraction: float = 0.5):
        self.a_lat = lat_overlap_matrix(src_lat, tgt_lat)
        self.a_lon = lon_overlap_matrix(src_lon, tgt_lon)
        te = np.sin(np.deg2rad(cell_edges(tgt_lat, clip_lat=True)))
        self.tgt_area = np.abs(np.diff(te))[:, None] * np.diff(cell_edges(tgt_lon))[None, :]
        self.src_shape = (len(src_lat), len(src_lon))
        self.wet_fraction = float(wet_fraction)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        # (A_lat @ x) @ A_lon^T, with the sparse factor on the left of each product.
        return np.asarray(self.a_lon @ np.asarray(self.a_lat @ x).T).T

    def fraction(self, valid: np.ndarray) -> np.ndarray:
        """``[H_tgt, W_tgt]``: fraction of each target cell's area covered by valid source cells."""
        return self._apply(valid.astype(np.float64)) / self.tgt_area

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.src_shape:
            raise DataError(f"field of shape {x.shape} given to a regridder for {self.src_shape}")
        valid = np.isfinite(x)
        num = self._apply(np.where(valid, x, 0.0))
        den = self._apply(valid.astype(np.float64))
        frac = den / self.tgt_area
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num / den
        return np.where(frac >= self.wet_fraction - 1e-9, out, np.nan)


# ====================================================================== reading netCDF by date
def _xarray():
    try:
        import xarray  # optional dependency (the xarray extra)
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ConfigError(
            "convert-glorys needs the optional extra 'xarray' (pip install xarray netCDF4)"
        ) from e
    return xarray


def _find(ds, names, path, what):
    for n in names:
        if n in ds.variables or n in ds.dims:
            return n
    raise DataError(f"{path}: no {what} coordinate (looked for {', '.join(names)})")


def _open_netcdf(p: Path, kind: str):
    """The xarray dataset of the file `p` (a `kind` input); DataError naming it if it is missing
    or not netCDF."""
    xr = _xarray()
    if not p.is_file():
        raise DataError(f"{p}: {kind} file not found")
    try:
        return xr.open_dataset(p)
    except Exception as e:  # netCDF libraries raise many kinds
        raise DataError(f"{p}: cannot open as netCDF: {e}") from None


def read_sea_floor(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """The GLORYS12 sea-floor depth ``deptho`` of `path` on `grid` ``[H, W]`` (m): the mean over
    the valid source cells each target cell overlaps, 0 where it overlaps none (land)."""
    p = Path(path)
    with _open_netcdf(p, "GLORYS bathymetry") as ds:
        if "deptho" not in ds.variables:
            raise DataError(f"{p}: no variable 'deptho' (the sea-floor depth of GLORYS12's static "
                            f"file GLO-MFC_001_030_mask_bathy.nc)")
        lat = np.asarray(ds[_find(ds, _LAT_NAMES, p, "latitude")].values, np.float64)
        lon = np.asarray(ds[_find(ds, _LON_NAMES, p, "longitude")].values, np.float64)
        d = np.asarray(ds["deptho"].values, np.float64)
    d = d.reshape(d.shape[-2:]) if d.ndim > 2 and np.prod(d.shape[:-2]) == 1 else d
    if d.shape != (lat.size, lon.size):
        raise DataError(f"{p}: 'deptho' has shape {d.shape}, expected (latitude, longitude) = "
                        f"{(lat.size, lon.size)}")
    if np.any(d[np.isfinite(d)] < 0):
        raise DataError(f"{p}: 'deptho' has negative depths (expected m, positive down)")
    out = ConservativeRegridder(lat, lon, grid.lat, grid.lon, wet_fraction=1e-9)(d)
    return np.nan_to_num(out, nan=0.0)


class _Source:
    """Every time step of a set of variables across files, indexed by calendar date."""

    def __init__(self, paths, variables, kind: str):
        _xarray()  # the missing extra is named before anything else
        self.kind = kind
        self.datasets = []
        # var -> date -> [(dataset index, time index)]
        self.index: dict[str, dict[np.datetime64, list]] = {v: defaultdict(list) for v in variables}
        self.coords: dict[str, tuple] = {}
        self._cache: OrderedDict = OrderedDict()
        self._cache_bytes = 0
        self._block_steps: dict[tuple, int] = {}
        for p in paths:
            p = Path(p)
            ds = _open_netcdf(p, kind)
            k = len(self.datasets)
            self.datasets.append((p, ds))
            tname = _find(ds, _TIME_NAMES, p, "time")
            lat = np.asarray(ds[_find(ds, _LAT_NAMES, p, "latitude")].values, np.float64)
            lon = np.asarray(ds[_find(ds, _LON_NAMES, p, "longitude")].values, np.float64)
            times = np.asarray(ds[tname].values)
            if not np.issubdtype(times.dtype, np.datetime64):
                raise DataError(f"{p}: time coordinate {tname!r} is not decodable to dates")
            dates = times.astype("datetime64[D]")
            for v in variables:
                if v not in ds.variables:
                    continue
                if v in self.coords and not (
                    np.array_equal(self.coords[v][0], lat) and np.array_equal(self.coords[v][1], lon)
                ):
                    raise DataError(f"{p}: {v} is on another grid than in {self.coords[v][2]}")
                self.coords.setdefault(v, (lat, lon, p))
                for i, d in enumerate(dates):
                    self.index[v][d].append((k, i, tname))
        for v in variables:
            if v not in self.coords:
                names = ", ".join(str(p) for p, _ in self.datasets)
                raise DataError(f"{kind} variable {v!r} is in none of the files: {names}")

    def check_dates(self, dates) -> None:
        for v, by_date in self.index.items():
            for d in dates:
                if d not in by_date:
                    raise DataError(f"{self.kind} variable {v!r} has no data for {d} in the files given")

    # Reads come in blocks of consecutive time steps of one variable and level, at most
    # _BLOCK_BYTES each (one step of a 1/12 deg GLORYS level is 35 MB, so one step there; many
    # steps on small grids), kept in an LRU of at most _CACHE_BYTES: this amortises the per-call
    # overhead of netCDF reads without ever holding more than a bounded amount.
    _BLOCK_BYTES = 16 << 20
    _CACHE_BYTES = 512 << 20

    def _step(self, k: int, var: str, tname: str, i: int, level, depth_name: str) -> np.ndarray:
        n = self._block_steps.get((k, var))
        if n is not None:
            key = (k, var, level, (i // n) * n)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][i - key[3]]
        p, ds = self.datasets[k]
        da = ds[var]
        shape = [da.sizes[d] for d in da.dims if d in _LAT_NAMES + _LON_NAMES]
        n = max(1, self._BLOCK_BYTES // (8 * int(np.prod(shape))))
        self._block_steps[(k, var)] = n
        b0 = (i // n) * n
        key = (k, var, level, b0)
        cache = self._cache
        sel = {tname: slice(b0, min(b0 + n, da.sizes[tname]))}
        if level is not None:
            if depth_name not in da.dims:
                raise DataError(f"{p}: {var} has no {depth_name!r} dimension (dims {da.dims})")
            sel[depth_name] = level
        da = da.isel(sel)
        for extra in [d for d in da.dims if d not in _LAT_NAMES + _LON_NAMES + (tname,)]:
            if da.sizes[extra] != 1:
                raise DataError(f"{p}: {var} has an extra dimension {extra!r} of size {da.sizes[extra]}")
            da = da.isel({extra: 0})
        block = np.asarray(da.transpose(tname, ...).values, dtype=np.float64)
        cache[key] = block
        self._cache_bytes += block.nbytes
        while self._cache_bytes > self._CACHE_BYTES and len(cache) > 1:
            _, old = cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return block[i - b0]

    def daily_mean(self, var: str, date, level: int | None = None, depth_name: str = "depth") -> np.ndarray:
        """Mean over the day's time steps of `var` (at source `level`), ``[lat, lon]`` float64."""
        entries = self.index[var][date]
        acc = None
        for k, i, tname in entries:
            x = self._step(k, var, tname, i, level, depth_name)
            acc = x.copy() if acc is None else acc + x
        return acc / len(entries)

    def depths(self, var: str) -> np.ndarray:
        p = self.coords[var][2]
        ds = dict(self.datasets)[p]
        if "depth" not in ds.variables:
            raise DataError(f"{p}: {var} needs a 'depth' coordinate")
        return np.asarray(ds["depth"].values, np.float64)

    def close(self) -> None:
        for _, ds in self.datasets:
            ds.close()


def vertical_weights(src_depth: np.ndarray, tgt_depth, mode: str) -> list[list[tuple[int, float]]]:
    """Per target level, ``[(source level, weight), ...]`` (nearest: one level of weight 1)."""
    src = np.asarray(src_depth, np.float64)
    out = []
    for z in tgt_depth:
        if mode == "nearest":
            k = int(np.argmin(np.abs(src - z)))
            if abs(src[k] - z) > 0.05 * z:
                raise DataError(
                    f"no GLORYS level near {z} m (nearest {src[k]} m); use --vertical linear"
                )
            out.append([(k, 1.0)])
        elif mode == "linear":
            if z < src[0] - 1e-6 or z > src[-1] + 1e-6:
                raise DataError(f"level {z} m outside the GLORYS levels {src[0]} .. {src[-1]} m")
            k = int(np.clip(np.searchsorted(src, z) - 1, 0, src.size - 2))
            w = float((z - src[k]) / (src[k + 1] - src[k]))
            out.append([(k, 1.0 - w), (k + 1, w)] if w > 1e-9 else [(k, 1.0)])
        else:
            raise ConfigError(f"vertical mode {mode!r}: use 'nearest' or 'linear'")
    return out


# ====================================================================== conversion
def convert(
    glorys: list[str | os.PathLike],
    era5: list[str | os.PathLike],
    out: str | os.PathLike,
    years: list[int],
    split: str,
    *,
    grid: Grid | None = None,
    layout: ChannelLayout | None = None,
    vertical: str = "nearest",
    wet_fraction: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
    bathymetry: str | os.PathLike | None = None,
    era5_accumulation_hours: float = 1.0,
) -> list[Path]:
    """Convert the given years to ``out/split/YEAR.h5`` on `grid` (default 1.5 deg N->S) and
    `layout` (default 23 levels); also writes ``land_mask.h5`` (with the sea floor of the
    GLORYS static file `bathymetry`, if given). Returns the files written.

    Every date of every year must be present in both sources (checked before anything is
    written); existing year files are refused unless `overwrite`. A layout with freshwater also
    reads ERA5's ``e`` and ``tp`` (see the module docstring for `era5_accumulation_hours`)."""
    layout = layout or ChannelLayout()
    hours = era5_accumulation_hours
    if isinstance(hours, bool) or not (isinstance(hours, (int, float)) and 0 < hours <= 24):
        raise ConfigError(f"era5_accumulation_hours {era5_accumulation_hours!r}: the hours each "
                          f"ERA5 e/tp value accumulates, in (0, 24]")
    grid = grid or Grid.regular(1.5)
    out = Path(out)
    if split not in h5format.SPLITS:
        raise ConfigError(f"split {split!r}: use one of {', '.join(h5format.SPLITS)}")
    targets = [out / split / f"{y}.h5" for y in years]
    for t in targets:
        if t.exists() and not overwrite:
            raise DataError(f"{t}: exists; pass --overwrite to replace it")
    sea_floor = None if bathymetry is None else read_sea_floor(bathymetry, grid)
    ocean = _Source(glorys, [GLORYS_VARIABLES[v] for v in OCEAN_3D_VARIABLES + ("SSH",)], "GLORYS")
    atmos_vars = list(layout.forcing_variables)  # the four, and e, tp with freshwater
    atmos = _Source(era5, atmos_vars, "ERA5")
    try:
        all_dates = [d for y in years for d in year_dates(y)]
        ocean.check_dates(all_dates)
        atmos.check_dates(all_dates)
        by_grid: dict[tuple, ConservativeRegridder] = {}
        by_var: dict[str, ConservativeRegridder] = {}

        def regridder(src: _Source, var: str) -> ConservativeRegridder:
            if var not in by_var:
                lat, lon, _ = src.coords[var]
                key = (lat.tobytes(), lon.tobytes())
                if key not in by_grid:
                    by_grid[key] = ConservativeRegridder(
                        lat, lon, grid.lat, grid.lon, wet_fraction=wet_fraction
                    )
                by_var[var] = by_grid[key]
            return by_var[var]

        vweights = {
            v: vertical_weights(ocean.depths(GLORYS_VARIABLES[v]), layout.depths_m, vertical)
            for v in OCEAN_3D_VARIABLES
        }
        H, W = grid.shape
        first_day = None
        for year, target in zip(years, targets):
            dates = year_dates(year)
            with h5write.YearWriter(
                target, len(dates), layout.n_channels, (H, W), grid.lat, grid.lon, layout.depths_m,
                attrs={"source": "GLORYS12 + ERA5 via neuralogcm convert-glorys", "year": year},
            ) as writer:
                for t, date in enumerate(tqdm(dates, desc=f"{split}/{year}", disable=not progress)):
                    day = np.empty((layout.n_channels, H, W), dtype=np.float32)
                    for v in OCEAN_3D_VARIABLES:
                        name = GLORYS_VARIABLES[v]
                        rg = regridder(ocean, name)
                        cache: dict[int, np.ndarray] = {}
                        for lev, ws in enumerate(vweights[v]):
                            acc = 0.0
                            for k, w in ws:
                                if k not in cache:
                                    cache[k] = rg(ocean.daily_mean(name, date, k))
                                acc = acc + w * cache[k]
                            day[layout.channel(v, lev)] = acc
                    day[layout.channel("SSH")] = regridder(ocean, "zos")(ocean.daily_mean("zos", date))
                    for v in atmos_vars:
                        f = regridder(atmos, v)(atmos.daily_mean(v, date))
                        if v in ERA5_ACCUMULATED:  # mean accumulation -> the day's total
                            f = f * (24.0 / era5_accumulation_hours)
                        if not np.all(np.isfinite(f)):
                            raise DataError(
                                f"ERA5 {v} on {date}: the files do not cover the whole target grid"
                            )
                        day[layout.channel(v)] = f
                    writer.write_day(t, day)
                    if first_day is None:
                        first_day = day
        if first_day is not None:
            wet = np.isfinite(first_day)
            wet[layout.n_ocean :] = True
            h5write.write_land_mask(out, wet, grid.lat, grid.lon, sea_floor)
    finally:
        ocean.close()
        atmos.close()
    return targets


# ====================================================================== statistics
def compute_stats(root: str | os.PathLike, split: str = "train", *, progress: bool = True):
    """Compute and write the statistics of a data root from one split (the training years).

    * climatology ``[366, n_ocean, H, W]``: the mean over the split's years of each ocean channel on
      each day of year (index 365 only from leap years; when the split has none it repeats 364);
      NaN on land; written as a memory map, never held in RAM;
    * its compact form, ``[2 K + 1, n_ocean, H, W]`` annual harmonics (`normalize.fit_harmonics`,
      0 on land), which is what the pipeline and the models use;
    * ocean mean/std ``[n_ocean]``: of the anomalies ``x - clim(doy)`` over wet cells, ``clim``
      the harmonic climatology (the mean is about 0 by construction, as in the NeuralOGCM files);
    * forcing mean/std ``[n_forcing]`` (4, or 6 with freshwater): of the raw values over all cells.

    Cells are weighted equally (not by area), as the NeuralOGCM statistics are. A channel with no
    variance (e.g. a level with no wet cell) gets std 1 so normalisation stays finite.
    Returns ``(mean, std)``."""
    root = Path(root)
    dr = h5format.open_dataset(root, splits=(split,), require_stats=False, nan_check_days=0)
    L = dr.layout
    n = L.n_ocean
    H, W = dr.grid.shape
    files = dr.split(split).files
    wet = dr.wet_channels[:n]
    clim_path = root / h5format.CLIM_FILE
    tmp = clim_path.with_name(f".{clim_path.name}.tmp-{os.getpid()}.npy")
    try:
        clim = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(366, n, H, W))
        count = np.zeros(366, dtype=np.int64)
        f_sum = np.zeros(L.n_forcing)
        f_sq = np.zeros(L.n_forcing)
        f_n = 0
        total = sum(f.n_days for f in files)
        with tqdm(total=2 * total, desc=f"stats of {split}", disable=not progress) as bar:
            for yf in files:
                with h5format._open_h5(yf.path) as f:
                    d = h5format._fields(f, yf.path)
                    for t in range(yf.n_days):
                        x = h5format._read(d, t, yf.path)
                        clim[t] += np.where(wet, x[:n], 0.0)
                        count[t] += 1
                        fx = x[n:].reshape(L.n_forcing, -1).astype(np.float64)
                        f_sum += fx.sum(axis=1)
                        f_sq += (fx**2).sum(axis=1)
                        f_n += fx.shape[1]
                        bar.update()
            for t in range(366):
                if count[t]:
                    clim[t] /= count[t]
            if count[365] == 0:
                clim[365] = clim[364]
            harmonics = normalize.fit_harmonics(clim)
            harmonics[:, ~wet] = 0.0
            a_sum = np.zeros(n)
            a_sq = np.zeros(n)
            a_n = wet.reshape(n, -1).sum(axis=1)
            for yf in files:
                with h5format._open_h5(yf.path) as f:
                    d = h5format._fields(f, yf.path)
                    for t in range(yf.n_days):
                        c = normalize.climatology_at(harmonics, t)
                        a = np.where(wet, h5format._read(d, t, yf.path)[:n] - c, 0.0)
                        a = a.reshape(n, -1).astype(np.float64)
                        a_sum += a.sum(axis=1)
                        a_sq += (a**2).sum(axis=1)
                        bar.update()
            clim[:, ~wet] = np.nan
            clim.flush()
            del clim
            os.replace(tmp, clim_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    n_wet = np.maximum(a_n * total, 1)
    a_mean = a_sum / n_wet
    a_std = np.sqrt(np.maximum(a_sq / n_wet - a_mean**2, 0.0))
    f_mean = f_sum / f_n
    f_std = np.sqrt(np.maximum(f_sq / f_n - f_mean**2, 0.0))
    mean = np.concatenate([a_mean, f_mean]).astype(np.float32)
    std = np.concatenate([a_std, f_std]).astype(np.float32)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    for name, arr in ((h5format.MEAN_FILE, mean), (h5format.STD_FILE, std),
                      (h5format.HARMONICS_FILE, harmonics)):
        h5write.write_npy(root / name, arr)
    return mean, std


# ====================================================================== CLI
def parse_years(specs: list[str]) -> list[int]:
    """``["1993-1995", "2000"]`` -> ``[1993, 1994, 1995, 2000]`` (sorted, consecutive required)."""
    years: set[int] = set()
    for s in specs:
        for part in str(s).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = (int(v) for v in part.split("-", 1))
                    if b < a:
                        raise ValueError
                    years.update(range(a, b + 1))
                else:
                    years.add(int(part))
            except ValueError:
                raise ConfigError(f"--years: {part!r} is not a year or a range like 1993-2017") from None
    out = sorted(years)
    if not out:
        raise ConfigError("--years: no year given")
    for a, b in zip(out[:-1], out[1:]):
        if b != a + 1:
            raise ConfigError(f"--years: a split's years must be consecutive; {a + 1} is missing")
    return out
