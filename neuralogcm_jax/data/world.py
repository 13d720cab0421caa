"""The embedded default world: land masks, bottom depth, climatologies and forcing on the grid.

`load_world` reads the assets committed under ``neuralogcm_jax/data/embedded/`` (built once by
``python -m neuralogcm_jax.data.embedded.build`` from public-domain NOAA/PMEL data and the MIT
global-land-mask, see ``embedded/SOURCES.md``) and returns a frozen `World`:

* a `Grid` (1.5 deg, 120 x 240, rows north to south) whose wet masks are the ocean at each of the
  23 GLORYS levels;
* the annual-mean potential temperature and salinity ``[L, H, W]`` (Levitus), filled into every
  wet cell;
* the monthly surface climatology ``[12, H, W]`` per variable (COADS: u10, v10 in m/s, t2m in K,
  msl in Pa, sst in degC), filled everywhere (forcing has no land mask);
* the monthly FNOC winds Jan 1982 - Dec 1992 ``[132, 2, H, W]`` (m/s).

Coarser worlds (3 or 6 deg) come from area-weighted averages of the 1.5 deg assets: a coarse cell
is wet at a level if most of its area is wet there; tracers are averaged over the wet part of the
cell, forcing over the whole cell. Fewer levels take the first ``n`` GLORYS levels.

Only numpy is needed at load time.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from importlib import resources

import numpy as np

from neuralogcm_jax.errors import DataError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid
from neuralogcm_jax.layout import Forcing, OceanState

ASSET_FILE = "world_1p5deg.npz"
BASE_RESOLUTION_DEG = 1.5
SURFACE_VARIABLES = ("u10", "v10", "t2m", "msl", "sst")
SURFACE_UNITS = {"u10": "m/s", "v10": "m/s", "t2m": "K", "msl": "Pa", "sst": "degC"}
FNOC_FIRST_YEAR = 1982
FNOC_N_MONTHS = 132  # Jan 1982 .. Dec 1992

# Packed-asset scalings (see build.py): value = offset + scale * stored.
SALINITY_OFFSET_PSU = 35.0
FNOC_SCALE_M_S = 0.2
SURFACE_OFFSETS = (0.0, 0.0, 273.15, 101325.0, 0.0)  # per SURFACE_VARIABLES (K, Pa)


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """A global ocean world on a regular lat-lon grid (rows north to south).

    Attributes:
      grid: the `Grid`, its ``wet`` ``[L, H, W]`` the ocean at each level.
      ocean_fraction: ``[H, W]`` fraction of each cell's area that is ocean (0..1), before the
        cell was judged wet or dry.
      bottom_depth_m: ``[H, W]`` mean sea-floor depth (m, positive down; 0 on land).
      T_clim: ``[L, H, W]`` annual-mean potential temperature (degC), 0 on land.
      S_clim: ``[L, H, W]`` annual-mean salinity (psu), 0 on land.
      surface_monthly: ``[12, 5, H, W]`` monthly surface climatology, variables in
        `SURFACE_VARIABLES` order (u10, v10 m/s; t2m K; msl Pa; sst degC), month 0 = January,
        valid everywhere.
      fnoc_winds: ``[132, 2, H, W]`` monthly mean 10 m winds (u, v; m/s), Jan 1982 .. Dec 1992.
      resolution_deg: grid spacing (deg).
    """

    grid: Grid
    ocean_fraction: np.ndarray
    bottom_depth_m: np.ndarray
    T_clim: np.ndarray
    S_clim: np.ndarray
    surface_monthly: np.ndarray
    fnoc_winds: np.ndarray
    resolution_deg: float

    @property
    def n_levels(self) -> int:
        return self.grid.n_levels

    def surface(self, name: str) -> np.ndarray:
        """``[12, H, W]`` monthly climatology of one surface variable (see `SURFACE_VARIABLES`)."""
        if name not in SURFACE_VARIABLES:
            raise DataError(f"unknown surface variable {name!r}; known: {SURFACE_VARIABLES}")
        return self.surface_monthly[:, SURFACE_VARIABLES.index(name)]

    def initial_state(self, dtype=np.float32) -> OceanState:
        """The state of rest on the climatology: T, S from Levitus, u = v = 0, ssh = 0.

        Fields ``[L, H, W]`` (ssh ``[H, W]``) in physical units, 0 on land, in `dtype`."""
        wet = self.grid.wet
        zeros = np.zeros(wet.shape, dtype=dtype)
        return OceanState(
            u=zeros,
            v=zeros.copy(),
            T=np.where(wet, self.T_clim, 0.0).astype(dtype),
            S=np.where(wet, self.S_clim, 0.0).astype(dtype),
            ssh=np.zeros(self.grid.shape, dtype=dtype),
        )

    def monthly_forcing(self, month: int) -> Forcing:
        """The climatological `Forcing` of one calendar month (0 = January), fields ``[H, W]``."""
        s = self.surface_monthly[month % 12]
        return Forcing(u10=s[0], v10=s[1], t2m=s[2], msl=s[3])


# ---------------------------------------------------------------------------------- helpers
def connected_components(mask: np.ndarray, periodic_x: bool = True) -> tuple[np.ndarray, int]:
    """Label the 4-connected components of a 2-D bool `mask` ``[H, W]`` (periodic in x).

    Returns ``(labels [H, W] int32, n)``: labels 1..n on True cells, 0 elsewhere."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    n = 0
    for j0, i0 in zip(*np.nonzero(mask)):
        if labels[j0, i0]:
            continue
        n += 1
        labels[j0, i0] = n
        queue = deque([(j0, i0)])
        while queue:
            j, i = queue.popleft()
            for jj, ii in ((j - 1, i), (j + 1, i), (j, i - 1), (j, i + 1)):
                if jj < 0 or jj >= h:
                    continue
                if periodic_x:
                    ii %= w
                elif ii < 0 or ii >= w:
                    continue
                if mask[jj, ii] and not labels[jj, ii]:
                    labels[jj, ii] = n
                    queue.append((jj, ii))
    return labels, n


