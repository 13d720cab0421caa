"""Conservative coarse-graining of a fine truth ocean onto the model grid (twin datasets).

`CoarseGrainer` is the converter's first-order conservative regridder
(`neuralogcm_jax.data.convert.ConservativeRegridder`: overlap areas ``d(sin lat) d(lon)`` between
cells of two regular lat-lon grids) applied to whole ocean states, inside or outside `jit`:

* a tracer, velocity or SSH value of a coarse cell is the area-weighted mean over the *wet* fine
  cells it overlaps at that level (``sum_f A_cf wet_f x_f / sum_f A_cf wet_f``), so the area
  integral ``sum_c x_c W_c`` with the coarse cell's wet area ``W_c = sum_f A_cf wet_f`` equals
  the fine one ``sum_f x_f A_f wet_f`` (exactly, up to round-off, over every coarse cell with any
  wet area);
* the coarse grid is ocean at a level where at least `wet_fraction` (default 0.5) of the cell's
  area is fine ocean there (monotone in depth because the fine mask is);
* forcing fields are averaged over the whole cell (they have no land mask).

Only numpy at construction; `state` and `forcing` accept numpy or JAX arrays.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.data.convert import ConservativeRegridder
from neuralogcm_jax.errors import GridError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OceanState

Array = Any


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=np.float64)


class CoarseGrainer:
    """Area-weighted coarse-graining from `fine` (a `Grid` with its wet mask) to the regular grid of
    `resolution_deg` with the same levels (see module doc).

    Attributes:
      grid: the coarse `Grid`, wet where at least `wet_fraction` of a cell is fine ocean.
      fraction: ``[L, h, w]`` fine-ocean fraction of each coarse cell's area per level.
      wet_area: ``[L, h, w]`` fine-ocean area of each coarse cell (m^2).
      a_lat ``[h, H]``, a_lon ``[w, W]``: the regridder's overlap matrices (dense), in
        ``d(sin lat)`` and degrees; ``a_lat @ x @ a_lon.T`` is the overlap-area-weighted sum.
    """

    def __init__(self, fine: Grid, resolution_deg: float, *, wet_fraction: float = 0.5):
        if not np.isfinite(fine.radius):
            raise GridError("coarse-graining needs a spherical grid")
        coarse = Grid.regular(resolution_deg, fine.depth, north_to_south=fine.north_to_south,
                              radius=fine.radius)
        if coarse.shape[0] > fine.shape[0] or coarse.shape[1] > fine.shape[1]:
            raise GridError(
                f"target {resolution_deg} deg {coarse.shape} is finer than the source {fine.shape}"
            )
        reg = ConservativeRegridder(fine.lat, fine.lon, coarse.lat, coarse.lon,
                                    wet_fraction=wet_fraction)
        self.a_lat = _dense(reg.a_lat)
        self.a_lon = _dense(reg.a_lon)
        self.fine = fine
        self.resolution_deg = float(resolution_deg)
        self.wet_fraction = float(wet_fraction)
        fine_wet = np.asarray(fine.wet, dtype=np.float64)
        overlap_wet = self._sum(fine_wet)  # [L, h, w] in d(sin lat) x deg
        self.fraction = overlap_wet / reg.tgt_area[None]
        wet = self.fraction >= self.wet_fraction - 1e-9
        self.grid = coarse.with_wet(wet)
        if fine.sea_floor_m is not None:  # the mean depth of the fine ocean under each cell
            floor = self._sum((fine.sea_floor_m * fine_wet[0])[None])[0]
            self.grid = self.grid.with_sea_floor(
                np.where(overlap_wet[0] > 0, floor / np.where(overlap_wet[0] > 0,
                                                                overlap_wet[0], 1.0), 0.0))
        # overlap units -> m^2: R^2 d(sin lat) d(lon rad)
        self._to_m2 = fine.radius**2 * np.pi / 180.0
        self.wet_area = overlap_wet * self._to_m2
        self._inv_wet = np.where(overlap_wet > 0, 1.0 / np.where(overlap_wet > 0, overlap_wet, 1.0),
                                 0.0)
        full = np.ones(fine.shape)
        self._inv_full = 1.0 / self._sum(full)

    def _sum(self, x, xp=np):
        """``a_lat @ x @ a_lon.T`` over the last two axes (overlap-weighted sums)."""
        a_lat = xp.asarray(self.a_lat, dtype=x.dtype) if xp is not np else self.a_lat
        a_lon = xp.asarray(self.a_lon, dtype=x.dtype) if xp is not np else self.a_lon
        return xp.einsum("hH,...HW,wW->...hw", a_lat, x, a_lon)

    @staticmethod
    def _xp(x):
        if isinstance(x, np.ndarray):
            return np
        return jnp

    def field(self, x: Array, level_wet: np.ndarray) -> Array:
        """Coarse wet-area means of ``x [..., L, H, W]`` (or ``[..., H, W]`` with a 2-D
        `level_wet`) over the fine wet cells `level_wet`; 0 where a coarse cell has no fine ocean
        (not yet masked to the coarse grid's wet cells)."""
        xp = self._xp(x)
        w = xp.asarray(level_wet, dtype=x.dtype) if xp is not np else level_wet.astype(x.dtype)
        inv = self._inv_wet if level_wet.ndim == 3 else self._inv_wet[0]
        inv = xp.asarray(inv, dtype=x.dtype) if xp is not np else inv
        return self._sum(x * w, xp) * inv

    def state(self, s: OceanState, *, mask: bool = True) -> OceanState:
        """An `OceanState` on the fine grid (fields ``[..., L, H, W]``, ssh ``[..., H, W]``) ->
        the coarse wet-area means, 0 on coarse land (`mask`) or kept in every coarse cell with
        any fine ocean (``mask=False``: the form that conserves area integrals exactly)."""
        wet = np.asarray(self.fine.wet)
        cwet = np.asarray(self.grid.wet) if mask else self.fraction > 0
        xp = self._xp(s.T)

        def mask_(x, m):
            return xp.where(xp.asarray(m), x, xp.zeros((), x.dtype))

        return OceanState(
            u=mask_(self.field(s.u, wet), cwet), v=mask_(self.field(s.v, wet), cwet),
            T=mask_(self.field(s.T, wet), cwet), S=mask_(self.field(s.S, wet), cwet),
            ssh=mask_(self.field(s.ssh, wet[0]), cwet[0]),
        )

    def forcing(self, f: Array) -> Array:
        """Whole-cell area means of forcing fields ``[..., H, W]``."""
        xp = self._xp(f)
        inv = self._inv_full if xp is np else xp.asarray(self._inv_full, dtype=f.dtype)
        return self._sum(f, xp) * inv

    def lost_area_fraction(self) -> np.ndarray:
        """``[L]`` fraction of the fine ocean area per level that lies in coarse land cells."""
        lost = np.where(np.asarray(self.grid.wet), 0.0, self.wet_area).sum(axis=(1, 2))
        return lost / self.wet_area.sum(axis=(1, 2))

    def integral(self, x_coarse: np.ndarray, level: int | None = None) -> float:
        """``sum_c x_c W_c`` (m^2 x units): the area integral of a coarse field ``[L, h, w]``
        (or ``[h, w]`` at `level`) over the fine ocean each coarse cell represents. Equal to the
        fine integral for an unmasked coarse field; a masked one lacks the fine ocean of the
        coarse land cells (`lost_area_fraction`)."""
        w = self.wet_area if level is None else self.wet_area[level]
        return float(np.sum(np.asarray(x_coarse, np.float64) * w))
