"""Vertical physics of a column: hydrostatic pressure, implicit mixing, continuity, advection.

Arrays are ``[L, H, W]`` with level 0 at the surface and the level index increasing downward.
Interfaces are ``[L+1, H, W]``: interface ``k`` is the top of layer ``k`` (0: sea surface, L: the
bottom of the deepest layer). Vertical velocity ``w`` is positive upward (towards smaller k).
A cell below the deepest wet level of its column (`Grid.bottom_level`) is land: no flux crosses
an interface unless the cells on both sides are wet, so the sea floor and land are closed.

Layer thicknesses `h` are passed explicitly (``[L, H, W]`` or broadcastable ``[L, 1, 1]``), so a
stretched coordinate (z*: ``h = dz (1 + eta / H)``) is as conservative as fixed levels.
All functions are pure `jax.numpy`, differentiable, and keep the dtype of the field.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2
from neuralogcm_jax.errors import ConfigError

# The interface values of `implicit_vertical_diffusion`'s vertical advection.
VERTICAL_ADVECTION_SCHEMES = ("upwind", "centred")

Array = Any


def level_sum(x: Array, weights: Array | None = None) -> Array:
    """``sum_k weights_k x_k`` over the level axis of ``x [L, ...]`` (weights ``[L]``, default 1).

    A matrix-vector product rather than `jnp.sum(axis=0)`: XLA:CPU fuses a reduction over the
    leading (outermost) axis into each consumer and recomputes it per element, which made the
    depth sums of the primitive substep about a third of its time. HIGHEST precision, so that
    GPUs and TPUs do not round the f32 sum through TF32 or bfloat16.
    """
    w = jnp.ones(x.shape[:1], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    return jnp.tensordot(w, x, axes=1, precision=jax.lax.Precision.HIGHEST)


def level_cumsum(x: Array, reverse: bool = False) -> Array:
    """Cumulative sum of ``x [L, ...]`` down the levels (up them when `reverse`), as one
    product with a triangular ``[L, L]`` matrix (see `level_sum` for why)."""
    n = x.shape[0]
    tri = np.triu(np.ones((n, n))) if reverse else np.tril(np.ones((n, n)))
    return jnp.tensordot(jnp.asarray(tri, x.dtype), x, axes=1, precision=jax.lax.Precision.HIGHEST)


def interface_open(wet: Array) -> Array:
    """``[L-1, H, W]`` bool: interface between layers k and k+1 is open (both wet)."""
    wet = jnp.asarray(wet, bool)
    return wet[:-1] & wet[1:]


def hydrostatic_pressure(rho_anom: Array, depth_m: Array, g: float = GRAVITY_M_S2) -> Array:
    """Hydrostatic pressure anomaly (Pa) at layer centres from the density anomaly.

    ``p'(z) = g integral_0^z rho'(z') dz'`` (trapezoidal between centres, rho' constant from the
    surface to the first centre), the baroclinic part of the pressure; the free-surface part
    ``rho0 g eta`` is added separately.

    Args:
      rho_anom: ``[L, H, W]`` density minus the reference density (kg/m^3).
      depth_m: ``[L]`` depths of the layer centres (m, positive down).
    Returns:
      ``[L, H, W]`` pressure anomaly (Pa), same dtype as `rho_anom`.
    """
    dtype = rho_anom.dtype
    depth = jnp.asarray(depth_m, dtype)
    top = g * rho_anom[:1] * depth[0]
    if rho_anom.shape[0] == 1:
        return top
    dzc = (depth[1:] - depth[:-1])[:, None, None]
    increments = g * 0.5 * (rho_anom[1:] + rho_anom[:-1]) * dzc
    return jnp.concatenate([top, top + level_cumsum(increments)], axis=0)


def implicit_vertical_diffusion(
    field: Array,
    kappa: Array,
    dt: float | Array,
    h: Array,
    wet: Array,
    surface_flux: Array | None = None,
    bottom_drag: Array | None = None,
    w: Array | None = None,
    advective_form: bool = False,
    advection: str = "upwind",
) -> Array:
    """One backward-Euler step of vertical diffusion (and advection), a tridiagonal solve per column.

    Solves ``h_k (c_k' - c_k) / dt = F_{k} - F_{k+1} + Q_k`` with the diffusive flux through the
    top of layer k ``F_k = kappa_k (c'_{k-1} - c'_k) / dzc_k`` (dzc: distance between centres),
    zero flux through closed interfaces (land, the sea floor), the prescribed `surface_flux`
    entering layer 0, and a linear drag ``-bottom_drag * c'`` on the deepest wet layer.
    Backward Euler is unconditionally stable, so kappa can be large (convective mixing).
    The column integral ``sum_k h_k c_k`` changes only by the surface flux and the drag.

    With `w` (``[L+1, H, W]``, m/s, up, at the interfaces) the vertical advection is solved in
    the same system: layer k gains ``F_{k+1} - F_k`` with the flux ``F = w c_face``, implicit.
    `advection` chooses ``c_face``: ``"upwind"`` (first order; stable and monotone whatever ``w
    dt / h``, where the thin top layers of the GLORYS levels would need ``w dt < 1 m``
    explicitly; its truncation error is a diffusivity ``|w| dzc / 2``) or ``"centred"`` (second
    order: linear interpolation between the two layer centres, ``(h_below c_above + h_above
    c_below) / (h_above + h_below)``; no numerical diffusion, not monotone where the cell Peclet
    number ``|w| dzc / kappa`` exceeds 2). In flux form (default)
    the column content is conserved; with `advective_form` (momentum) the term solved is
    ``F_{k+1} - F_k - c_k (w_{k+1} - w_k)``, which keeps a uniform c uniform.

    Several fields that share the operator (T and S; u and v) may be stacked as
    ``[C, L, H, W]``: one solve with C right-hand sides, each field as if solved alone.

    Args:
      field: ``[L, H, W]`` the diffused quantity c (e.g. degC, psu, m/s), or a stack
        ``[C, L, H, W]`` of C such fields.
      kappa: diffusivity (m^2/s) at the inner interfaces: a scalar, ``[L-1]`` or broadcastable
        to ``[L-1, H, W]``.
      dt: time step (s).
      h: layer thicknesses (m), ``[L, H, W]`` or ``[L, 1, 1]``.
      wet: ``[L, H, W]`` bool ocean mask.
      surface_flux: ``[H, W]`` flux into the ocean through the surface, in units of c times m/s
        (e.g. K m/s = heat flux / (rho0 cp)); ``[C, H, W]`` for a stack (None for none).
      bottom_drag: linear drag velocity (m/s), scalar or ``[H, W]``, applied to the deepest wet
        layer of each column (momentum only); None for none.
      w: vertical velocity at the interfaces (None: no advection).
      advective_form: solve ``w dc/dz`` instead of ``d(w c)/dz`` (momentum).
      advection: the interface value of the advective flux, one of
        `VERTICAL_ADVECTION_SCHEMES`.
    Returns:
      the diffused field(s), shape and dtype of `field`.
    """
    if advection not in VERTICAL_ADVECTION_SCHEMES:
        raise ConfigError(f"unknown vertical advection scheme {advection!r}; known: "
                          f"{', '.join(VERTICAL_ADVECTION_SCHEMES)}")
    dtype = field.dtype
    stacked = field.ndim == 4
    fields = field if stacked else field[None]  # [C, L, H, W]
    L = fields.shape[1]
    wet = jnp.asarray(wet, bool)
    h = jnp.broadcast_to(jnp.asarray(h, dtype), fields.shape[1:])
    dt = jnp.asarray(dt, dtype)
    # The system is (h + B) c' = h c + q. It is solved for the increment, (h + B) (c' - c) =
    # q - B c, with B c written as s c + dl (c_{k-1} - c_k) + du (c_{k+1} - c_k) (s: B's row sum,
    # built term by term, zero for mixing and advective-form advection): the solve's rounding
    # (~ eps kappa dt / h^2 relative, 1e-4 in float32 for convective mixing of the 1 m top
    # layers) then falls on the day's small change instead of on c itself (2e-3 degC per substep
    # at 20 degC), and the right-hand side has no cancellation.
    # Its derivative is implicit (`_implicit_solve`), with the mixing written as couplings times
    # differences, so that the derivative by the diffusivity is a product of differences too.
    resid = jnp.zeros_like(fields)
    if surface_flux is not None:
        q = jnp.asarray(surface_flux, dtype)
        resid = resid.at[:, 0].add(dt * (q if stacked else q[None]) * wet[0])
    diag = h
    rowsum = jnp.zeros_like(h)
    if bottom_drag is not None:
        is_bottom = wet & ~jnp.concatenate([wet[1:], jnp.zeros_like(wet[:1])], axis=0)
        drag = dt * jnp.asarray(bottom_drag, dtype) * is_bottom
        diag = diag + drag
        rowsum = rowsum + drag
    dl = jnp.zeros_like(diag)
    du = jnp.zeros_like(diag)
    if w is not None and L > 1:
        w_in = jnp.where(interface_open(wet), jnp.asarray(w, dtype)[1:-1], jnp.zeros((), dtype))
        # The flux through interface k+1 (the bottom of layer k) is wp c_{k+1} + wm c_k, [L-1].
        if advection == "upwind":
            wp, wm = jnp.maximum(w_in, 0.0), jnp.minimum(w_in, 0.0)
        else:  # centred: c_face interpolated linearly between the two centres
            wt_below = h[:-1] / (h[:-1] + h[1:])  # c_{k+1}'s weight: h_k / (h_k + h_{k+1})
            wp, wm = w_in * wt_below, w_in * (1.0 - wt_below)
        zero = jnp.zeros_like(wp[:1])
        wp_top = jnp.concatenate([zero, wp], 0)  # w+ at the top interface of layer k
        wm_top = jnp.concatenate([zero, wm], 0)
        wp_bot = jnp.concatenate([wp, zero], 0)  # at the bottom interface of layer k
        wm_bot = jnp.concatenate([wm, zero], 0)
        diag = diag + dt * (wp_top - wm_bot)
        du = du - dt * wp_bot
        dl = dl + dt * wm_top
        if advective_form:
            diag = diag + dt * ((wp_bot + wm_bot) - (wp_top + wm_top))
        else:  # the row sum of the flux form: the convergence of w
            rowsum = rowsum + dt * ((wp_top + wm_top) - (wp_bot + wm_bot))
    a = None
    if L > 1:
        kappa = jnp.asarray(kappa, dtype)
        if kappa.ndim == 1:  # one value per interface
            kappa = kappa[:, None, None]
        dzc = 0.5 * (h[1:] + h[:-1])
        # Coupling coefficient dt * kappa / dzc of each inner interface, zero where closed.
        a = jnp.where(interface_open(wet), dt * kappa / dzc, jnp.zeros((), dtype))
    zero = jnp.zeros_like(fields[:, :1])
    to_above = jnp.concatenate([zero, fields[:, :-1] - fields[:, 1:]], axis=1)  # c_{k-1} - c_k
    to_below = jnp.concatenate([fields[:, 1:] - fields[:, :-1], zero], axis=1)  # c_{k+1} - c_k
    resid = resid - (rowsum * fields + dl * to_above + du * to_below)
    if a is not None:
        resid = resid - _mixing(a, fields)
    sol = fields + _implicit_solve(diag, dl, du, a, resid)
    out = jnp.where(wet, sol, fields)  # land keeps its value exactly
    return out if stacked else out[0]


def _mixing(a: Array, x: Array) -> Array:
    """The mixing operator ``B x`` of couplings `a` ``[L-1, H, W]`` on ``x [C, L, H, W]``: layer
    k loses ``F_{k+1} - F_k`` with the interface flux ``F_j = a_j (x_{j-1} - x_j)``, each flux a
    coupling times a difference (so that a derivative by `a` is one too)."""
    flux = a * (x[:, :-1] - x[:, 1:])  # [C, L-1, H, W], down through the inner interfaces
    zero = jnp.zeros_like(flux[:, :1])
    return jnp.concatenate([flux, zero], axis=1) - jnp.concatenate([zero, flux], axis=1)


def _implicit_solve(diag, dl, du, a, rhs):
    """The tridiagonal system ``(dl, diag, du) + B(a)`` (`_mixing`; `a` None: none) solved for
    ``rhs [C, L, H, W]``, its derivative by implicit differentiation
    (`jax.lax.custom_linear_solve`: the adjoint is one solve of the transposed system, and the
    derivative by the coefficients is that of the operator at the solution).

    Why not the reverse mode of the elimination itself: the derivative by a coupling ``a_j`` is
    ``-(lam_{j-1} - lam_j)(x_{j-1} - x_j)`` (lam the adjoint), a product of two differences
    that are tiny in a column mixed by a large diffusivity. Differentiated through the
    elimination it came out as a sum of six products of whole values that cancel, and in
    float32 it was noise: a 23-level column's 5-day gradient by a 1 m^2/s convective
    diffusivity was 1.2e-3 from float64 (10 m^2/s: 2.2e-2); here the operator writes each flux
    as a coupling times a difference, so its derivative is one too (1.3e-5; 10 m^2/s:
    1.0e-3)."""
    if a is not None:
        zero = jnp.zeros_like(a[:1])
        upper = jnp.concatenate([zero, a], axis=0)
        lower = jnp.concatenate([a, zero], axis=0)
        full = (dl - upper, diag + upper + lower, du - lower)
    else:
        full = (dl, diag, du)
    fl, fd, fu = (jax.lax.stop_gradient(x) for x in full)

    def matvec(x):
        zero = jnp.zeros_like(x[:, :1])
        above = jnp.concatenate([zero, x[:, :-1]], axis=1)
        below = jnp.concatenate([x[:, 1:], zero], axis=1)
        out = diag * x + dl * above + du * below
        return out if a is None else out + _mixing(a, x)

    def solve(_, b):
        return tridiagonal_solve_columns(fl, fd, fu, b)

    def transpose_solve(_, b):
        zero = jnp.zeros_like(fd[:1])
        lo_t = jnp.concatenate([zero, fu[:-1]], axis=0)  # row k of the transpose: M[k-1, k]
        up_t = jnp.concatenate([fl[1:], zero], axis=0)  # M[k+1, k]
        return tridiagonal_solve_columns(lo_t, fd, up_t, b)

    return jax.lax.custom_linear_solve(matvec, rhs, solve, transpose_solve)


def tridiagonal_solve_columns(lower: Array, diag: Array, upper: Array, rhs: Array) -> Array:
    """Solve ``lower_k x_{k-1} + diag_k x_k + upper_k x_{k+1} = rhs_k`` in every column.

    The Thomas algorithm, vectorised over the columns: a `lax.scan` down the ``L`` levels
    (forward elimination) and one back up (substitution), each step an elementwise operation
    on whole ``[H, W]`` levels. Without pivoting, which is stable for the diagonally dominant
    systems of `implicit_vertical_diffusion` (rows dominant in advective form, columns in flux
    form, by the layer thickness h > 0). On CPU this is faster than LAPACK's per-column
    ``gtsv`` (`jax.lax.linalg.tridiagonal_solve`; see `benchmarks/BENCHMARKS.md`).
    Differentiable by the scans' own reverse mode; `implicit_vertical_diffusion` differentiates
    its solve implicitly instead (`_implicit_solve`).

    Args:
      lower, diag, upper: ``[L, H, W]`` (``lower[0]`` and ``upper[L-1]`` are ignored).
      rhs: ``[C, L, H, W]``, C right-hand sides of the same systems.
    Returns:
      ``[C, L, H, W]`` the solutions.
    """
    zero = jnp.zeros_like(diag[0])

    def eliminate(carry, level):
        c_prev, d_prev = carry
        lo, dg, up, r = level
        inv = 1.0 / (dg - lo * c_prev)
        c_k = up * inv
        d_k = (r - lo * d_prev) * inv
        return (c_k, d_k), (c_k, d_k)

    first_lower = lower.at[0].set(0.0)  # nothing above the top level
    init = (zero, jnp.zeros_like(rhs[:, 0]))
    _, (c, d) = jax.lax.scan(eliminate, init, (first_lower, diag, upper, jnp.moveaxis(rhs, 1, 0)))

    def substitute(x_next, level):
        c_k, d_k = level
        x_k = d_k - c_k * x_next
        return x_k, x_k

    _, x = jax.lax.scan(substitute, jnp.zeros_like(rhs[:, 0]), (c, d), reverse=True)
    return jnp.moveaxis(x, 0, 1)


def vertical_velocity(div_transport: Array, dh_dt: Array | None = None) -> Array:
    """Vertical velocity (m/s, up) through the layer interfaces, from continuity.

    Integrates ``dh_k/dt + div(h_k u_k) + w_k - w_{k+1} = 0`` upward from ``w = 0`` at the sea
    floor (and below it, on land). With fixed levels (``dh_dt`` None) the surface value
    ``w_0 = -sum_k div(h_k u_k)`` is the rate of rise of the free surface; in z* coordinates
    ``dh_dt = dz_k / H deta/dt`` and ``w_0 = 0``.

    Args:
      div_transport: ``[L, H, W]`` horizontal divergence of the layer transport h_k u_k (m/s).
      dh_dt: ``[L, H, W]`` rate of change of the layer thickness (m/s) or None.
    Returns:
      ``[L+1, H, W]`` w at the interfaces; ``w[L] = 0``.
    """
    source = -div_transport if dh_dt is None else -(div_transport + dh_dt)
    # w_k = sum_{m >= k} source_m: a reversed cumulative sum.
    w = level_cumsum(source, reverse=True)
    return jnp.concatenate([w, jnp.zeros_like(w[:1])], axis=0)