def remove_small_basins(surface_wet: np.ndarray, cell_area: np.ndarray, min_area_m2: float):
    """Drop surface-connected ocean basins smaller than `min_area_m2` (lakes, puddles).

    `surface_wet` ``[H, W]`` bool, `cell_area` ``[H, W]`` (m^2). Returns the cleaned mask."""
    labels, n = connected_components(surface_wet)
    if n == 0:
        return surface_wet.copy()
    basin_area = np.bincount(labels.ravel(), weights=cell_area.ravel(), minlength=n + 1)
    keep = basin_area >= min_area_m2
    keep[0] = False
    return keep[labels]


def remove_pits(wet: np.ndarray) -> np.ndarray:
    """Dry cells below the surface whose four neighbours at the same level are all dry.

    Such one-cell pits exchange nothing sideways and only trap grid noise; removing them (and
    everything beneath, so the mask stays monotonic in depth) is the usual bathymetry clean-up.
    `wet` ``[L, H, W]`` bool with ``wet[k] <= wet[k-1]``; returns a new mask."""
    wet = np.array(wet, dtype=bool)
    for k in range(1, wet.shape[0]):
        while True:
            m = wet[k]
            nb = np.zeros_like(m)
            nb[1:] |= m[:-1]
            nb[:-1] |= m[1:]
            nb |= np.roll(m, 1, axis=1) | np.roll(m, -1, axis=1)
            pit = m & ~nb
            if not pit.any():
                break
            wet[k:, pit] = False
    return wet


