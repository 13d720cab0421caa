"""Mask-aware finite-volume operators on the sphere (or a planar box), pure JAX.

Fields are cell averages on the A-grid of `neuralogcm_jax.grid.Grid`, shaped ``[..., L, H, W]``
(any leading axes, then levels, rows, columns). Every operator is written in flux form:

* a *zonal face flux* ``Fx[..., L, H, W]`` is the transport (quantity x m^3/s per metre of depth,
  i.e. ``q * u * face length``) through the face east of cell ``(j, i)``, positive eastward;
* a *meridional face flux* ``Fy[..., L, H+1, W]`` is the transport through face ``j`` (between
  rows ``j-1`` and ``j``), positive towards larger row index. The row index runs north or south
  depending on the data, so a northward velocity ``v`` moves things along the index by
  ``y_sign * v`` (`Grid.y_sign`).

The tendency of a cell is minus the sum of its face fluxes over its area (`flux_divergence`). Each
face flux is added to one cell and taken from its neighbour, so the area-weighted total of any
quantity changes only by round-off: conservation holds by construction, whatever the fluxes are
(filtered, limited or learned). Closed faces (land on either side, the outer walls, the poles)
carry no flux, so land never exchanges anything with the ocean. Longitude is periodic through
`jnp.roll`: the seam is an ordinary face.

Polar filter (why and how). Zonal cells shrink as ``cos(phi)``: 4 km at 88.5 deg on a 1.5 deg grid
against 167 km at the equator, so without treatment the explicit substep would be set by the
polar rows. Poleward of a cutoff latitude ``phi_c`` the *zonal face fluxes* are filtered in
longitude: zonal wavenumber ``k`` of row ``phi`` is multiplied by

    a_k(phi) = min(1, cos(phi) / (cos(phi_c) * sin(k dlon / 2)))      (advective fluxes)

and by ``a_k^2`` for diffusive fluxes. The fastest discrete mode of an upwind difference has
eigenvalue ``~ 2 u sin(k dlon/2) / dx(phi)`` and of a Laplacian ``~ 4 nu sin^2(k dlon/2) / dx^2``;
after the filter both are bounded by their values at ``dx(phi_c) = R cos(phi_c) dlon``, so the
substep is set by the cutoff latitude. Wavenumbers already resolved at the cutoff resolution
(``a_k = 1``) pass unchanged. With ``joint_filter`` (`PhysicsConfig.polar_filter_transfer` =
"joint", the paper-mode default) the advective flux is damped by ``a_k^2`` as well: stronger
than its stability needs, but the sum of both fluxes then takes one forward transform instead of
two, and the cap rows' fluxes come from the same pass as the other rows' (about 25 % less time
per tendency on a 2-core CPU). Measured on the embedded world at 1.5 deg after 5 days, against a
split-filter reference with 8x shorter substeps: polar-cap (|lat| > 60) relative l2 error of u
8.3e-4 joint vs 7.6e-4 split, of T 4.8e-4 vs 3.7e-4, while the global error from the substep
itself is 5.4e-3 (u). Filtering the *fluxes* rather than the tendencies keeps the
telescoping flux form, hence exact conservation; the filtered fluxes are multiplied by the face
mask again so nothing leaks into land.

Speed (XLA on CPU). `self_advection_diffusion`, the transport of the paper equation, computes the
same fluxes as the separate operators, laid out for XLA's loop fusion: one padded copy of the
fields (`with_halo`) so that every neighbour is a slice (shifted copies along the minor axis are
materialised one by one), each face flux once with only its upwind reconstruction, and in-place
writes (`dynamic_update_slice`) instead of concatenations, which XLA would fuse into the
divergence loop as per-element branches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.errors import GridError
from neuralogcm_jax.grid import Grid

Array = Any

__all__ = [
    "Operators",
    "polar_filter_transfer",
    "limited_increment",
]


def polar_filter_transfer(lat_deg: np.ndarray, n_lon: int, cutoff_lat_deg: float) -> np.ndarray:
    """``[H, n_lon // 2 + 1]`` damping factor ``a_k(phi)`` of zonal wavenumber ``k`` per row.

    ``a_k = min(1, cos(phi) / (cos(phi_c) sin(k pi / n_lon)))`` poleward of ``|phi| > phi_c``,
    1 elsewhere and for ``k = 0`` (the zonal mean flux is never touched).
    """
    if not 0.0 < cutoff_lat_deg <= 90.0:
        raise GridError(f"polar filter cutoff latitude must be in (0, 90] deg, got {cutoff_lat_deg}")
    lat = np.asarray(lat_deg, dtype=np.float64)
    k = np.arange(n_lon // 2 + 1)
    s = np.sin(np.pi * k / n_lon)  # sin(k dlon / 2) with dlon = 2 pi / n_lon
    ratio = np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(cutoff_lat_deg))
    with np.errstate(divide="ignore"):
        a = np.minimum(1.0, ratio[:, None] / np.where(s > 0, s, np.inf)[None, :])
    a[:, 0] = 1.0
    a[np.abs(lat) <= cutoff_lat_deg] = 1.0
    return a


def limited_increment(d_far: Array, d_near: Array) -> Array:
    """Koren-limited increment from a cell centre to one of its faces (times 2).

    `d_near` is the difference across the face (neighbour beyond the face minus the cell),
    `d_far` the difference on the opposite side (the cell minus its other neighbour). The face
    value is ``q + increment / 2`` with

        increment = minmod-like( 2 d_far, (d_far + 2 d_near) / 3, 2 d_near ),

    i.e. the third-order upwind-biased (kappa = 1/3) reconstruction where the field is smooth,
    limited to the TVD region (Sweby: ``phi(r) <= min(2, 2r)``) and zero at extrema, so no new
    extrema are made.
    """
    third = (d_far + 2.0 * d_near) / 3.0
    mag = jnp.minimum(jnp.minimum(2.0 * jnp.abs(d_far), 2.0 * jnp.abs(d_near)), jnp.abs(third))
    return jnp.where(d_far * d_near > 0, jnp.sign(d_near) * mag, jnp.zeros_like(third))


def _wrap_columns(x: Array, left: int, right: int) -> Array:
    """Periodic halo in longitude: ``[..., W] -> [..., left + W + right]``.

    One concatenation, after which every zonal neighbour is a slice; XLA fuses slices into their
    consumers but materialises each ``jnp.roll`` (a concatenation), so this is much cheaper than
    several rolls.
    """
    return jnp.concatenate([x[..., x.shape[-1] - left :], x, x[..., :right]], axis=-1)


def _pad_rows(x: Array) -> Array:
    """Append a zero face row on both sides: ``[..., H-1, W] -> [..., H+1, W]``."""
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (0, 0)]
    return jnp.pad(x, pad)


HALO = 2  # cells beyond each side that the limited stencil of one face reads


def with_halo(q: Array) -> Array:
    """``[..., H, W] -> [..., H+4, W+4]``: `HALO` zero rows beyond each wall and `HALO` periodic
    columns on each side, so that every neighbour a face flux reads is a plain slice.

    A zero pad and two in-place updates of the thin column strips: XLA fuses slices of the
    result into the flux loops, whereas shifted copies (`jnp.roll`, concatenations along the
    minor axis) are materialised one by one. The zero rows are never used as values: the row
    faces beyond the walls are closed, so every difference across them is masked.
    """
    w = q.shape[-1]
    pad = [(0, 0)] * (q.ndim - 2) + [(HALO, HALO), (HALO, HALO)]
    p = jnp.pad(q, pad)
    zero = (0,) * (q.ndim - 1)
    p = jax.lax.dynamic_update_slice(p, p[..., w : w + HALO], zero + (0,))
    return jax.lax.dynamic_update_slice(p, p[..., HALO : 2 * HALO], zero + (w + HALO,))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Operators:
    """Metric constants of a grid as arrays of one dtype, and the operators that use them.

    Build with `Operators.from_grid`. Array attributes (all of the state's dtype):

      wet: ``[L, H, W]`` 1 on ocean cells, 0 on land.
      mask_x: ``[L, H, W]`` 1 where the face east of a cell is open.
      mask_x_halo: ``[L, H, W+3]`` `mask_x` of cells ``-2 .. W`` (periodic halo).
      mask_y: ``[L, H+1, W]`` 1 where face ``j`` (between rows ``j-1`` and ``j``) is open.
      mask_y_halo: ``[L, H+5, W]`` `mask_y` of faces ``-2 .. H+2`` (those beyond the walls closed).
      inv_area: ``[H, 1]`` 1 / cell area (1/m^2).
      dx: ``[H, 1]`` zonal distance between neighbouring centres of a row (m).
      dy: ``[]`` meridional distance between centres, also the length of zonal faces (m).
      face_len_y: ``[H+1, 1]`` length of meridional faces (m).
      coriolis: ``[H, 1]`` Coriolis parameter f (1/s).
      tan_lat_over_r: ``[H, 1]`` ``tan(phi) / R`` (1/m) of the metric terms; 0 on planar grids.
      filter_adv, filter_diff: ``[Hp, W//2+1]`` polar-filter factors of the ``Hp`` filtered rows
        (the first `n_filter_top` and last `n_filter_bottom` rows); empty when no filter.

    Static attributes: `y_sign` (+1 if the row index runs northward), `n_filter_top`,
    `n_filter_bottom`, `joint_filter` (True: the whole zonal flux is damped by ``a_k^2``, one
    transform instead of two; `filter_adv` then equals `filter_diff`).
    """

    wet: Array
    mask_x: Array
    mask_x_halo: Array
    mask_y: Array
    mask_y_halo: Array
    inv_area: Array
    dx: Array
    dy: Array
    face_len_y: Array
    coriolis: Array
    tan_lat_over_r: Array
    filter_adv: Array
    filter_diff: Array
    y_sign: float = dataclasses.field(metadata=dict(static=True), default=1.0)
    n_filter_top: int = dataclasses.field(metadata=dict(static=True), default=0)
    n_filter_bottom: int = dataclasses.field(metadata=dict(static=True), default=0)
    joint_filter: bool = dataclasses.field(metadata=dict(static=True), default=False)

    # the array attributes with a level axis (their first), for cutting the operators into blocks
    # of levels
    LEVEL_FIELDS = ("wet", "mask_x", "mask_x_halo", "mask_y", "mask_y_halo")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_grid(
        cls, grid: Grid, dtype: Any = jnp.float32, polar_filter_lat_deg: float | None = 60.0,
        joint_filter: bool = False,
    ) -> Operators:
        """Operators of `grid` with constants in `dtype`.

        `polar_filter_lat_deg`: cutoff latitude (deg) of the polar Fourier filter of zonal fluxes;
        None (or a planar grid) disables it.
        `joint_filter`: damp the advective zonal flux by ``a_k^2`` like the diffusive one, so
        their sum is filtered with one transform (see the module docstring); default False
        (``a_k`` for advective fluxes).
        """
        dtype = jnp.dtype(dtype)
        h, w = grid.shape
        spherical = np.isfinite(grid.radius)

        def arr(x):
            # numpy, not jax: an Operators may be built lazily while a jit trace is running and
            # must not capture tracers; numpy leaves become constants of whatever uses them.
            return np.asarray(np.asarray(x, dtype=np.float64), dtype=dtype)

        n_top = n_bottom = 0
        fa = np.ones((0, w // 2 + 1))
        if spherical and polar_filter_lat_deg is not None and polar_filter_lat_deg < 90.0:
            a = polar_filter_transfer(grid.lat, w, polar_filter_lat_deg)
            active = np.any(a < 1.0, axis=1)
            # Filtered rows are polar caps: a prefix and a suffix of the rows (either orientation).
            n_top = int(np.argmin(active)) if not active.all() else h
            n_bottom = int(np.argmin(active[::-1])) if not active.all() else 0
            if active[n_top : h - n_bottom].any():  # pragma: no cover - regular lat grids never
                raise GridError("polar filter rows are not two polar caps; latitudes must be sorted")
            fa = np.concatenate([a[:n_top], a[h - n_bottom :]], axis=0)
        tan = np.tan(np.deg2rad(grid.lat)) / grid.radius if spherical else np.zeros(h)
        return cls(
            wet=arr(grid.wet),
            mask_x=arr(grid.face_mask_x),
            mask_x_halo=arr(np.concatenate(
                [grid.face_mask_x[..., -2:], grid.face_mask_x, grid.face_mask_x[..., :1]], -1)),
            mask_y=arr(grid.face_mask_y),
            mask_y_halo=arr(np.pad(np.asarray(grid.face_mask_y), ((0, 0), (2, 2), (0, 0)))),
            inv_area=arr(1.0 / grid.area)[:, None],
            dx=arr(grid.dx)[:, None],
            dy=arr(grid.dy),
            face_len_y=arr(grid.face_len_y)[:, None],
            coriolis=arr(grid.coriolis)[:, None],
            tan_lat_over_r=arr(tan)[:, None],
            filter_adv=arr(fa**2 if joint_filter else fa),
            filter_diff=arr(fa**2),
            y_sign=float(grid.y_sign),
            n_filter_top=n_top,
            n_filter_bottom=n_bottom,
            joint_filter=bool(joint_filter),
        )

    @property
    def dtype(self):
        return self.wet.dtype

    @property
    def has_polar_filter(self) -> bool:
        return self.n_filter_top + self.n_filter_bottom > 0

    # ------------------------------------------------------------------ divergence
    def flux_divergence(self, fx: Array, fy: Array) -> Array:
        """Net outflow per unit area, ``[..., L, H, W]``, from face fluxes.

        `fx` ``[..., L, H, W]`` (east faces, eastward positive) and `fy` ``[..., L, H+1, W]``
        (row faces, positive towards larger row index), in quantity x m^2/s per metre of depth.
        The tendency of the cell averages is ``-flux_divergence``.
        """
        out_x = fx - jnp.roll(fx, 1, axis=-1)
        out_y = fy[..., 1:, :] - fy[..., :-1, :]
        return (out_x + out_y) * self.inv_area

    # ------------------------------------------------------------------ polar filter
    def polar_filter(self, fx_adv: Array, fx_diff: Array | None = None) -> Array:
        """Filtered and re-masked zonal face flux ``[..., L, H, W]``.

        `fx_adv` is damped by ``a_k`` and `fx_diff` (if given) by ``a_k^2``; their sum is
        returned. Only the polar-cap rows are transformed.
        """
        fx = fx_adv if fx_diff is None else fx_adv + fx_diff
        if not self.has_polar_filter:
            return fx * self.mask_x
        h, w = fx.shape[-2], fx.shape[-1]
        nt, nb = self.n_filter_top, self.n_filter_bottom

        def caps(x):
            return jnp.concatenate([x[..., :nt, :], x[..., h - nb :, :]], axis=-2)

        if self.joint_filter:
            spec = jnp.fft.rfft(caps(fx), axis=-1) * self.filter_diff
        else:
            spec = jnp.fft.rfft(caps(fx_adv), axis=-1) * self.filter_adv
            if fx_diff is not None:
                spec = spec + jnp.fft.rfft(caps(fx_diff), axis=-1) * self.filter_diff
        filtered = jnp.fft.irfft(spec, n=w, axis=-1).astype(fx.dtype)
        out = jnp.concatenate(
            [filtered[..., :nt, :], fx[..., nt : h - nb, :], filtered[..., nt:, :]], axis=-2
        )
        return out * self.mask_x

    def _zonal_differences(self, q: Array, q_halo: Array | None = None) -> Array:
        """``[..., W+3]``: ``q[i+1] - q[i]`` across the east face of cells ``i = -2 .. W``,
        zero through closed faces."""
        qp = _wrap_columns(q, 2, 2) if q_halo is None else q_halo
        return (qp[..., 1:] - qp[..., :-1]) * self.mask_x_halo

    # ------------------------------------------------------------------ diffusion
    def diffusive_fluxes(self, q: Array, nu: Array) -> tuple[Array, Array]:
        """Down-gradient Laplacian fluxes ``-nu grad(q) * face length`` (unfiltered).

        `q` ``[..., L, H, W]``; `nu` (m^2/s) broadcastable to it (scalar, ``[L, 1, 1]``, ...).
        Returns ``(fx [..., L, H, W], fy [..., L, H+1, W])``, zero through closed faces.
        """
        w = q.shape[-1]
        fx = -nu * self._zonal_differences(q)[..., 2 : w + 2] * (self.dy / self.dx)
        dqy = q[..., 1:, :] - q[..., :-1, :]
        fy = -nu * _pad_rows(dqy) * self.mask_y * (self.face_len_y / self.dy)
        return fx, fy

    def laplacian_diffusion(self, q: Array, nu: Array, *, polar_filter: bool = True) -> Array:
        """Tendency ``div(nu grad q)`` of `q` ``[..., L, H, W]`` (units of q per second).

        Flux form with zero flux through closed faces (no exchange with land); the zonal fluxes
        of the polar caps are filtered when `polar_filter`.
        """
        fx, fy = self.diffusive_fluxes(q, nu)
        if polar_filter and self.has_polar_filter:
            fx = self.polar_filter(jnp.zeros_like(fx), fx)
        return -self.flux_divergence(fx, fy)

    # ------------------------------------------------------------------ advection
    def face_velocities(self, u: Array, v: Array) -> tuple[Array, Array]:
        """Face-normal velocities (m/s) from cell-centred ``u`` (east) and ``v`` (north).

        Returns ``(u_east [..., L, H, W], w_row [..., L, H+1, W])``: the average of the two cells
        a face joins, zero on closed faces; ``w_row`` points towards larger row index
        (``y_sign * v``).
        """
        return self.centres_to_faces(u, self.y_sign * v)

    def centres_to_faces(self, cx: Array, cy: Array) -> tuple[Array, Array]:
        """Average of the two cells each face joins, zero on closed faces.

        `cx` and `cy` ``[..., L, H, W]`` are centre values of an eastward and a row-index
        (``y_sign`` times northward) component. Returns ``(east faces [..., L, H, W],
        row faces [..., L, H+1, W])``.
        """
        fx = 0.5 * (cx + jnp.roll(cx, -1, axis=-1)) * self.mask_x
        fy = _pad_rows(0.5 * (cy[..., 1:, :] + cy[..., :-1, :])) * self.mask_y
        return fx, fy

    def face_excess(self, gx: Array, gy: Array, order: int = 1) -> tuple[Array, Array]:
        """What compact face gradients ``(gx [..., L, H, W], gy [..., L, H+1, W])`` (east faces,
        row faces) hold beyond the faces' average of their centre averages, ``(I - A C)^order``
        of them (``C``: each cell the mean of its open faces along an axis, so that a uniform
        gradient has no excess beside a wall either; ``A``: each face the mean of its two cells,
        `centres_to_faces`). A 2-cell checkerboard of the field whose gradients they are: all of
        it, whatever the order; a smooth field: ``(k dx / 2)^(2 order)`` of it (the Rhie-Chow
        excess; order 1 is ``grad_face - avg(grad_centre)`` in the open interior). ``I - A C``
        is symmetric with eigenvalues in [0, 1] (``A C = B^T D^-1 B / 2``, B the cell-face
        incidence, D the open-face count), so every power damps: the correction dissipates."""
        ex, ey = gx, gy
        nx = self.mask_x + jnp.roll(self.mask_x, 1, axis=-1)
        ny = self.mask_y[..., 1:, :] + self.mask_y[..., :-1, :]
        inv_x = jnp.where(nx > 0, 1.0 / jnp.maximum(nx, 1.0), 0.0)
        inv_y = jnp.where(ny > 0, 1.0 / jnp.maximum(ny, 1.0), 0.0)
        for _ in range(int(order)):
            ax, ay = self.centres_to_faces((ex + jnp.roll(ex, 1, axis=-1)) * inv_x,
                                           (ey[..., 1:, :] + ey[..., :-1, :]) * inv_y)
            ex, ey = ex - ax, ey - ay
        return ex, ey

    def advective_fluxes(self, q: Array, u_east: Array, w_row: Array) -> tuple[Array, Array]:
        """Upwind limited fluxes ``q_face * velocity * face length`` (unfiltered).

        `q` ``[..., L, H, W]`` is reconstructed to each face from the upwind cell with the
        Koren-limited third-order upwind-biased scheme (`limited_increment`); differences across
        closed faces count as zero, so land values are never read and the scheme falls back to
        first-order upwind next to coasts.
        Returns ``(fx [..., L, H, W], fy [..., L, H+1, W])``.
        """
        # zonal, on a periodic halo of two cells: dp[i + 2] = q[i+1] - q[i] across the east face
        # of cell i (zero where closed), dp[i + 1] across its west face, dp[i + 3] across the east
        # face of cell i+1
        w = q.shape[-1]
        qp = _wrap_columns(q, 2, 2)
        dp = self._zonal_differences(q, qp)
        d_w, d_e, d_ee = dp[..., 1 : w + 1], dp[..., 2 : w + 2], dp[..., 3 : w + 3]
        q_left = qp[..., 2 : w + 2] + 0.5 * limited_increment(d_w, d_e)  # from cell i
        q_right = qp[..., 3 : w + 3] - 0.5 * limited_increment(d_ee, d_e)  # from cell i+1
        fx = u_east * jnp.where(u_east > 0, q_left, q_right) * self.dy
        # meridional: d_f[j] = q[j] - q[j-1] across face j (faces 0 and H closed)
        d_f = _pad_rows(q[..., 1:, :] - q[..., :-1, :]) * self.mask_y
        d_lo, d_hi = d_f[..., :-1, :], d_f[..., 1:, :]  # across the low / high face of row j
        q_lo = (q + 0.5 * limited_increment(d_lo, d_hi))[..., :-1, :]  # face j from row j-1
        q_hi = (q - 0.5 * limited_increment(d_hi, d_lo))[..., 1:, :]  # face j from row j
        w_in = w_row[..., 1:-1, :]
        fy = _pad_rows(w_in * jnp.where(w_in > 0, q_lo, q_hi)) * self.face_len_y
        return fx, fy

    def advection(self, q: Array, u: Array, v: Array, *, polar_filter: bool = True) -> Array:
        """Tendency ``-div(q U)`` of `q` ``[..., L, H, W]`` advected by cell-centred ``(u, v)``."""
        ue, wr = self.face_velocities(u, v)
        fx, fy = self.advective_fluxes(q, ue, wr)
        if polar_filter and self.has_polar_filter:
            fx = self.polar_filter(fx)
        return -self.flux_divergence(fx, fy)

    def advection_diffusion(self, q: Array, u: Array, v: Array, nu: Array) -> Array:
        """Tendency ``-div(q U) + div(nu grad q)`` with one polar-filter pass for both fluxes."""
        ue, wr = self.face_velocities(u, v)
        fxa, fya = self.advective_fluxes(q, ue, wr)
        fxd, fyd = self.diffusive_fluxes(q, nu)
        fx = self.polar_filter(fxa, fxd)
        return -self.flux_divergence(fx, fya + fyd)

    # ------------------------------------------------------------------ fused transport
    def _zonal_fluxes_padded(self, qp: Array, nu: Array, r0: int, r1: int, separate: bool = False):
        """Advective and diffusive fluxes through the east faces of cells ``-1 .. W-1`` of rows
        ``r0 .. r1-1``, ``[..., C, L, r1-r0, W+1]``, from the padded stack `qp` (see
        `self_advection_diffusion`); their sum, or ``(advective, diffusive)`` when `separate`.

        Same scheme as `advective_fluxes` / `diffusive_fluxes`, but only the upwind reconstruction
        is computed: seen from the face, flow from the far side mirrors flow from the near side and
        the limiter is odd (``limited_increment(-a, -b) = -limited_increment(a, b)``), so either
        direction is one limiter call on direction-selected differences.
        """
        w = qp.shape[-1] - 2 * HALO
        rows = slice(HALO + r0, HALO + r1)

        def q_at(di):  # q[i + di] for the cells i = -1 .. W-1
            return qp[..., rows, HALO - 1 + di : HALO + di + w]

        def mask_at(di):  # mask of the east face of cell i + di
            return self.mask_x_halo[:, r0:r1, 1 + di : 2 + di + w]

        q, q_e = q_at(0), q_at(1)
        open_e = mask_at(0)
        d_e = (q_e - q) * open_e  # across the east face of cell i
        d_w = (q - q_at(-1)) * mask_at(-1)  # across its west face
        d_ee = (q_at(2) - q_e) * mask_at(1)  # across the east face of cell i+1
        u_east = 0.5 * (q[..., 0:1, :, :, :] + q_e[..., 0:1, :, :, :]) * open_e
        east = u_east > 0
        inc = limited_increment(jnp.where(east, d_w, -d_ee), jnp.where(east, d_e, -d_e))
        fxa = u_east * (jnp.where(east, q, q_e) + 0.5 * inc) * self.dy
        fxd = -nu * d_e * (self.dy / self.dx[r0:r1])
        return (fxa, fxd) if separate else fxa + fxd

    def _row_fluxes_padded(self, qp: Array, nu: Array) -> Array:
        """Advective plus diffusive fluxes through the row faces ``0 .. H``,
        ``[..., C, L, H+1, W]``, from the padded stack `qp` (upwind only, as the zonal ones);
        zero through the walls."""
        h, w = qp.shape[-2] - 2 * HALO, qp.shape[-1] - 2 * HALO

        def q_at(dj):  # q[j + dj] for face j = 0 .. H (zero beyond the walls)
            return qp[..., HALO + dj : HALO + 1 + h + dj, HALO : HALO + w]

        def mask_at(dj):  # mask of face j + dj (closed beyond the walls)
            return self.mask_y_halo[:, 2 + dj : 3 + h + dj]

        q_lo, q_hi = q_at(-1), q_at(0)  # the rows below and above face j
        open_f = mask_at(0)
        d_f = (q_hi - q_lo) * open_f
        d_lo = (q_lo - q_at(-2)) * mask_at(-1)
        d_hi = (q_at(1) - q_hi) * mask_at(1)
        v = q_lo[..., 1:2, :, :, :] + q_hi[..., 1:2, :, :, :]
        w_row = 0.5 * (self.y_sign * v) * open_f
        up = w_row > 0  # towards larger row index: fed from row j-1
        inc = limited_increment(jnp.where(up, d_lo, -d_hi), jnp.where(up, d_f, -d_f))
        fya = w_row * (jnp.where(up, q_lo, q_hi) + 0.5 * inc) * self.face_len_y
        fyd = -nu * d_f * (self.face_len_y / self.dy)
        return fya + fyd

    def self_advection_diffusion(
        self, q: Array, nu: Array, advective: Array | None = None
    ) -> Array:
        """Tendency ``-div(q U) + div(nu grad q)`` of a stack ``q [..., C, L, H, W]`` carried by
        its own first two channels, ``U = (q[..., 0, :, :, :], q[..., 1, :, :, :])`` (u east and
        v north, m/s); `nu` (m^2/s) broadcastable to ``[C, L, 1, 1]``.

        `advective`: None, or a 0/1 factor per channel ``[C, 1, 1, 1]``; the channels marked 1
        get ``+ q div(U)`` as well, i.e. the advective form ``-U . grad q`` (a uniform field stays
        uniform under divergent flow; content is then no longer conserved exactly). ``div(U)`` is
        the divergence of the very face velocities that carry the fluxes, through the same polar
        filter, so that for ``q = 1`` the two parts cancel to round-off; it costs one more flux
        channel, not a second advection pass.

        The same fluxes, polar filter and divergence as `advection_diffusion` (equal to
        round-off), arranged for speed: one padded copy of `q` (`with_halo`) from which every
        stencil is a slice; each face flux is computed once, advective and diffusive together
        (zonal fluxes with one face of overlap, row fluxes including the closed walls, so the
        divergence is two differences of slices); only the polar-cap rows are Fourier
        transformed, both caps in one batch, and written over their rows in place.
        """
        h, w = q.shape[-2], q.shape[-1]
        qp = with_halo(q)
        fx = self._zonal_fluxes_padded(qp, nu, 0, h)  # faces -1 .. W-1
        fx_vol = None if advective is None else self._zonal_volume_flux_padded(qp, 0, h)
        n = q.shape[-4]
        if self.has_polar_filter:
            nt, nb = self.n_filter_top, self.n_filter_bottom
            if self.joint_filter:  # one transfer for the sum: the cap rows of `fx` itself
                caps = jnp.concatenate([fx[..., :nt, 1:], fx[..., h - nb :, 1:]], axis=-2)
                if fx_vol is not None:  # the volume flux in the same transform
                    caps = jnp.concatenate([caps, jnp.concatenate(
                        [fx_vol[..., :nt, 1:], fx_vol[..., h - nb :, 1:]], axis=-2)], axis=-4)
                spec = jnp.fft.rfft(caps, axis=-1) * self.filter_diff
            else:
                caps = [self._zonal_fluxes_padded(qp, nu, r0, r1, separate=True)
                        for r0, r1 in ((0, nt), (h - nb, h)) if r1 > r0]
                fxa = jnp.concatenate([c[0][..., 1:] for c in caps], axis=-2)
                fxd = jnp.concatenate([c[1][..., 1:] for c in caps], axis=-2)
                spec = (jnp.fft.rfft(fxa, axis=-1) * self.filter_adv
                        + jnp.fft.rfft(fxd, axis=-1) * self.filter_diff)
                if fx_vol is not None:
                    vol = [fx_vol[..., r0:r1, 1:] for r0, r1 in ((0, nt), (h - nb, h)) if r1 > r0]
                    spec_vol = jnp.fft.rfft(jnp.concatenate(vol, axis=-2), axis=-1)
                    spec = jnp.concatenate([spec, spec_vol * self.filter_adv], axis=-4)
            mask_caps = jnp.concatenate([self.mask_x[:, :nt], self.mask_x[:, h - nb :]], axis=-2)
            filt = jnp.fft.irfft(spec, n=w, axis=-1).astype(fx.dtype) * mask_caps
            filt = jnp.concatenate([filt[..., w - 1 :], filt], axis=-1)  # face -1 is face W-1
            # Written into the unfiltered array in place (dynamic_update_slice) rather than
            # assembled by concatenation, which XLA would fuse into the divergence as a per-element
            # branch; this also keeps `fx` an array, so it is not recomputed per use.
            zero = (0,) * (fx.ndim - 2)
            if fx_vol is not None:
                filt, filt_vol = filt[..., :n, :, :, :], filt[..., n:, :, :, :]
                if nt:
                    fx_vol = jax.lax.dynamic_update_slice(fx_vol, filt_vol[..., :nt, :],
                                                          zero + (0, 0))
                if nb:
                    fx_vol = jax.lax.dynamic_update_slice(fx_vol, filt_vol[..., nt:, :],
                                                          zero + (h - nb, 0))
            if nt:
                fx = jax.lax.dynamic_update_slice(fx, filt[..., :nt, :], zero + (0, 0))
            if nb:
                fx = jax.lax.dynamic_update_slice(fx, filt[..., nt:, :], zero + (h - nb, 0))
        fy = self._row_fluxes_padded(qp, nu)  # faces 0 .. H
        # The walls carry nothing (already so through their closed masks). Writing the zeros in
        # place also keeps `fy` an array: fused into the divergence it would be computed twice.
        wall = jnp.zeros(fy.shape[:-2] + (1, w), fy.dtype)
        zero = (0,) * (fy.ndim - 2)
        fy = jax.lax.dynamic_update_slice(fy, wall, zero + (0, 0))
        fy = jax.lax.dynamic_update_slice(fy, wall, zero + (h, 0))
        out = (fx[..., 1:] - fx[..., :-1]) + (fy[..., 1:, :] - fy[..., :-1, :])
        if advective is None:
            return -out * self.inv_area
        # div(U) * area of the same face velocities (through the same filter), [..., 1, L, H, W]
        fy_vol = self._row_volume_flux_padded(qp)
        div_u = (fx_vol[..., 1:] - fx_vol[..., :-1]) + (fy_vol[..., 1:, :] - fy_vol[..., :-1, :])
        return (q * (div_u * advective) - out) * self.inv_area

    def _zonal_volume_flux_padded(self, qp: Array, r0: int, r1: int) -> Array:
        """``u_east * dy`` (m^2/s) through the east faces of cells ``-1 .. W-1`` of rows
        ``r0 .. r1-1``, ``[..., 1, L, r1-r0, W+1]``: the face velocity of `_zonal_fluxes_padded`
        (the mean of the two cells, zero through closed faces)."""
        w = qp.shape[-1] - 2 * HALO
        u = qp[..., 0:1, :, HALO + r0 : HALO + r1, :]
        return (0.5 * (u[..., HALO - 1 : HALO + w] + u[..., HALO : HALO + w + 1])
                * self.mask_x_halo[:, r0:r1, 1 : 2 + w] * self.dy)

    def _row_volume_flux_padded(self, qp: Array) -> Array:
        """``w_row * face length`` (m^2/s) through the row faces ``0 .. H``,
        ``[..., 1, L, H+1, W]``: the face velocity of `_row_fluxes_padded`."""
        h, w = qp.shape[-2] - 2 * HALO, qp.shape[-1] - 2 * HALO
        v = qp[..., 1:2, :, :, HALO : HALO + w]
        v_face = v[..., HALO - 1 : HALO + h, :] + v[..., HALO : HALO + 1 + h, :]
        return 0.5 * (self.y_sign * v_face) * self.mask_y_halo[:, 2 : 3 + h] * self.face_len_y

    # ------------------------------------------------------------------ integrals
    def total(self, q: Array) -> Array:
        """Area-weighted integral over wet cells, summed over the last three axes (q x m^2)."""
        return jnp.sum(q * self.wet / self.inv_area, axis=(-3, -2, -1))
