"""The model grid: geometry, metric factors and land masks, owned in one place.

Arrays are indexed ``[level, row, column]``. Rows follow the data's orientation (the NeuralOGCM
files run north to south); every operator works in index space and asks the grid for the sign
that turns "towards larger row index" into "northward" (`y_sign`). Columns are longitudes,
increasing eastward, periodic on the sphere.

Finite-volume geometry (cell-centred, an Arakawa A-grid as in the data):

* a cell spans ``dlon`` in longitude and ``|dlat|`` in latitude; its area is
  ``R^2 dlon |sin(phi_n) - sin(phi_s)|`` (exact on the sphere; sums to ``4 pi R^2``);
* the faces between columns have length ``dy = R |dlat|`` (`face_len_x`);
* the faces between rows ``j-1`` and ``j`` have length ``R cos(phi_face) dlon``
  (`face_len_y`, ``[H+1]``: index ``j`` is the face on the low-index side of row ``j``); the two
  outermost faces are closed walls (on a global grid they sit at the poles, length 0);
* a face is open only where both cells it joins are wet (`face_mask_x`, `face_mask_y`).

Planar grids (`Grid.cartesian`) reuse the same arrays with constant metrics and
``f = f0 + beta * y``, for f-plane and beta-plane test problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from neuralogcm_jax.constants import EARTH_RADIUS_M, OMEGA_RAD_S
from neuralogcm_jax.errors import GridError

# The 23 GLORYS12 levels used by NeuralOGCM (m); see `docs/design.md`, "Data layout".
GLORYS23_DEPTHS_M = (
    0.494, 2.646, 5.078, 7.930, 11.405, 15.810, 21.599, 29.445, 40.344, 55.764, 77.854,
    92.326, 109.729, 130.666, 155.851, 186.126, 222.475, 266.040, 318.127, 380.213,
    453.938, 541.089, 643.567,
)


def layer_interfaces(depth_m: np.ndarray) -> np.ndarray:
    """Interfaces ``[L+1]`` (m, positive down) of layers centred near `depth_m`.

    The top interface is the sea surface (0); inner interfaces are midpoints between centres;
    the bottom interface mirrors the last inner one about the deepest centre.
    """
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.size == 1:
        return np.array([0.0, 2.0 * depth_m[0]])
    mid = 0.5 * (depth_m[1:] + depth_m[:-1])
    bottom = depth_m[-1] + (depth_m[-1] - mid[-1])
    return np.concatenate([[0.0], mid, [bottom]])


def _check_depths(depth_m: np.ndarray) -> None:
    if depth_m.ndim != 1 or depth_m.size == 0:
        raise GridError(f"depth levels must be a non-empty 1-D array, got shape {depth_m.shape}")
    if not np.all(np.isfinite(depth_m)):
        raise GridError(f"depth levels contain non-finite values: {depth_m.tolist()}")
    if depth_m[0] <= 0:
        raise GridError(f"depth levels must be positive (m, down), level 0 is {depth_m[0]}")
    steps = np.diff(depth_m)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0))
        raise GridError(
            f"depth levels must increase strictly: level {k + 1} ({depth_m[k + 1]} m) "
            f"is not deeper than level {k} ({depth_m[k]} m)"
        )


def _uniform_spacing(name: str, coord: np.ndarray) -> float:
    if coord.ndim != 1 or coord.size < 2:
        raise GridError(f"{name} must be a 1-D array of at least 2 values, got shape {coord.shape}")
    d = np.diff(coord)
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
        j = int(np.argmax(np.abs(d - d[0]) > 1e-6 * abs(d[0]) + 1e-9))
        raise GridError(f"{name} must be uniformly spaced: step {j} is {d[j]}, step 0 is {d[0]}")
    if d[0] == 0:
        raise GridError(f"{name} has zero spacing")
    return float(d[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
    """Geometry of a (possibly masked) lat-lon or planar grid. Build with a constructor.

    Attributes (all numpy, float64 unless stated):
      lat: ``[H]`` cell-centre latitudes (deg), either orientation.
      lon: ``[W]`` cell-centre longitudes (deg), increasing.
      depth: ``[L]`` level centres (m, positive down), strictly increasing.
      wet: ``[L, H, W]`` bool, True for ocean cells.
      dz: ``[L]`` layer thicknesses (m).
      dx: ``[H]`` zonal cell width at the centre (m) (``R cos(phi) dlon``).
      dy: meridional cell height (m) (``R |dlat|``), also the length of faces between columns.
      area: ``[H]`` cell area (m^2).
      face_len_y: ``[H+1]`` length (m) of the face on the low-index side of each row; the last
        entry is the face beyond the last row. Entries 0 and H are walls.
      coriolis: ``[H]`` Coriolis parameter f (1/s).
      y_sign: +1 if the row index runs northward, -1 if it runs southward.
      periodic_x: columns wrap around (True on the sphere).
      radius: sphere radius (m); ``inf`` for planar grids.
      sea_floor_m: ``[H, W]`` depth (m, positive down) of the real sea floor, which may lie below
        the deepest level (the embedded world's ETOPO5 mean depth), or None where unknown. Only
        primitive mode's ``barotropic_depth: sea_floor`` reads it (`with_sea_floor`).
    """

    lat: np.ndarray
    lon: np.ndarray
    depth: np.ndarray
    wet: np.ndarray
    dz: np.ndarray
    dx: np.ndarray
    dy: float
    area: np.ndarray
    face_len_y: np.ndarray
    coriolis: np.ndarray
    y_sign: float
    periodic_x: bool
    radius: float
    sea_floor_m: np.ndarray | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_coords(
        cls,
        lat: Sequence[float],
        lon: Sequence[float],
        depth: Sequence[float] = GLORYS23_DEPTHS_M,
        wet: np.ndarray | None = None,
        *,
        radius: float = EARTH_RADIUS_M,
        omega: float = OMEGA_RAD_S,
    ) -> Grid:
        """A spherical grid from cell-centre coordinates as stored with the data.

        `lat` may run north to south or south to north and may include a pole row (a 121-row
        1.5 deg grid): cell edges are clipped at +-90 deg, so a pole cell is a half cell.
        `lon` must be uniform and cover 360 deg (the grid is periodic in longitude).
        `wet` is ``[L, H, W]`` (or ``[H, W]``, broadcast to every level); None means all ocean.
        """
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        depth = np.asarray(depth, dtype=np.float64)
        dlat = _uniform_spacing("lat", lat)
        dlon = _uniform_spacing("lon", lon)
        if dlon <= 0:
            raise GridError(f"lon must increase eastward, got spacing {dlon}")
        if np.any(np.abs(lat) > 90.0 + 1e-9):
            raise GridError(f"lat must lie within [-90, 90], got range [{lat.min()}, {lat.max()}]")
        if not np.isclose(dlon * lon.size, 360.0, rtol=1e-6):
            raise GridError(
                f"lon must cover 360 deg for a periodic grid: {lon.size} x {dlon} = {dlon * lon.size}"
            )
        _check_depths(depth)
        wet = cls._check_wet(wet, depth.size, lat.size, lon.size)

        lat_faces = np.clip(np.concatenate([[lat[0] - dlat / 2], lat + dlat / 2]), -90.0, 90.0)
        phi_faces = np.deg2rad(lat_faces)
        dlon_rad = np.deg2rad(dlon)
        area = radius**2 * dlon_rad * np.abs(np.diff(np.sin(phi_faces)))
        face_len_y = radius * np.cos(phi_faces) * dlon_rad
        face_len_y[0] = 0.0
        face_len_y[-1] = 0.0
        face_len_y = np.maximum(face_len_y, 0.0)
        # Centre width from the exact area over the exact height keeps dx consistent with area.
        dy = radius * np.deg2rad(abs(dlat))
        dx = np.maximum(radius * np.cos(np.deg2rad(lat)) * dlon_rad, 1e-12)
        return cls(
            lat=lat,
            lon=lon,
            depth=depth,
            wet=wet,
            dz=np.diff(layer_interfaces(depth)),
            dx=dx,
            dy=dy,
            area=area,
            face_len_y=face_len_y,
            coriolis=2.0 * omega * np.sin(np.deg2rad(lat)),
            y_sign=1.0 if dlat > 0 else -1.0,
            periodic_x=True,
            radius=radius,
        )

    @classmethod
    def regular(
        cls,
        resolution_deg: float = 1.5,
        depth: Sequence[float] = GLORYS23_DEPTHS_M,
        wet: np.ndarray | None = None,
        *,
        north_to_south: bool = True,
        radius: float = EARTH_RADIUS_M,
        omega: float = OMEGA_RAD_S,
    ) -> Grid:
        """A global grid of ``180/res x 360/res`` cells (1.5 deg: 120 x 240), centres off the poles.

        Longitudes start at ``res/2`` east of Greenwich; rows run north to south by default, as in
        the NeuralOGCM files.
        """
        h = 180.0 / resolution_deg
        w = 360.0 / resolution_deg
        if not (np.isclose(h, round(h)) and np.isclose(w, round(w))):
            raise GridError(f"resolution {resolution_deg} deg does not divide 180 and 360")
        h, w = int(round(h)), int(round(w))
        lat = -90.0 + resolution_deg * (np.arange(h) + 0.5)
        if north_to_south:
            lat = lat[::-1]
        lon = resolution_deg * (np.arange(w) + 0.5)
        return cls.from_coords(lat, lon, depth, wet, radius=radius, omega=omega)

    @classmethod
    def cartesian(
        cls,
        nx: int,
        ny: int,
        dx_m: float,
        dy_m: float,
        depth: Sequence[float] = (50.0,),
        wet: np.ndarray | None = None,
        *,
        f0: float = 1e-4,
        beta: float = 0.0,
        periodic_x: bool = False,
    ) -> Grid:
        """A planar box (f-plane or beta-plane), rows running northward, walls on every side
        (unless `periodic_x`). ``f = f0 + beta * (y - y_mid)``."""
        depth = np.asarray(depth, dtype=np.float64)
        _check_depths(depth)
        wet = cls._check_wet(wet, depth.size, ny, nx)
        y = (np.arange(ny) + 0.5) * dy_m
        face_len_y = np.full(ny + 1, float(dx_m))
        face_len_y[0] = 0.0
        face_len_y[-1] = 0.0
        return cls(
            lat=np.zeros(ny) if beta == 0 else np.rad2deg(y / EARTH_RADIUS_M),
            lon=(np.arange(nx) + 0.5) * dx_m,
            depth=depth,
            wet=wet,
            dz=np.diff(layer_interfaces(depth)),
            dx=np.full(ny, float(dx_m)),
            dy=float(dy_m),
            area=np.full(ny, float(dx_m) * float(dy_m)),
            face_len_y=face_len_y,
            coriolis=f0 + beta * (y - y.mean()),
            y_sign=1.0,
            periodic_x=periodic_x,
            radius=float("inf"),
        )

    @staticmethod
    def _check_wet(wet, n_levels: int, h: int, w: int) -> np.ndarray:
        if wet is None:
            return np.ones((n_levels, h, w), dtype=bool)
        wet = np.asarray(wet)
        if wet.ndim == 2:
            wet = np.broadcast_to(wet, (n_levels,) + wet.shape)
        if wet.shape != (n_levels, h, w):
            raise GridError(
                f"wet mask has shape {tuple(wet.shape)}, expected [levels, lat, lon] = "
                f"{(n_levels, h, w)}"
            )
        return np.ascontiguousarray(wet.astype(bool))

    def with_wet(self, wet: np.ndarray) -> Grid:
        """The same geometry with another wet mask (``[L, H, W]`` or ``[H, W]``)."""
        return dataclasses.replace(self, wet=self._check_wet(wet, self.n_levels, *self.shape))

    def with_sea_floor(self, sea_floor_m: np.ndarray) -> Grid:
        """The same grid with the real sea-floor depth ``[H, W]`` (m, positive down; finite and
        >= 0; land cells are ignored)."""
        d = np.asarray(sea_floor_m, dtype=np.float64)
        if d.shape != self.shape:
            raise GridError(
                f"sea floor depth has shape {tuple(d.shape)}, expected [lat, lon] = {self.shape}")
        bad = self.wet[0] & ~(np.isfinite(d) & (d >= 0))
        if bad.any():
            j, i = (int(x) for x in np.argwhere(bad)[0])
            raise GridError(
                f"sea floor depth must be finite and >= 0 in ocean cells: {d[j, i]} in row {j}, "
                f"column {i} ({int(bad.sum())} such cells)")
        return dataclasses.replace(self, sea_floor_m=np.where(self.wet[0], d, 0.0))

    def with_levels(self, depth: Sequence[float], wet: np.ndarray | None = None) -> Grid:
        """The same horizontal grid with other depth levels (and a wet mask for them)."""
        depth = np.asarray(depth, dtype=np.float64)
        _check_depths(depth)
        if wet is None:
            wet = np.broadcast_to(self.wet[0], (depth.size,) + self.shape)
        wet = self._check_wet(wet, depth.size, *self.shape)
        return dataclasses.replace(
            self, depth=depth, wet=wet, dz=np.diff(layer_interfaces(depth))
        )

    # ------------------------------------------------------------------ derived
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.lat.size, self.lon.size)

    @property
    def n_levels(self) -> int:
        return self.depth.size

    @property
    def north_to_south(self) -> bool:
        return self.y_sign < 0

    @property
    def face_mask_x(self) -> np.ndarray:
        """``[L, H, W]`` bool: the face east of cell ``i`` (between ``i`` and ``i+1``) is open."""
        m = self.wet & np.roll(self.wet, -1, axis=-1)
        if not self.periodic_x:
            m = m.copy()
            m[..., -1] = False
        return m

    @property
    def face_mask_y(self) -> np.ndarray:
        """``[L, H+1, W]`` bool: face ``j`` (between rows ``j-1`` and ``j``) is open.

        Faces 0 and H are the outer walls, always closed."""
        m = np.zeros((self.n_levels, self.shape[0] + 1, self.shape[1]), dtype=bool)
        m[:, 1:-1] = self.wet[:, 1:] & self.wet[:, :-1]
        return m

    @property
    def cell_volume(self) -> np.ndarray:
        """``[L, H, 1]`` volume (m^3) of each cell (land included; multiply by `wet`)."""
        return self.dz[:, None, None] * self.area[None, :, None]

    @property
    def ocean_fraction(self) -> float:
        """Area-weighted fraction of the surface that is wet."""
        a = np.broadcast_to(self.area[:, None], self.shape)
        return float((a * self.wet[0]).sum() / a.sum())

    @property
    def bottom_level(self) -> np.ndarray:
        """``[H, W]`` int: index of the deepest wet level (-1 on land)."""
        return self.wet.sum(axis=0).astype(np.int32) - 1

    def lat_rad(self) -> np.ndarray:
        return np.deg2rad(self.lat)

    def describe(self) -> str:
        h, w = self.shape
        return (
            f"Grid({h}x{w}, {self.n_levels} levels, "
            f"{'N->S' if self.north_to_south else 'S->N'}, ocean {self.ocean_fraction:.3f})"
        )
