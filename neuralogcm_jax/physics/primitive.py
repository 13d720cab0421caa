"""Primitive-equation mode: a hydrostatic, Boussinesq free-surface ocean on z* levels.

The equations, per level k (``u`` east, ``v`` north in m/s, ``T`` degC, ``S`` psu, ``eta`` m):

    du/dt = -U.grad u - w du/dz + u v tan(phi)/R + f v - (1/rho0) dp'/dx - g deta/dx
            + div(nu_m grad u) + d/dz(nu_v du/dz)
    dv/dt = -U.grad v - w dv/dz - u^2 tan(phi)/R - f u - (1/rho0) dp'/dy - g deta/dy
            + div(nu_m grad v) + d/dz(nu_v dv/dz)
    d(h T)/dt = -div(h T U) - [w T]_k + div(h nu_t grad T) + d/dz(kappa_v dT/dz)   (same for S)
    deta/dt = -sum_k div(h_k U_k)

with the hydrostatic pressure anomaly ``p' = g int_0^z rho'(T, S, z) dz`` from the equation of
state (`neuralogcm_jax.physics.eos`), ``rho' = rho - rho0``. Boundary conditions: wind stress
``tau = rho_air C_d |U10| U10`` (none where the top level is at its freezing point, ramping to
full 0.2 K above it: `PrimitiveTerms.ice_ramp_k`) and a restoring heat flux ``Q = lambda (t2m -
273.15 - T_top)`` enter the top layer (t2m is the forcing's; the twin's truth hands it the air
temperature plus the climatological SST - t2m offset, `TruthSpec.heat_target`); the sea floor (`Grid.bottom_level`) and coasts are closed (no flux), with
an optional linear bottom drag ``-r_b u / h`` on the deepest wet layer; salt has no surface flux.
With surface fluxes on, T is held at or above the freezing point ``-0.054 S`` (no sea-ice model).

Vertical coordinate. The layer thicknesses follow the free surface, ``h_k = dz_k (1 + eta/H)``
(z*, H the column depth), so volume, heat and salt are conserved exactly in flux form and a
negative eta never empties the thin top layer. Horizontal transports use the rest thicknesses
``dz_k`` (the linear free-surface approximation of the transport), and the continuity equation
uses the very transports that move T and S, so a uniform tracer stays uniform.

One substep ``dt`` (operator splitting, each piece stable at the substep):

1. baroclinic momentum: half the Coriolis rotation of the deviation from the depth mean, then
   forward Euler of advection (MUSCL, `Operators`), horizontal viscosity, metric terms and the
   baroclinic pressure gradient (Coriolis is rotated exactly, half before and half after the
   pressure kick, so thermal-wind balance is a steady state: forward Euler on Coriolis is
   unconditionally unstable);
2. barotropic mode, split-explicit: the depth-mean flow is advanced through ``n_bt`` short
   forward-backward steps of the linear shallow-water gravity-wave system
   ``dU/dt = -f k x U - g grad eta, deta/dt = -div(H U)`` with Coriolis rotated exactly at each
   short step and a Rhie-Chow face correction that damps the A-grid checkerboard of eta (by
   default of each level's whole hydrostatic pressure, eta and the density's together, so a
   slope of eta compensated at depth drives no deep flow: `rhie_chow_pressure`; and of third
   order, so that a smooth balanced pressure drives next to no cross-isobar flow:
   `rhie_chow_order`); its
   time-mean face transport fixes each layer's transport (the deviation from the depth mean is
   rotated by Coriolis exactly over the second half of dt). The centre force ``-g grad eta`` of the depth-mean
   flow is the adjoint of the face-transport divergence (see "Energy" below);
3. tracers: flux-form horizontal advection-diffusion with those layer transports, eta from the
   integrated continuity equation, the z*-continuity velocity ``w*``;
4. one implicit tridiagonal solve for T and S, one for u and v
   (`vertical.implicit_vertical_diffusion`, the fields of a pair share the operator): upwind
   (or centred: `PrimitiveTerms.vertical_advection_scheme`) vertical advection by ``w*`` (flux
   form for T, S; advective form for u, v), vertical mixing (with convective mixing where the
   column is statically unstable and the Richardson-number shear mixing of Pacanowski &
   Philander, both diagnosed once per model step by default:
   `PrimitiveTerms.convective_closure`, `PrimitiveTerms.shear_mixing`), the surface heat flux
   (T), the wind stress and the bottom drag (u, v). Implicit, because the thin GLORYS top
   layers (1 m) would limit an explicit vertical advection to ``w dt < 1 m``.

Energy of the barotropic mode. On the A-grid the depth-mean velocity lives at cell centres and
the continuity equation sees face transports ``H_f L_f (U_a + U_b) / 2`` (``H_f`` the open depth
of the face: the shallower column, zero at a wall). The gravity-wave part conserves the energy
``sum A H |U|^2 + g sum A eta^2`` only if the centre force is the adjoint of that divergence:
face ``f`` gives each of its cells ``H_f L_f d_f / (2 A H)`` of its gradient ``(deta)/d_f``. That
is the centred average in the open interior, half the one-sided gradient next to a wall (the
finite-volume pressure force with the wall pushing back with the cell's own pressure) and a
share in proportion to the open depth across a step of the sea floor. Taking the full
one-sided gradient at walls instead (more accurate for one wave against a straight wall) gives
the x and y forces of a coastal cell different weights; the exact Coriolis rotation, which
keeps ``|U|`` per cell, then mixes the two components out of balance and feeds the inertial
oscillation of small inlets and straits. On the real coastlines that oscillation grew several
fold a day: a two-cell Antarctic inlet at 3 deg (70.5 S, 7 and 20 levels deep) reached 10 m of
SSH in 2 days, and the 1.5 deg run blew up within 5 days (at 59 N 356 E, 47 N 140 E, 20 N
39 E). With the adjoint force the linear subcycle cannot gain energy
(`tests/test_primitive.py`).

Horizontal operators, the polar filter and the exact Coriolis rotation come from the paper-mode
core (`operators`, `equations`). The polar filter also acts (factor a_k) on the zonal baroclinic
pressure gradient and on the baroclinic part of the zonal layer transports, which bounds the
internal waves of the polar rows. By default the barotropic subcycle is filtered in the same
way (its zonal face gradient and face transport, one symmetric operator for both, so the
energy argument above holds row by row), and its short step follows the zonal spacing at the
cutoff latitude rather than the smallest wet cell: ~30 times fewer short steps at 1.5 deg
(see `PrimitiveTerms.barotropic_polar_filter`; the count: `planning.plan_barotropic`).

Coriolis in the subcycle is split symmetrically around the pressure kick (half rotation, kick,
half rotation), so that geostrophic flow is an exact steady state of a short step. With the
whole rotation before the kick the steady flow carried a down-gradient part ``f dt_bt / 2`` of
itself, which flattened the SSH and drained the wind-driven flow at a rate ``~f^2 dt_bt / 2``
(a few days at 400 s): a 600 m zonal channel under a 10 m/s westerly held 45, 27 and 17 m^2/s
of depth-integrated flow after 20 days with 11, 5 and 3 steps (now 76, -, 66; 84 with 42), and
the filtered 1.5 deg world built no circumpolar current at all (~0 Sv through Drake Passage
after 3 months, against 72 Sv unfiltered). Some dependence on the step remains (13 % between
11 and 3 steps in the channel); splitting the baroclinic rotation symmetrically around its
pressure kick (step 1) did not change it, so its cause is elsewhere and not yet found.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import CP_SEAWATER_J_KG_K
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid, layer_interfaces
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics import eos as eos_lib
from neuralogcm_jax.physics import vertical
from neuralogcm_jax.physics.equations import coriolis_rotation, level_coefficient
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import CoefficientSpec
from neuralogcm_jax.physics.planning import plan_barotropic, plan_substeps
from neuralogcm_jax.physics.primitive_terms import (  # re-exported: the settings live there
    FREEZING_SLOPE_K_PSU,
    KELVIN_OFFSET,
    PRIMITIVE_COEFFICIENTS,
    SHEAR_FLOOR_S2,
    SHEAR_RI_ALPHA,
    PrimitiveTerms,
    check_primitive_grid,
    primitive_coefficients,
    wind_stress,
)
from neuralogcm_jax.physics.integrators import repeat
from neuralogcm_jax.physics.stepping import Physics, PhysicsConfig

Array = Any

__all__ = [
    "PRIMITIVE_COEFFICIENTS",
    "PrimitiveEquation",
    "PrimitiveGeometry",
    "PrimitivePhysics",
    "PrimitiveTerms",
    "check_primitive_grid",
    "make_primitive_physics",
    "wind_stress",
]

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PrimitiveGeometry:
    """Per-grid constants of primitive mode in one dtype (`from_grid`)."""

    ops: Operators  # the 3-D operators, [L, H, W]
    ops2d: Operators  # operators of the surface level, for the barotropic mode, [1, H, W]
    dz: Array  # [L, 1, 1] rest layer thickness (m)
    depth: Array  # [L, 1, 1] level centres (m)
    z_int: Array  # [L-1, 1, 1] depth of the inner interfaces (m)
    col_depth: Array  # [H, W] H, wet column depth (m); 1 on land to avoid 0/0
    face_depth_x: Array  # [H, W] open depth of the east face (m)
    face_depth_y: Array  # [H+1, W] open depth of each row face (m)
    # The barotropic mode's depths (`PrimitiveTerms.barotropic_depth`): the levels' own above,
    # or down to the sea floor; 1 on land like col_depth.
    bt_depth: Array  # [H, W]
    bt_face_depth_x: Array  # [H, W]
    bt_face_depth_y: Array  # [H+1, W]
    # With the sea floor, the passive layer below the deepest level: its thickness at the
    # centres [H, W] and faces, and the deepest wet level [L, H, W] at the centres and the
    # deepest open one at the east and row faces (1 there, else 0); None with "levels".
    passive: Array | None = None
    passive_x: Array | None = None
    passive_y: Array | None = None
    bottom: Array | None = None
    bottom_x: Array | None = None
    bottom_y: Array | None = None

    @classmethod
    def from_grid(cls, grid: Grid, dtype: Any, polar_filter_lat_deg: float | None,
                  barotropic_polar_filter: bool = True,
                  sea_floor: np.ndarray | None = None) -> PrimitiveGeometry:
        """The constants of `grid` as `dtype` arrays; the barotropic operators `ops2d` are polar
        filtered only with `barotropic_polar_filter`; `sea_floor` ``[H, W]`` (m): the depth of
        the barotropic mode where deeper than the levels (None: the levels')."""
        wet = np.asarray(grid.wet, bool)
        dz = np.asarray(grid.dz, np.float64)
        col_depth = (dz[:, None, None] * wet).sum(0)
        face_depth_x = (dz[:, None, None] * grid.face_mask_x).sum(0)
        face_depth_y = (dz[:, None, None] * grid.face_mask_y).sum(0)
        arr = lambda x: jnp.asarray(np.asarray(x, np.float64), dtype)  # noqa: E731
        deep = {}
        if sea_floor is None:
            bt, bt_x, bt_y = col_depth, face_depth_x, face_depth_y
        else:
            bt = np.where(wet[0], np.maximum(col_depth, np.asarray(sea_floor, np.float64)), 0.0)
            bt_x = np.minimum(bt, np.roll(bt, -1, axis=-1)) * grid.face_mask_x[0]
            bt_y = np.zeros_like(face_depth_y)
            bt_y[1:-1] = np.minimum(bt[1:], bt[:-1])
            bt_y = bt_y * grid.face_mask_y[0]
            def deepest(m):  # the deepest True level of each column of m [L, ...]
                k = np.arange(m.shape[0]).reshape((-1,) + (1,) * (m.ndim - 1))
                return arr((k == m.sum(0)[None] - 1) & m)

            deep = dict(passive=arr(bt - col_depth), passive_x=arr(bt_x - face_depth_x),
                        passive_y=arr(bt_y - face_depth_y), bottom=deepest(wet),
                        bottom_x=deepest(grid.face_mask_x), bottom_y=deepest(grid.face_mask_y))
        grid_sfc = grid.with_levels(grid.depth[:1], wet[:1])
        depth = np.asarray(grid.depth, np.float64)
        return cls(
            ops=Operators.from_grid(grid, dtype, polar_filter_lat_deg),
            ops2d=Operators.from_grid(
                grid_sfc, dtype, polar_filter_lat_deg if barotropic_polar_filter else None),
            dz=arr(dz[:, None, None]),
            depth=arr(depth[:, None, None]),
            z_int=arr(layer_interfaces(depth)[1:-1, None, None]),
            col_depth=arr(np.where(wet[0], col_depth, 1.0)),
            face_depth_x=arr(face_depth_x),
            face_depth_y=arr(face_depth_y),
            bt_depth=arr(np.where(wet[0], bt, 1.0)),
            bt_face_depth_x=arr(bt_x),
            bt_face_depth_y=arr(bt_y),
            **deep,
        )


class SlowForces(typing.NamedTuple):
    """What step 1 hands to step 2: `depth_mean`, the depth mean ``(Gx, Gy)`` (m/s^2, east and
    north) of its tendencies, applied in the barotropic subcycle (None without a free surface);
    `face`, the Rhie-Chow correction ``(cx [L, H, W], cy [L, H+1, W])`` (m/s, east faces and
    row faces along the row index) of the layer face velocities by the baroclinic pressure
    gradient (its depth mean is replaced by the barotropic transport's); `face_mean`, the depth
    mean ``[H, W], [H+1, W]`` (m/s^2) of the baroclinic pressure gradient's face excess, which
    the barotropic subcycle corrects its face velocities by beside eta's
    (`PrimitiveTerms.rhie_chow_pressure` "total"); None where there is none."""

    depth_mean: tuple[Array, Array] | None
    face: tuple[Array, Array] | None
    face_mean: tuple[Array, Array] | None = None


def _interfaces(x: Array) -> Array:
    """A coefficient ``[]`` or ``[L, 1, 1]`` at the inner interfaces ``[] or [L-1, 1, 1]``."""
    return x if x.ndim == 0 else 0.5 * (x[1:] + x[:-1])


def _safe(d: Array) -> Array:
    """`d` with its zeros replaced by ones (a divisor of open thicknesses)."""
    return jnp.where(d > 0, d, jnp.ones((), d.dtype))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PrimitiveEquation:
    """The primitive equations of one grid in one dtype, with their coefficients.

    Fields: the geometry `geo`, the clipped coefficients `coeffs` (SI; ``nu_m``, ``nu_t``,
    ``kappa_v``, ``nu_v`` ``[] or [L, 1, 1]``; ``heat_restoring``, ``bottom_drag`` and
    ``convective_kappa`` scalars; `from_coefficients`), and, static, the `terms`, the equation
    of state `eos` and the barotropic subcycle (`n_barotropic` short steps of
    `dt_barotropic_s`; 0 without a free surface); last `conv`, the convective diffusivity
    ``[L-1, H, W]`` held through the substeps of a model step (None: diagnosed every substep;
    `PrimitiveTerms.convective_closure`), and `shear`, the shear-mixing diffusivity and
    viscosity held likewise (`shear_mixing`). The pieces of one substep are methods, in the order
    of the module docstring:
    `baroclinic_momentum` (1), `barotropic` and `layer_transports` (2), `tracers` (3),
    `implicit_vertical_step` (4); `split_explicit_step` is the whole substep.
    """

    geo: PrimitiveGeometry
    coeffs: dict[str, Array]
    terms: PrimitiveTerms = dataclasses.field(metadata=dict(static=True))
    eos: Any = dataclasses.field(metadata=dict(static=True))
    n_barotropic: int = dataclasses.field(default=0, metadata=dict(static=True))
    dt_barotropic_s: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    conv: Array | None = None
    shear: tuple[Array, Array] | None = None

    @classmethod
    def from_coefficients(
        cls,
        geo: PrimitiveGeometry,
        coeffs_si: dict[str, Array],
        terms: PrimitiveTerms,
        eos: Any,
        n_barotropic: int = 0,
        dt_barotropic_s: float = 0.0,
        specs: dict[str, CoefficientSpec] = PRIMITIVE_COEFFICIENTS,
    ) -> PrimitiveEquation:
        """Check, clip (at `CoefficientSpec.max_value`) and shape the coefficients (SI)."""
        missing = sorted(set(specs) - set(coeffs_si))
        if missing:
            raise ConfigError(f"primitive physics needs coefficients {missing}; got {sorted(coeffs_si)}")
        dtype = geo.dz.dtype
        n_levels = geo.dz.shape[0]
        out = {}
        for name in ("nu_m", "nu_t", "kappa_v", "nu_v"):
            out[name] = level_coefficient(coeffs_si[name], specs[name], dtype, n_levels)
        for name in ("heat_restoring", "bottom_drag", "convective_kappa", "shear_nu"):
            x = jnp.asarray(coeffs_si[name]).astype(dtype)
            if x.ndim != 0:
                raise ConfigError(f"{name} must be a scalar (SI), got shape {x.shape}")
            out[name] = jnp.minimum(x, jnp.asarray(specs[name].max_value, dtype))
        return cls(geo, out, terms, eos, n_barotropic, dt_barotropic_s)

    @property
    def gravity(self) -> float:
        return float(self.terms.gravity_m_s2)

    @property
    def rho0(self) -> float:
        return float(self.terms.rho0_kg_m3)

    @property
    def _passive(self) -> bool:
        """Whether the barotropic mode reaches below the levels (`barotropic_depth`)."""
        return self.terms.free_surface and self.geo.passive is not None

    def depth_mean(self, q: Array) -> Array:
        """The barotropic mode's depth mean ``[H, W]`` of ``q`` ``[L, H, W]`` (0 on land): over
        the levels, or with the sea floor over the whole depth, the passive layer below the
        deepest level taking that level's value (`PrimitiveTerms.barotropic_depth`)."""
        geo = self.geo
        total = vertical.level_sum(q, geo.dz[:, 0, 0])
        if self._passive:
            return (total + geo.passive * vertical.level_sum(geo.bottom * q)) / geo.bt_depth
        return total / geo.col_depth

    def half_rotation(self, u: Array, v: Array, dt: float) -> tuple[Array, Array]:
        """Coriolis over ``dt / 2`` of what step 2 does not rotate in its subcycle: the
        deviation from the depth mean with a free surface, all of the flow without."""
        ops = self.geo.ops
        if not self.terms.free_surface:
            return coriolis_rotation(u, v, ops.coriolis, 0.5 * dt)
        ubar, vbar = self.depth_mean(u), self.depth_mean(v)
        du, dv = coriolis_rotation(u - ubar, v - vbar, ops.coriolis, 0.5 * dt)
        return (du + ubar) * ops.wet, (dv + vbar) * ops.wet

    def baroclinic_momentum(self, state: OceanState, dt: float):
        """Step 1: the first half of the baroclinic Coriolis rotation (`half_rotation`), then
        forward Euler of advection, viscosity, metric terms and the baroclinic pressure gradient
        (the tendencies of the state at the start of the substep); returns the new ``(u, v)``.
        Step 2 rotates the second half: rotation, kick, rotation, so that a flow in geostrophic
        (thermal-wind) balance with the density field is a steady state of the substep; with
        the whole rotation after the kick the steady state was the geostrophic flow turned by
        ``-f dt / 2`` (a cross-isobar flow ~18 % of the current at 45 deg, dt = 3600 s).

        With a free surface the depth mean of these tendencies is not applied here but returned
        in `SlowForces.depth_mean`: the barotropic subcycle applies it at each short step beside the
        SSH gradient it usually balances (a compensated front); as one kick before the subcycle
        it was rotated away from that balance and drove a spurious depth-mean flow and SSH
        change (1 cm and 1 cm/s in 2 days across a 4 K front). `SlowForces.face` and
        `face_mean` carry the Rhie-Chow correction by the baroclinic pressure to step 2
        (`PrimitiveTerms.rhie_chow_pressure`, `baroclinic_face_correction`). None of them:
        ``(u, v, None)``."""
        ops, geo, c = self.geo.ops, self.geo, self.coeffs
        u, v, T, S, _ = state
        wet = ops.wet
        uv = jnp.stack([u, v])
        tend = ops.self_advection_diffusion(uv, c["nu_m"])  # the fused transport stencil
        # Advective (not flux) form of momentum: add u div(U) back.
        ue, wr = ops.face_velocities(u, v)
        div_h = ops.flux_divergence(ops.polar_filter(ue * ops.dy), wr * ops.face_len_y)
        tend = tend + uv * div_h
        rate = u * ops.tan_lat_over_r
        du = tend[0] + rate * v
        dv = tend[1] - rate * u
        face = face_mean = None
        if self.terms.pressure_gradient:
            rho = self.eos.density_anomaly(T, S, geo.depth)
            p = vertical.hydrostatic_pressure(rho * wet, geo.depth[:, 0, 0], self.gravity) / self.rho0
            gx = ops.polar_filter((jnp.roll(p, -1, axis=-1) - p) / ops.dx * ops.mask_x)
            gy = jnp.pad(p[:, 1:] - p[:, :-1], ((0, 0), (1, 1), (0, 0))) / ops.dy * ops.mask_y
            gxc = 0.5 * (gx + jnp.roll(gx, 1, axis=-1))
            gyc = 0.5 * (gy[:, 1:] + gy[:, :-1])  # along the row index
            du = du - gxc
            dv = dv - ops.y_sign * gyc
            # Rhie-Chow: what the compact face gradient sees beyond the faces' average of the
            # centre averages, to `rhie_chow_order` (a 2 dx checkerboard: all of it; a smooth
            # field: nearly none).
            tau = 0.0  # s, of the per-level correction
            if self.terms.free_surface and self.terms.rhie_chow_pressure == "total":
                tau = 0.5 * self.dt_barotropic_s  # the subcycle's own, so that eta + p' is one
            tau += float(self.terms.baroclinic_face_correction) * dt
            if tau > 0.0:
                ex = ops.face_excess(gx, gy, self.terms.rhie_chow_order)
                face = tuple(jnp.asarray(tau, gx.dtype) * e for e in ex)
                if self.terms.free_surface and self.terms.rhie_chow_pressure == "total":
                    # the depth mean (open thicknesses at the faces) for the subcycle
                    sx = vertical.level_sum(geo.dz * ops.mask_x * ex[0])
                    sy = vertical.level_sum(geo.dz * ops.mask_y * ex[1])
                    if self._passive:  # the passive layer has its deepest open level's
                        sx = sx + geo.passive_x * vertical.level_sum(geo.bottom_x * ex[0])
                        sy = sy + geo.passive_y * vertical.level_sum(geo.bottom_y * ex[1])
                    face_mean = (sx / _safe(geo.bt_face_depth_x), sy / _safe(geo.bt_face_depth_y))
        u, v = self.half_rotation(u, v, dt)
        depth_mean = None
        if self.terms.free_surface:
            # (the passive layer below the levels, if any, has its deepest level's tendency)
            gx_bar, gy_bar = self.depth_mean(du * wet), self.depth_mean(dv * wet)
            du, dv = du - gx_bar, dv - gy_bar
            depth_mean = (gx_bar * wet[0], gy_bar * wet[0])
        if face is None and depth_mean is None:
            slow = None
        else:
            slow = SlowForces(depth_mean, face, face_mean)
        return (u + dt * du) * wet, (v + dt * dv) * wet, slow

    def barotropic(self, ubar: Array, vbar: Array, eta: Array, slow: "SlowForces | None" = None):
        """Gravity-wave subcycle of the depth-mean flow ``[H, W]`` and eta ``[H, W]``.

        Forward-backward: ``U -= g dt_bt grad eta`` at the centres (face gradients weighted as
        the adjoint of the divergence, see the module docstring), then
        ``eta -= dt_bt div(H U_face)``. The face velocity is the average of its
        two cells corrected by ``-g tau (grad_face eta - avg(grad_centre eta))`` (a Rhie-Chow
        correction, ``tau = dt_bt / 2``; of `PrimitiveTerms.rhie_chow_order` n, ``-g tau (I -
        A C)^n grad_face eta``, `Operators.face_excess`): next to zero for smooth eta, it lets
        the compact face gradient see, and damp, the grid-scale checkerboard of eta to which
        cell averages are blind.
        The depth-mean flow is also rotated by Coriolis, exactly, at each short step, and
        accelerated by ``slow.depth_mean`` ``(Gx, Gy)`` (m/s^2, the depth mean of step 1's
        tendencies; `slow` None: none) in the same kick as the SSH gradient.
        ``slow.face_mean`` (m/s^2) adds the depth-mean baroclinic face excess to the
        correction, with the same ``tau``, so that, with each layer's share (``slow.face``),
        every level's correction sees its own hydrostatic pressure (eta and the density's)
        instead of eta alone.
        Returns the new depth-mean (u, v north) and the time-mean face transports (m^3/s).
        """
        geo = self.geo
        o = geo.ops2d
        dtype = eta.dtype
        dt_bt, n_bt = self.dt_barotropic_s, self.n_barotropic
        mx, my = o.mask_x[0], o.mask_y[0]
        g_dt = jnp.asarray(self.gravity * dt_bt, dtype)
        g_tau = jnp.asarray(0.5 * self.gravity * dt_bt, dtype)
        wet0 = o.wet[0]

        def face_gradients(eta):
            gx = (jnp.roll(eta, -1, axis=-1) - eta) / o.dx * mx  # east faces
            if o.has_polar_filter:
                gx = o.polar_filter(gx[None])[0]
            gy = jnp.pad(eta[1:] - eta[:-1], ((1, 1), (0, 0))) / o.dy * my  # along the row index
            return gx, gy

        # Face weights of the centre gradient: the adjoint of the transport divergence in the
        # energy norm sum(A H |U|^2 + g A eta^2), i.e. face f contributes H_f L_f d_f / (2 A H)
        # of its gradient to each of its two cells (H_f: open depth, L_f: length, d_f: the
        # distance the face gradient spans). Interior cells of a flat bottom get the centred
        # average 1/2 + 1/2; a wall contributes nothing (half the one-sided gradient, as the
        # finite-volume pressure force with the wall pressure equal to the cell's); a step in
        # the sea floor contributes in proportion to its open depth.
        wy_lo = geo.bt_face_depth_y[:-1] * o.face_len_y[:-1] * o.dy * o.inv_area / (2.0 * geo.bt_depth)
        wy_hi = geo.bt_face_depth_y[1:] * o.face_len_y[1:] * o.dy * o.inv_area / (2.0 * geo.bt_depth)

        def to_centres(fx, fy):
            return ((fx * geo.bt_face_depth_x + jnp.roll(fx * geo.bt_face_depth_x, 1, axis=-1))
                    / (2.0 * geo.bt_depth) * wet0,
                    (wy_hi * fy[1:] + wy_lo * fy[:-1]) * wet0)

        def to_faces(cx, cy):  # of [H, W] fields, through the one-level operators
            fx, fy = o.centres_to_faces(cx[None], cy[None])
            return fx[0], fy[0]

        rc_order = self.terms.rhie_chow_order

        def excess(ex, ey):
            fx, fy = o.face_excess(ex[None], ey[None], rc_order)
            return fx[0], fy[0]

        rc_x = rc_w = gs_x = gs_w = None
        if slow is not None and slow.face_mean is not None:  # held through the subcycle
            rc_x = jnp.asarray(0.5 * dt_bt, dtype) * slow.face_mean[0]
            rc_w = jnp.asarray(0.5 * dt_bt, dtype) * slow.face_mean[1]
        if slow is not None and slow.depth_mean is not None:
            gs_x = jnp.asarray(dt_bt, dtype) * slow.depth_mean[0]
            gs_w = jnp.asarray(dt_bt, dtype) * o.y_sign * slow.depth_mean[1]

        def body(carry, _):
            ub, wb, eta, sfx, sfy = carry  # wb: depth-mean velocity along the row index
            # Coriolis split symmetrically around the pressure kick (half rotation, kick, half
            # rotation): then geostrophic flow is an exact steady state of the short step. With
            # the whole rotation before the kick the steady flow carried a down-gradient part
            # f dt_bt / 2 of itself, which flattened the SSH and drained the wind-driven flow at
            # a rate ~ f^2 dt_bt / 2 (~3 days at 400 s, 60 deg): fewer steps, less momentum.
            ub, vn = coriolis_rotation(ub, o.y_sign * wb, o.coriolis, 0.5 * dt_bt)
            wb = o.y_sign * vn
            gx, gy = face_gradients(eta)
            gxc, gyc = to_centres(gx, gy)
            if gs_x is None:
                ub = (ub - g_dt * gxc) * wet0
                wb = (wb - g_dt * gyc) * wet0
            else:
                ub = (ub - g_dt * gxc + gs_x) * wet0
                wb = (wb - g_dt * gyc + gs_w) * wet0
            ub, vn = coriolis_rotation(ub, o.y_sign * wb, o.coriolis, 0.5 * dt_bt)
            wb = o.y_sign * vn
            ue, wr = to_faces(ub, wb)
            ex, ey = excess(gx, gy)
            ue = ue - g_tau * ex
            wr = wr - g_tau * ey
            if rc_x is not None:
                ue, wr = ue - rc_x * mx, wr - rc_w * my
            fx = (geo.bt_face_depth_x * ue * o.dy)[None]
            # The zonal gradient and the zonal transport are both filtered (a_k each), so the
            # wave operator div(H grad eta) of the polar rows is bounded by its value at the
            # cutoff latitude, whichever way (directly or through Coriolis) eta feeds back.
            fx = o.polar_filter(fx)[0] if o.has_polar_filter else fx[0] * mx
            fy = geo.bt_face_depth_y * wr * o.face_len_y
            eta = eta - dt_bt * o.flux_divergence(fx[None], fy[None])[0] * wet0
            return (ub, wb, eta, sfx + fx, sfy + fy), None

        wbar = o.y_sign * vbar
        init = (ubar, wbar, eta, jnp.zeros_like(ubar), jnp.zeros((eta.shape[0] + 1,) + eta.shape[1:], dtype))
        (ub1, wb1, _, sfx, sfy), _ = jax.lax.scan(body, init, None, length=n_bt)
        return ub1, o.y_sign * wb1, sfx / n_bt, sfy / n_bt

    def layer_transports(self, u: Array, v: Array, eta: Array, dt: float, slow=None):
        """Step 2: Coriolis and the barotropic mode over `dt`; the layer transports.

        Coriolis: the deviation from the depth mean is rotated exactly over the second half of
        `dt` (the first half: step 1, `half_rotation`); the depth mean
        is rotated inside the gravity-wave subcycle (f dt reaches 0.5 at dt = 3600 s, too coarse
        to split from the fast mode). Returns the new ``u, v``, the layer face transports
        ``fx_l, fy_l`` (m^3/s), the new eta, the new layer thickness ``h_new`` and the
        z*-continuity velocity ``w`` (None without vertical advection).
        """
        geo, ops = self.geo, self.geo.ops
        wet = ops.wet
        # Depth sums as products over the levels (`vertical.level_sum`: fast on CPU).
        ubar, vbar = self.depth_mean(u), self.depth_mean(v)
        lay_x = geo.dz * ops.mask_x  # open thickness of each layer at the east face
        lay_y = geo.dz * ops.mask_y
        if self.terms.free_surface:
            du, dv = coriolis_rotation(u - ubar, v - vbar, ops.coriolis, 0.5 * dt)
            ubar, vbar, fx_bt, fy_bt = self.barotropic(
                ubar, vbar, eta, slow)
            u = (du + ubar) * wet
            v = (dv + vbar) * wet
            ue, wr = ops.face_velocities(u, v)
            if slow is not None and slow.face is not None:  # its depth mean is removed below
                ue, wr = ue - slow.face[0], wr - slow.face[1]
        else:
            u, v = coriolis_rotation(u, v, ops.coriolis, 0.5 * dt)
            ue, wr = ops.face_velocities(u, v)
            fx_bt = vertical.level_sum(lay_x * ue) * ops.dy
            fy_bt = vertical.level_sum(lay_y * wr) * ops.face_len_y
            if slow is not None and slow.face is not None:  # its depth mean is removed below
                ue, wr = ue - slow.face[0], wr - slow.face[1]
        # Layer transports (m^3/s): the baroclinic part of each layer's face velocity plus an
        # equal share of the time-mean barotropic transport, so that sum_k = fx_bt exactly.
        fx_l = lay_x * ue * ops.dy
        fy_l = lay_y * wr * ops.face_len_y
        passive = self._passive
        if passive:
            # The passive layer below the levels moves with the deepest open level of each face.
            fx_p = geo.passive_x * vertical.level_sum(geo.bottom_x * ue) * ops.dy
            fy_p = geo.passive_y * vertical.level_sum(geo.bottom_y * wr) * ops.face_len_y
            bt_x, bt_y = _safe(geo.bt_face_depth_x), _safe(geo.bt_face_depth_y)
            if ops.has_polar_filter:  # the baroclinic part filtered (internal waves)
                tot = vertical.level_sum(fx_l) + fx_p
                fx_l = ops.polar_filter(fx_l - lay_x / bt_x * tot)
                fx_p = fx_p - geo.passive_x / bt_x * tot
                if geo.ops2d.has_polar_filter:
                    fx_p = geo.ops2d.polar_filter(fx_p[None])[0]
            # Each layer's share of what the barotropic transport adds, so that the levels and
            # the passive layer together carry fx_bt exactly.
            rest_x = fx_bt - vertical.level_sum(fx_l) - fx_p
            rest_y = fy_bt - vertical.level_sum(fy_l) - fy_p
            fx_l, fx_p = fx_l + lay_x / bt_x * rest_x, fx_p + geo.passive_x / bt_x * rest_x
            fy_l, fy_p = fy_l + lay_y / bt_y * rest_y, fy_p + geo.passive_y / bt_y * rest_y
            div_p = geo.ops2d.flux_divergence(fx_p[None], fy_p[None])[0] * wet[0]
        else:
            if ops.has_polar_filter:
                # Filter the baroclinic part like the barotropic one (internal waves in polar
                # rows).
                fx_l = ops.polar_filter(
                    fx_l - lay_x / _safe(geo.face_depth_x) * vertical.level_sum(fx_l))
            fx_l = fx_l + lay_x / _safe(geo.face_depth_x) * (fx_bt - vertical.level_sum(fx_l))
            fy_l = fy_l + lay_y / _safe(geo.face_depth_y) * (fy_bt - vertical.level_sum(fy_l))
        div_l = ops.flux_divergence(fx_l, fy_l) * wet  # div(h_k U_k), m/s
        w_floor = None
        if self.terms.free_surface:
            deta_dt = -vertical.level_sum(div_l)
            if passive:
                deta_dt = deta_dt - div_p
            eta_new = eta + dt * deta_dt
            dh_dt = geo.dz / geo.bt_depth * deta_dt * wet  # z* over the barotropic depth
        else:
            eta_new, dh_dt = eta, None
        h_new = geo.dz * (1.0 + eta_new / geo.bt_depth)
        div_v = div_l
        if passive:
            # What the passive layer neither keeps (its z* share of eta's change) nor passes on
            # sideways crosses the deepest level's floor (m/s, up); for continuity the levels
            # see it as the deepest level's own.
            w_floor = -(div_p + geo.passive / geo.bt_depth * deta_dt) * wet[0]
            div_v = div_l - geo.bottom * w_floor
        w = vertical.vertical_velocity(div_v, dh_dt) if self.terms.vertical_advection else None
        return u, v, fx_l, fy_l, eta_new, h_new, w, w_floor

    def tracers(self, T: Array, S: Array, fx_l: Array, fy_l: Array, h_old: Array,
                h_new: Array, dt: float, w_floor: Array | None = None) -> tuple[Array, Array]:
        """Step 3: horizontal advection-diffusion of T and S in flux form with the layer
        transports, ``h_new c_new = h_old c_old - dt div(F)`` (vertical advection: step 4).
        `w_floor` ``[H, W]`` (m/s, up; None: none): the water the passive layer passes up into
        the deepest level, which brings that level's own T and S (`barotropic_depth`)."""
        geo, ops = self.geo, self.geo.ops
        lay_x = geo.dz * ops.mask_x
        lay_y = geo.dz * ops.mask_y
        fx_face = fx_l / _safe(lay_x * ops.dy)  # face velocity that carries the layer transport
        fy_face = fy_l / _safe(lay_y * ops.face_len_y)
        ts = jnp.stack([T, S])
        fxa, fya = ops.advective_fluxes(ts, fx_face, fy_face)
        fxd, fyd = ops.diffusive_fluxes(ts, self.coeffs["nu_t"])
        if ops.has_polar_filter:
            fxd = ops.polar_filter(jnp.zeros_like(fxd), fxd)
        fx_t = (fxa + fxd * ops.mask_x) * geo.dz
        fy_t = (fya + fyd) * geo.dz
        content = h_old * ts - dt * ops.flux_divergence(fx_t, fy_t)
        if w_floor is not None:
            content = content + dt * (geo.bottom * w_floor) * ts
        ts = jnp.where(ops.wet > 0, content / h_new, ts)
        return ts[0], ts[1]

    def convective_diffusivity(self, T: Array, S: Array, penetrative: bool = False) -> Array:
        """Convective diffusivity ``[L-1, H, W]`` (m^2/s) at the inner interfaces of ``T, S``.

        An interface is statically unstable when water above it, brought to the interface depth,
        is denser than water below it: the water of the two levels next to it (`penetrative`
        False), or the densest of all levels above and the lightest of all levels below (True:
        the whole column between a dense surface layer and the depth where its water would be
        neutral mixes, not one interface per diagnosis). Penetrative, each level's density is
        evaluated at its own interfaces and carried to other depths with the compressibility of a
        reference water (10 degC, 35 psu), i.e. without thermobaricity: two EOS evaluations, as
        for the neighbours, instead of one per level and interface. The diffusivity ramps with
        the inversion over `PrimitiveTerms.convective_ramp_kg_m3` (linearly, or C1 when
        penetrative: ``x^2 (3 - 2x)``), or switches on at any inversion (a ramp of 0).
        """
        terms, geo = self.terms, self.geo
        dtype = T.dtype
        up = self.eos.density_anomaly(T[:-1], S[:-1], geo.z_int)  # level k at its bottom
        lo = self.eos.density_anomaly(T[1:], S[1:], geo.z_int)  # level k + 1 at its top
        if penetrative:
            ref = self.eos.density_anomaly(jnp.asarray(10.0, dtype), jnp.asarray(35.0, dtype),
                                           geo.z_int)  # [L-1, 1, 1]
            # Densest water above each interface, lightest wet water below it (land below an
            # interface is left out by a finite fill: no inversion there).
            big = jnp.asarray(1e6, dtype)  # kg/m^3, beyond any density anomaly
            up = jax.lax.cummax(up - ref, axis=0) + ref
            lo_rel = jnp.where(geo.ops.wet[1:] > 0, lo - ref, big)
            lo = jax.lax.cummin(lo_rel, axis=0, reverse=True) + ref
        kappa = self.coeffs["convective_kappa"]
        if terms.convective_ramp_kg_m3 > 0:
            x = jnp.clip((up - lo) / jnp.asarray(terms.convective_ramp_kg_m3, dtype), 0.0, 1.0)
            if penetrative:
                # C1 ramp: no kink at 0, where the columns the last step mixed sit (their
                # inversions are +-round-off, and a linear ramp's derivative would jump there).
                return kappa * x * x * (3.0 - 2.0 * x)
            return kappa * x
        return jnp.where(up > lo, kappa, jnp.zeros((), dtype))

    def shear_mixing(self, u: Array, v: Array, T: Array, S: Array) -> tuple[Array, Array]:
        """Richardson-number-dependent diffusivity and viscosity ``[L-1, H, W]`` (m^2/s) at the
        inner interfaces (`PrimitiveTerms.shear_mixing`): ``nu = shear_nu / (1 + 5 Ri)^2``,
        ``kappa = nu / (1 + 5 Ri)``, ``Ri = N^2 / S^2``. ``N^2 = g (rho_below - rho_above) /
        (rho0 dz_c)`` compares the two levels next to the interface at its depth, ``S^2 =
        |U_above - U_below|^2 / dz_c^2`` (dz_c the distance of their centres, a floor
        `SHEAR_FLOOR_S2` under ``S^2``); ``Ri < 0`` counts as 0; zero where a level is land."""
        geo = self.geo
        dtype = T.dtype
        up = self.eos.density_anomaly(T[:-1], S[:-1], geo.z_int)
        lo = self.eos.density_anomaly(T[1:], S[1:], geo.z_int)
        dzc = geo.depth[1:] - geo.depth[:-1]  # [L-1, 1, 1]
        du2 = (u[:-1] - u[1:]) ** 2 + (v[:-1] - v[1:]) ** 2
        # Ri = N^2 / S^2 = (g / rho0) (lo - up) dz_c / |dU|^2, written without dividing by dz_c
        n2dz2 = jnp.maximum(jnp.asarray(self.gravity / self.rho0, dtype) * (lo - up) * dzc, 0.0)
        ri = n2dz2 / (du2 + jnp.asarray(SHEAR_FLOOR_S2, dtype) * dzc * dzc)
        x = 1.0 + jnp.asarray(SHEAR_RI_ALPHA, dtype) * ri
        both_wet = geo.ops.wet[1:] > 0
        nu = jnp.where(both_wet, self.coeffs["shear_nu"] / (x * x), jnp.zeros((), dtype))
        return nu / x, nu

    def with_step_convection(self, T: Array, S: Array, u: Array | None = None,
                             v: Array | None = None) -> "PrimitiveEquation":
        """This equation with `conv` diagnosed from ``T, S`` (penetrative) when the "step"
        closure is on, to be held through the substeps of one model step; else unchanged.

        The diagnosis is rematerialised (`jax.checkpoint`): kept, the intermediates of its two
        equation-of-state evaluations, for every day of a rollout, were most of a multi-day
        gradient's memory (the 5-day gradient at 1.5 deg: 3.46 GiB kept, 1.94 recomputed; the
        forward values are the same)."""
        terms = self.terms
        out = self
        step = terms.convective_closure == "step" and terms.vertical_mixing and T.shape[0] > 1
        if step and terms.convective_mixing:
            diagnose = jax.checkpoint(lambda T, S: self.convective_diffusivity(T, S, True))
            out = dataclasses.replace(out, conv=diagnose(T, S))
        if step and terms.shear_mixing and u is not None:
            diagnose = jax.checkpoint(self.shear_mixing)
            out = dataclasses.replace(out, shear=diagnose(u, v, T, S))
        return out

    def implicit_vertical_step(self, u: Array, v: Array, T: Array, S: Array, h_new: Array,
                               w: Array | None, forcing: Forcing | None, dt: float):
        """Step 4: surface fluxes and implicit vertical mixing and advection; new ``u, v, T, S``.

        One tridiagonal solve per field pair (T with S, u with v share the operator): mixing
        (with convective mixing where the column is statically unstable), vertical advection by
        `w` (`PrimitiveTerms.vertical_advection_scheme`), the surface heat flux (T), the wind
        stress and the bottom drag (u, v), backward Euler (stable for any w dt / h of the thin
        top layers).
        """
        terms, c, geo = self.terms, self.coeffs, self.geo
        wetb = geo.ops.wet > 0
        dtype = T.dtype
        L = T.shape[0]
        rho0 = self.rho0
        cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        heat = taux = tauy = salt = None
        if forcing is not None and terms.freshwater_flux == "e_minus_p":
            if forcing.evaporation is None or forcing.precipitation is None:
                raise ConfigError(
                    "physics.primitive.freshwater_flux is 'e_minus_p' but the forcing has no "
                    "evaporation and precipitation fields (layout.Forcing; from a data layout "
                    "with the freshwater channels e and tp)")
            fresh = forcing.evaporation.astype(dtype) - forcing.precipitation.astype(dtype)
            salt = S[0] * fresh  # psu m/s into the sea: evaporation leaves the salt behind
        if forcing is not None and terms.heat_flux:
            q_wm2 = c["heat_restoring"] * (forcing.t2m.astype(dtype) - KELVIN_OFFSET - T[0])
            heat = q_wm2 / (rho0 * CP_SEAWATER_J_KG_K)  # K m/s
        if forcing is not None and terms.wind_stress:
            tx, ty = wind_stress(forcing.u10.astype(dtype), forcing.v10.astype(dtype),
                                 terms.drag_coefficient)
            # Open-water fraction: no stress where the top level is at its freezing point (the
            # ice there takes it), full stress from ice_ramp_k above it.
            open_water = jnp.clip((T[0] - FREEZING_SLOPE_K_PSU * S[0]) / cast(terms.ice_ramp_k),
                                  0.0, 1.0)
            taux, tauy = open_water * tx / rho0, open_water * ty / rho0  # m^2/s^2
        drag = c["bottom_drag"] if terms.bottom_drag else None
        if terms.vertical_mixing:
            kap_t = _interfaces(c["kappa_v"]) * jnp.ones((max(L - 1, 1), 1, 1), dtype)
            kap_m = _interfaces(c["nu_v"]) * jnp.ones((max(L - 1, 1), 1, 1), dtype)
            if terms.convective_mixing and L > 1:
                conv = self.conv if self.conv is not None else self.convective_diffusivity(T, S)
                kap_t, kap_m = kap_t + conv, kap_m + conv
            if terms.shear_mixing and L > 1:
                k_s, n_s = self.shear if self.shear is not None else self.shear_mixing(u, v, T, S)
                kap_t, kap_m = kap_t + k_s, kap_m + n_s
        else:
            kap_t = kap_m = cast(0.0)
        ts_flux = None
        if heat is not None or salt is not None:
            ts_flux = jnp.stack([jnp.zeros_like(S[0]) if heat is None else heat,
                                 jnp.zeros_like(S[0]) if salt is None else salt])
        scheme = terms.vertical_advection_scheme
        T, S = vertical.implicit_vertical_diffusion(jnp.stack([T, S]), kap_t, dt, h_new, wetb,
                                                    ts_flux, None, w, advection=scheme)
        if heat is not None:
            # No sea-ice model: restoring toward polar air temperatures (-30 degC) would cool the
            # sea below its freezing point, so T is held there (the heat that frazil ice would
            # release). Only with surface fluxes, so a closed basin stays exactly conservative.
            T = jnp.maximum(T, FREEZING_SLOPE_K_PSU * S)
        tau = None if taux is None else jnp.stack([taux, tauy])
        u, v = vertical.implicit_vertical_diffusion(jnp.stack([u, v]), kap_m, dt, h_new, wetb,
                                                    tau, drag, w, advective_form=True,
                                                    advection=scheme)
        return u, v, T, S

    def split_explicit_step(self, state: OceanState, forcing: Forcing | None,
                            dt: float) -> OceanState:
        """One substep of `dt` seconds: steps 1-4 in turn (land must hold zeros)."""
        wet = self.geo.ops.wet
        h_old = self.geo.dz * (1.0 + state.ssh / self.geo.bt_depth)  # z*: h_k = dz_k (1 + eta/H)
        u, v, slow = self.baroclinic_momentum(state, dt)
        u, v, fx_l, fy_l, eta_new, h_new, w, w_floor = self.layer_transports(
            u, v, state.ssh, dt, slow)
        T, S = self.tracers(state.T, state.S, fx_l, fy_l, h_old, h_new, dt, w_floor)
        # The vertical step (wind stress, vertical friction, bottom drag) acts between the two
        # halves of the Coriolis rotation: the second half is undone, the step taken, and the
        # half rotated again (Strang). Applied after the whole rotation, the steady state of a
        # wind-driven column was the Ekman flow turned by f dt / 2: an along-wind transport of
        # f dt / 2 times the Ekman transport (0.36 at 45 deg with 7200 s substeps; 0.13 with the
        # 2618 s of tests/test_primitive.py's Ekman test, now 5e-5).
        f = self.geo.ops.coriolis
        u, v = coriolis_rotation(u, v, f, -0.5 * dt)
        u, v, T, S = self.implicit_vertical_step(u, v, T, S, h_new, w, forcing, dt)
        u, v = coriolis_rotation(u, v, f, 0.5 * dt)
        return OceanState(u=u * wet, v=v * wet, T=T, S=S, ssh=eta_new * wet[0])


def _ceil(x: float) -> int:
    return max(1, int(math.ceil(x - 1e-9)))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PrimitivePhysics(Physics):
    """Primitive-mode `Physics`: each day `n_substeps` split-explicit substeps of the
    `PrimitiveEquation` (`PrimitiveEquation.split_explicit_step`).

    Attributes (besides `Physics`'): `terms` (`PrimitiveTerms`), `eos` (the equation of state),
    `n_barotropic` short steps of `dt_barotropic_s` seconds in each substep's barotropic
    subcycle (`planning.plan_barotropic`; 0 without a free surface).
    """

    terms: PrimitiveTerms
    eos: Any
    n_barotropic: int
    dt_barotropic_s: float
    _cache: dict[Any, PrimitiveGeometry] = dataclasses.field(
        default_factory=dict, init=False, repr=False)

    @property
    def diagnostics(self) -> Mapping[str, float | int]:
        return MappingProxyType({**super().diagnostics, "n_barotropic": self.n_barotropic,
                                 "dt_barotropic_s": self.dt_barotropic_s})

    def geometry(self, dtype: Any) -> PrimitiveGeometry:
        """The `PrimitiveGeometry` in `dtype`, built once per dtype."""
        dtype = jnp.dtype(dtype)
        if dtype not in self._cache:
            # Built once per dtype, possibly while tracing: evaluated eagerly so that the cached
            # arrays are constants, never tracers of one trace.
            with jax.ensure_compile_time_eval():
                self._cache[dtype] = PrimitiveGeometry.from_grid(
                    self.grid, dtype, self.config.polar_filter_lat_deg,
                    self.terms.barotropic_polar_filter,
                    self.grid.sea_floor_m if self.terms.barotropic_depth == "sea_floor" else None)
        return self._cache[dtype]

    def operators(self, dtype: Any) -> Operators:
        return self.geometry(dtype).ops

    def day_step(self, coeffs_si: dict[str, Array], state: OceanState,
                 forcing: Forcing | None = None) -> OceanState:
        """One day of primitive-equation physics on ``[L, H, W]`` fields (SI units).

        Land values are ignored (NaN allowed) and returned unchanged; `forcing` holds
        ``[H, W]`` fields for the day (None: no surface fluxes).
        """
        dtype = jnp.result_type(state.T)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.float32
        geo = self.geometry(dtype)
        wetb = geo.ops.wet > 0
        zero = jnp.zeros((), dtype)
        s_in = OceanState(*(jnp.asarray(x).astype(dtype) for x in state))
        s = OceanState(
            u=jnp.where(wetb, s_in.u, zero), v=jnp.where(wetb, s_in.v, zero),
            T=jnp.where(wetb, s_in.T, zero), S=jnp.where(wetb, s_in.S, zero),
            ssh=jnp.where(wetb[0], s_in.ssh, zero),
        )
        eq = PrimitiveEquation.from_coefficients(geo, coeffs_si, self.terms, self.eos,
                                                 self.n_barotropic, self.dt_barotropic_s,
                                                 self.specs)
        dt = self.dt_substep_s
        eq = eq.with_step_convection(s.T, s.S, s.u, s.v)  # the "step" closure; else unchanged
        s = repeat(lambda st: eq.split_explicit_step(st, forcing, dt), self.n_substeps,
                   self.config.remat_substeps)(s)
        keep = lambda new, old, m: jnp.where(m, new, old)  # noqa: E731
        return OceanState(u=keep(s.u, s_in.u, wetb), v=keep(s.v, s_in.v, wetb),
                          T=keep(s.T, s_in.T, wetb), S=keep(s.S, s_in.S, wetb),
                          ssh=keep(s.ssh, s_in.ssh, wetb[0]))


def make_primitive_physics(grid: Grid, config: PhysicsConfig) -> PrimitivePhysics:
    """The primitive-equation `Physics` of `grid`.

    `config` is a `PhysicsConfig` with ``mode == "primitive"``; ``config.primitive`` holds the
    `PrimitiveTerms` (None: the defaults). The returned object has the same interface as paper
    mode: ``day_step(coeffs_si, state, forcing)`` on unbatched ``[L, H, W]`` fields with the
    coefficients of `PRIMITIVE_COEFFICIENTS` in SI units (scalars; ``nu_m``, ``nu_t``, ``kappa_v``,
    ``nu_v`` may also be per level ``[L]``).
    """
    terms = config.primitive if config.primitive is not None else PrimitiveTerms()
    if not isinstance(terms, PrimitiveTerms):
        raise ConfigError(
            f"physics.primitive must be a PrimitiveTerms, got {type(terms).__name__}"
        )
    check_primitive_grid(grid)
    if terms.barotropic_depth == "sea_floor" and grid.sea_floor_m is None:
        raise ConfigError(
            "physics.primitive.barotropic_depth is 'sea_floor' but the grid has no sea floor "
            "depth (Grid.sea_floor_m; the embedded world's grid has one)")
    specs = primitive_coefficients(config)
    # Baroclinic substep: the paper-mode CFL plan for advection and horizontal diffusion, capped
    # at max_substep_s.
    plan = plan_substeps(grid, config, {k: specs[k] for k in ("nu_m", "nu_t")})
    dt_target = min(plan.dt_s, float(terms.max_substep_s))
    n_sub = max(int(config.min_substeps), _ceil(float(config.step_s) / dt_target))
    dt = float(config.step_s) / n_sub
    # Barotropic subcycle: forward-backward gravity waves at the Courant number barotropic_cfl.
    n_bt, dt_bt = 0, 0.0
    if terms.free_surface:
        lat_c = config.polar_filter_lat_deg if terms.barotropic_polar_filter else None
        n_bt, dt_bt = plan_barotropic(
            grid, dt, float(terms.gravity_m_s2), terms.barotropic_cfl, lat_c,
            grid.sea_floor_m if terms.barotropic_depth == "sea_floor" else None)
    return PrimitivePhysics(
        specs=specs, n_substeps=n_sub, dt_substep_s=dt, config=config, grid=grid, plan=plan,
        terms=terms, eos=eos_lib.make_eos(terms.eos, terms.rho0_kg_m3),
        n_barotropic=n_bt, dt_barotropic_s=dt_bt,
    )
