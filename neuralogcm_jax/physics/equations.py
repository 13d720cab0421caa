"""Paper-mode tendencies: horizontal advection, Coriolis, the hydrostatic pressure gradient and
Laplacian diffusion (NeuralOGCM, balanced).

The equations, per level, in SI units (``u`` east, ``v`` north, m/s; ``T`` degC; ``S`` psu):

    du/dt = -U.grad u + u v tan(phi)/R + f v - (1/rho0) dp/dx + div(nu_m grad u)
    dv/dt = -U.grad v - u^2 tan(phi)/R - f u - (1/rho0) dp/dy + div(nu_m grad v)
    dT/dt = -U.grad T                                        + div(nu_t grad T)
    dS/dt = -U.grad S                                        + div(nu_t grad S)

with ``U = (u, v)`` the cell-centred velocity, ``f = 2 Omega sin(phi)`` (`Grid.coriolis`) and the
hydrostatic pressure of the state's own SSH ``eta`` and density,
``p(z) = rho0 g eta + g int_0^z rho'(T, S, z') dz'`` (`pressure_gradient_acceleration`; the
equation of state of `physics.eos`, the depth integral of primitive mode's
`vertical.hydrostatic_pressure`). Advection is the finite-volume flux divergence of
`neuralogcm_jax.physics.operators` (limited upwind, closed coasts) in *advective form*,
``-U.grad q = -div(q U) + q div(U)``: paper mode has no vertical velocity, so the horizontal flow
is divergent and the flux form ``-div(q U)`` alone would make tracer (and momentum) where it
converges. The ``tan(phi)/R`` terms are the metric terms of momentum advection on the sphere;
together they rotate ``(u, v)`` at the rate ``u tan(phi)/R``. Momentum diffusion acts on each
component as on a scalar (no flux through coasts: free slip). Land cells have zero tendency.

Options (`PhysicsConfig`): ``pressure_gradient="none"`` drops the pressure gradient and
``tracer_advection`` / ``momentum_advection`` = ``"flux"`` keep only ``-div(q U)``: all three
together are the seed's paper form (`PhysicsConfig.seed_paper`), in which Coriolis rotates every
current, balanced or not (on a day, by ``f * 86400 s``: several turns at mid-latitudes).

Paper mode has no continuity equation: SSH is not prognostic; it is held fixed over the day
(the day step returns it unchanged), and the pressure gradient is computed once a day from the
state at its start and held fixed over the substeps (`paper.make_paper_physics`). The
forcing does not enter paper mode.

Following the Dinosaur convention the equation is an object with *explicit terms* (advection,
metric terms and diffusion, stepped by an SSP Runge-Kutta method) and an *exact part*: Coriolis
and the (fixed) pressure-gradient acceleration ``G``, ``dU/dt = -f k x U + G``, solved exactly
over a step ``dt``: the flow turns by the angle ``-f dt`` about the geostrophic velocity
``U_g = k x G / f`` (`coriolis_pressure_step`), written without dividing by f (half a
rotation, a kick ``sinc(f dt/2) G dt``, half a rotation), so that the equator (f -> 0) needs no
care and geostrophic flow is an exact fixed point for any substep. Forward Euler on Coriolis
amplifies by ``sqrt(1 + (f dt)^2)`` per step and is never stable; the rotation keeps the
kinetic energy of ``U - U_g`` and the inertial period exact. A plain half-rotation / kick /
half-rotation split (no sinc) would keep ``U_g (f dt/2) / sin(f dt/2)`` instead of ``U_g``
(7 % off near the poles at the 8640 s substep of the 1.5 deg grid, ``f dt = 1.25``).

The prognostic fields travel as one stacked array ``q [..., 4, L, H, W]`` in the order of
`PROGNOSTIC` so that the four fields share one pass of each operator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.layout import OceanState
from neuralogcm_jax.physics import vertical
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, CoefficientSpec

Array = Any

PROGNOSTIC = ("u", "v", "T", "S")

__all__ = [
    "PROGNOSTIC",
    "PaperEquation",
    "coriolis_pressure_step",
    "coriolis_rotation",
    "level_coefficient",
    "paper_tendency",
    "pressure_gradient_acceleration",
    "stack_prognostic",
    "unstack_prognostic",
]


def stack_prognostic(state: OceanState) -> Array:
    """``OceanState -> q [..., 4, L, H, W]`` in the order ``(u, v, T, S)``."""
    return jnp.stack([state.u, state.v, state.T, state.S], axis=-4)


def unstack_prognostic(q: Array, ssh: Array) -> OceanState:
    """``q [..., 4, L, H, W]`` and ``ssh [..., H, W]`` -> `OceanState`."""
    return OceanState(u=q[..., 0, :, :, :], v=q[..., 1, :, :, :], T=q[..., 2, :, :, :],
                      S=q[..., 3, :, :, :], ssh=ssh)


def level_coefficient(
    value: Array, spec: CoefficientSpec | None, dtype: Any, n_levels: int
) -> Array:
    """A coefficient (SI) as ``[] or [L, 1, 1]`` of `dtype`, clipped at ``spec.max_value``.

    `value` is a scalar (global) or ``[L]`` (one per level). The clip is what keeps any learned
    value inside the stability bound the substep was derived from.
    """
    x = jnp.asarray(value).astype(dtype)
    if spec is not None:
        x = jnp.minimum(x, jnp.asarray(spec.max_value, dtype))
    if x.ndim == 0:
        return x
    if x.shape != (n_levels,):
        name = spec.name if spec is not None else "coefficient"
        raise ConfigError(
            f"{name} must be a scalar or one value per level [{n_levels}], got shape {x.shape}"
        )
    return x[:, None, None]


def coriolis_rotation(u: Array, v: Array, f: Array, dt: float) -> tuple[Array, Array]:
    """Exact solution after `dt` (s) of ``du/dt = f v, dv/dt = -f u``: rotate by ``-f dt``.

    `u`, `v` ``[..., H, W]`` (m/s), `f` ``[H, 1]`` (1/s). Kinetic energy is unchanged.
    """
    angle = f * dt
    c, s = jnp.cos(angle), jnp.sin(angle)
    return c * u + s * v, c * v - s * u


def _channel(channels: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``[4, 1, 1, 1]`` one-hot (or several-hot) vector over the `PROGNOSTIC` channels."""
    e = np.zeros((len(PROGNOSTIC), 1, 1, 1))
    e[list(channels)] = 1.0
    return e.astype(dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PaperEquation:
    """The paper-mode equation with coefficients `nu_m`, `nu_t` (m^2/s, ``[]`` or ``[L, 1, 1]``).

    `explicit_terms(q)` is the tendency of everything except Coriolis; `exact_step(q, dt)`
    advances Coriolis exactly. Both take and return ``q [..., 4, L, H, W]``.
    """

    ops: Operators
    nu_m: Array
    nu_t: Array
    pg: Array | None = None
    advective_tracers: bool = dataclasses.field(default=False, metadata=dict(static=True))
    advective_momentum: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def from_coefficients(
        cls,
        ops: Operators,
        coeffs_si: dict[str, Array],
        specs: dict[str, CoefficientSpec] = PAPER_COEFFICIENTS,
        advective_tracers: bool = False,
        advective_momentum: bool = False,
        pg: Array | None = None,
    ) -> PaperEquation:
        """Clip and shape ``{"nu_m", "nu_t"}`` (SI; scalar or ``[L]``) for `ops`'s grid.

        `pg`: the pressure-gradient acceleration ``[..., 2, L, H, W]`` (m/s^2, east and north;
        `pressure_gradient_acceleration`) held fixed in `exact_step`, or None (seed form)."""
        n_levels = ops.wet.shape[0]
        return cls(
            ops=ops,
            nu_m=level_coefficient(coeffs_si["nu_m"], specs.get("nu_m"), ops.dtype, n_levels),
            nu_t=level_coefficient(coeffs_si["nu_t"], specs.get("nu_t"), ops.dtype, n_levels),
            pg=None if pg is None else jnp.asarray(pg, ops.dtype),
            advective_tracers=advective_tracers,
            advective_momentum=advective_momentum,
        )

    def explicit_terms(self, q: Array) -> Array:
        """Advection, metric terms and diffusion: ``dq/dt [..., 4, L, H, W]`` (SI per second)."""
        ops = self.ops
        dtype = q.dtype
        u, v = q[..., 0:1, :, :, :], q[..., 1:2, :, :, :]  # [..., 1, L, H, W]
        # Per-channel factors are built by multiplying with one-hot channel vectors instead of
        # stacking: a stack (concatenation) fused into the big elementwise loops becomes a
        # per-element branch there, several times slower.
        e_u, e_v, e_mom, e_tr = (_channel(k, dtype) for k in ((0,), (1,), (0, 1), (2, 3)))
        nu_m = jnp.reshape(self.nu_m, (-1, 1, 1))  # [1 or L, 1, 1]
        nu_t = jnp.reshape(self.nu_t, (-1, 1, 1))
        nu = nu_m * e_mom + nu_t * e_tr  # [4, 1 or L, 1, 1]
        adv = (((0, 1) if self.advective_momentum else ())
               + ((2, 3) if self.advective_tracers else ()))
        # advective form (-U . grad q = -div(qU) + q div(U)) on the channels in `adv`
        tend = ops.self_advection_diffusion(q, nu, _channel(adv, dtype) if adv else None)
        # Metric terms of momentum advection on the sphere (a rotation at rate u tan(phi)/R):
        # du/dt = rate v, dv/dt = -rate u.
        rate = u * ops.tan_lat_over_r
        metric = rate * (v * e_u - u * e_v)
        return (tend + metric) * ops.wet

    def exact_step(self, q: Array, dt: float) -> Array:
        """Coriolis (and the pressure gradient `pg`, held fixed) over `dt` (s), exactly; T and S
        unchanged.

        Without `pg` the rotation of `coriolis_rotation`, written per channel with one-hot
        factors (see `explicit_terms`): ``q' = q * [c, c, 1, 1] + v * [s, 0, 0, 0] -
        u * [0, s, 0, 0]``. With ``pg = (gx, gy)`` the exact solution of ``du/dt = f v + gx,
        dv/dt = -f u + gy`` (`coriolis_pressure_step`).
        """
        dtype = q.dtype
        angle = self.ops.coriolis * dt
        c, s = jnp.cos(angle), jnp.sin(angle)  # [H, 1]
        e_u, e_v, e_mom, e_tr = (_channel(k, dtype) for k in ((0,), (1,), (0, 1), (2, 3)))
        u, v = q[..., 0:1, :, :, :], q[..., 1:2, :, :, :]
        out = q * (c * e_mom + e_tr) + v * (s * e_u) - u * (s * e_v)
        if self.pg is None:
            return out
        a, b = _kick_factors(self.ops.coriolis, dt)
        gx, gy = self.pg[..., 0:1, :, :, :], self.pg[..., 1:2, :, :, :]
        return out + (a * gx + b * gy) * e_u + (a * gy - b * gx) * e_v

    def tendency(self, q: Array) -> Array:
        """Full instantaneous tendency, Coriolis (and `pg`) included (diagnostics and tests)."""
        f = self.ops.coriolis
        u, v = q[..., 0, :, :, :], q[..., 1, :, :, :]
        du, dv = f * v, -f * u
        if self.pg is not None:
            du, dv = du + self.pg[..., 0, :, :, :], dv + self.pg[..., 1, :, :, :]
        cor = jnp.stack([du, dv, jnp.zeros_like(u), jnp.zeros_like(u)], axis=-4)
        return self.explicit_terms(q) + cor * self.ops.wet


def _kick_factors(f: Array, dt: float) -> tuple[Array, Array]:
    """``(sin(f dt) / f, (1 - cos(f dt)) / f)`` (s), written without dividing by f (``dt sinc``
    forms), so they go smoothly to ``(dt, 0)`` as f -> 0 at the equator."""
    half = 0.5 * f * dt
    sinc = lambda x: jnp.sinc(x / jnp.pi)  # noqa: E731 - sin(x)/x, 1 at 0
    return dt * sinc(2.0 * half), dt * jnp.sin(half) * sinc(half)


def coriolis_pressure_step(u: Array, v: Array, gx: Array, gy: Array, f: Array, dt: float):
    """Exact solution after `dt` (s) of ``du/dt = f v + gx, dv/dt = -f u + gy`` with the
    pressure-gradient acceleration ``(gx, gy)`` (m/s^2) constant; all arrays broadcast.

    Around the geostrophic velocity ``u_g = gy / f, v_g = -gx / f`` the flow turns as in
    `coriolis_rotation`: ``U(dt) = U_g + R(-f dt) (U - U_g)``. Expanded, that is the rotation of
    ``U`` plus ``a G + b (gy, -gx)`` with ``a = sin(f dt)/f`` and ``b = (1 - cos(f dt))/f``
    (`_kick_factors`), i.e. half a rotation, a kick of ``sinc(f dt / 2) G dt``, half a
    rotation: no division by f (at f = 0 it is the plain kick ``U + G dt``), and ``U_g`` is an
    exact fixed point for any dt. `PaperEquation.exact_step` is the same on the stacked state.
    """
    ur, vr = coriolis_rotation(u, v, f, dt)
    a, b = _kick_factors(f, dt)
    return ur + a * gx + b * gy, vr + a * gy - b * gx


def pressure_gradient_acceleration(
    ops: Operators, T: Array, S: Array, ssh: Array, depth_m: Array, eos: Any,
    g: float = GRAVITY_M_S2,
) -> Array:
    """``-(1/rho0) grad p`` (m/s^2) per level, ``[2, L, H, W]`` (east, north), of the hydrostatic
    pressure ``p(z) = rho0 g eta + g int_0^z rho'(T, S, z') dz'``.

    `T`, `S` ``[L, H, W]`` (degC, psu; land values must be finite), `ssh` ``[H, W]`` (m),
    `depth_m` ``[L]`` level depths (m), `eos` an equation of state of `physics.eos` (its
    ``rho0`` is the Boussinesq reference density). The density integral is primitive mode's
    (`vertical.hydrostatic_pressure`). The gradient is taken as in primitive mode: a
    difference across each open face over the distance between the centres (the grid's metric:
    ``R cos(phi) dlon`` zonally, ``R dlat`` meridionally), zero through closed faces (coasts,
    walls, the sea floor's steps), averaged from the two faces of a cell to its centre; so next
    to a coast the cell sees half its one-sided gradient, and land feels nothing. The zonal face
    gradient of the polar caps goes through the operators' polar filter, as in primitive mode.
    """
    dtype = T.dtype
    depth = jnp.asarray(depth_m, dtype)
    wet = ops.wet
    rho = eos.density_anomaly(T, S, depth[:, None, None]) * wet
    p = (vertical.hydrostatic_pressure(rho, depth, g) / eos.rho0
         + jnp.asarray(g, dtype) * ssh * wet[0])  # p / rho0, m^2/s^2, [L, H, W]
    gx = (jnp.roll(p, -1, axis=-1) - p) / ops.dx * ops.mask_x  # east faces
    if ops.has_polar_filter:
        # As primitive mode does: the zonal gradient across the narrow polar cells is the
        # difference of neighbours a few km apart, so grid-scale zonal noise of T and S there
        # would drive currents the polar filter keeps from the fluxes; fed back day by day through
        # advection it grew without bound (3 deg, 100 m, 88.5 N: 4.5 m/s on day 12, overflow by
        # day 24 unfiltered).
        gx = ops.polar_filter(gx)
    gy = jnp.pad(p[:, 1:] - p[:, :-1], ((0, 0), (1, 1), (0, 0))) / ops.dy * ops.mask_y
    ax = -0.5 * (gx + jnp.roll(gx, 1, axis=-1))
    ay = -ops.y_sign * 0.5 * (gy[:, 1:] + gy[:, :-1])  # row index -> north
    return jnp.stack([ax, ay]) * wet


def paper_tendency(
    coeffs_si: dict[str, Array], state: OceanState, ops: Operators
) -> OceanState:
    """Instantaneous paper-mode tendency of `state` (fields ``[L, H, W]``), per second.

    Land values of `state` must be finite (they are ignored); the SSH tendency is zero.
    """
    eq = PaperEquation.from_coefficients(ops, coeffs_si)
    dq = eq.tendency(stack_prognostic(state))
    return unstack_prognostic(dq, jnp.zeros_like(state.ssh))