def _block_mean(x: np.ndarray, f: int, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean over ``f x f`` blocks of the last two axes; returns (mean, weight sum)."""
    *lead, h, w = x.shape
    xs = (x * weight).reshape(*lead, h // f, f, w // f, f).sum(axis=(-3, -1))
    ws = np.broadcast_to(weight, x.shape).reshape(*lead, h // f, f, w // f, f).sum(axis=(-3, -1))
    return xs / np.where(ws > 0, ws, 1.0), ws


# ---------------------------------------------------------------------------------- loading
def asset_path():
    return resources.files("neuralogcm_jax.data.embedded") / ASSET_FILE


@functools.lru_cache(maxsize=4)
def _load_base() -> dict[str, np.ndarray]:
    path = asset_path()
    if not path.is_file():
        raise DataError(
            f"embedded world asset {path} is missing; rebuild it with "
            "`python -m neuralogcm_jax.data.embedded.build`"
        )
    with path.open("rb") as fh, np.load(fh) as z:
        raw = {k: z[k] for k in z.files}
    L, h, w = 23, 120, 240
    expected = {
        "wet_packed": None,
        "ocean_fraction": (h, w),
        "bottom_depth_m": (h, w),
        "T_clim": (L, h, w),
        "S_anom": (L, h, w),
        "surface_monthly": (12, len(SURFACE_VARIABLES), h, w),
        "fnoc_winds_q": (FNOC_N_MONTHS, 2, h, w),
    }
    for key, shape in expected.items():
        if key not in raw:
            raise DataError(f"embedded world asset {path} lacks key {key!r}")
        if shape is not None and raw[key].shape != shape:
            raise DataError(
                f"embedded world asset {path}: {key!r} has shape {raw[key].shape}, expected {shape}"
            )
    wet = np.unpackbits(raw["wet_packed"], count=L * h * w).reshape(L, h, w).astype(bool)
    return {
        "wet": wet,
        "ocean_fraction": raw["ocean_fraction"].astype(np.float64) / 255.0,
        "bottom_depth_m": raw["bottom_depth_m"].astype(np.float64),
        "T_clim": np.where(wet, raw["T_clim"].astype(np.float64), 0.0),
        "S_clim": np.where(wet, raw["S_anom"].astype(np.float64) + SALINITY_OFFSET_PSU, 0.0),
        "surface_monthly": raw["surface_monthly"].astype(np.float64)
        + np.asarray(SURFACE_OFFSETS)[:, None, None],
        "fnoc_winds": raw["fnoc_winds_q"].astype(np.float64) * FNOC_SCALE_M_S,
    }


@functools.lru_cache(maxsize=8)
def load_world(resolution_deg: float = 1.5, n_levels: int = 23) -> World:
    """The embedded world at `resolution_deg` (1.5, 3 or 6 deg...) with the first `n_levels`
    GLORYS levels.

    Coarse resolutions must be integer multiples of 1.5 deg dividing 180 deg. Arrays are float64
    numpy; the result is cached (treat it as read-only)."""
    factor = resolution_deg / BASE_RESOLUTION_DEG
    f = int(round(factor))
    if f < 1 or not np.isclose(factor, f) or 120 % f or 240 % f:
        raise DataError(
            f"resolution_deg={resolution_deg}: the embedded world is 1.5 deg; use a multiple "
            "k * 1.5 deg with k dividing 120 (1.5, 3, 6, 7.5, 12 ...)"
        )
    if not 1 <= int(n_levels) <= len(GLORYS23_DEPTHS_M):
        raise DataError(f"n_levels={n_levels}: the embedded world has 1..23 levels")
    n_levels = int(n_levels)
    b = _load_base()
    base_grid = Grid.regular(BASE_RESOLUTION_DEG, GLORYS23_DEPTHS_M[:n_levels])
    area = np.broadcast_to(base_grid.area[:, None], base_grid.shape)
    wet = b["wet"][:n_levels]
    T, S = b["T_clim"][:n_levels], b["S_clim"][:n_levels]
    frac, depth = b["ocean_fraction"], b["bottom_depth_m"]
    surf, fnoc = b["surface_monthly"], b["fnoc_winds"]
    if f > 1:
        wet_frac, _ = _block_mean(wet.astype(np.float64), f, area)
        coarse_wet = wet_frac > 0.5
        T, _ = _block_mean(T, f, area * wet)
        S, _ = _block_mean(S, f, area * wet)
        frac, _ = _block_mean(frac, f, area)
        depth, _ = _block_mean(depth, f, area * wet[0])
        surf, _ = _block_mean(surf, f, area)
        fnoc, _ = _block_mean(fnoc, f, area)
        grid0 = Grid.regular(resolution_deg, GLORYS23_DEPTHS_M[:n_levels])
        coarse_area = np.broadcast_to(grid0.area[:, None], grid0.shape)
        # A coarse basin must still be a sea, not a puddle left by averaging.
        surf_wet = remove_small_basins(coarse_wet[0], coarse_area, MIN_BASIN_AREA_M2)
        coarse_wet = coarse_wet & surf_wet[None]
        wet = remove_pits(coarse_wet)
        depth = np.where(wet[0], depth, 0.0)
        grid = grid0.with_wet(wet)
    else:
        grid = base_grid.with_wet(wet)
    return World(
        grid=grid.with_sea_floor(depth),
        ocean_fraction=frac,
        bottom_depth_m=depth,
        T_clim=np.where(wet, T, 0.0),
        S_clim=np.where(wet, S, 0.0),
        surface_monthly=surf,
        fnoc_winds=fnoc,
        resolution_deg=float(resolution_deg),
    )


# Basins smaller than this are lakes or puddles and become land (about 10 cells of 1.5 deg at
# the equator; it keeps the Black Sea and the Mediterranean, drops single enclosed bays).
MIN_BASIN_AREA_M2 = 2.5e11
