"""Primitive mode's settings and inputs: the terms a user can switch (`PrimitiveTerms`), the
learnable coefficients (`PRIMITIVE_COEFFICIENTS`), the wind-stress formula and the grid checks.
The equations themselves are in `neuralogcm_jax.physics.primitive`, whose docstring describes
the scheme.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2, KELVIN_OFFSET, RHO0_KG_M3, RHO_AIR_KG_M3
from neuralogcm_jax.errors import ConfigError, GridError
from neuralogcm_jax.grid import Grid, layer_interfaces
from neuralogcm_jax.physics import eos as eos_lib
from neuralogcm_jax.physics import vertical
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, CoefficientSpec

Array = Any

# Surface freezing point of seawater ~ -0.054 S degC (-1.9 degC at 35 psu), linearised.
FREEZING_SLOPE_K_PSU = -0.054
# When the convective diffusivity is evaluated (`PrimitiveTerms.convective_closure`).
CONVECTIVE_CLOSURES = ("step", "substep")
# What the Rhie-Chow face correction of the transports sees (`PrimitiveTerms.rhie_chow_pressure`).
RHIE_CHOW_PRESSURES = ("total", "ssh")
# The surface freshwater flux (`PrimitiveTerms.freshwater_flux`).
FRESHWATER_FLUXES = ("none", "e_minus_p")
# Which depth the barotropic mode sees (`PrimitiveTerms.barotropic_depth`).
BAROTROPIC_DEPTHS = ("levels", "sea_floor")


@dataclasses.dataclass(frozen=True)
class PrimitiveTerms:
    """Settings of the primitive-equation mode: which terms act, and their fixed constants.

    Attributes:
      pressure_gradient: baroclinic pressure-gradient force ``-(1/rho0) grad p'`` from the
        hydrostatic pressure of the EOS density. Default True.
      free_surface: prognostic SSH with the barotropic force ``-g grad eta`` (split-explicit);
        False keeps eta fixed (no surface-pressure force; volume is then not conserved).
        Default True.
      vertical_advection: advection by the vertical velocity from continuity (tracers and
        momentum). Default True.
      vertical_advection_scheme: its interface values, implicit in the vertical solve:
        ``"upwind"`` (first order, monotone; numerical diffusivity ``|w| dzc / 2``) or
        ``"centred"`` (second order, linear between the layer centres; not monotone where
        ``|w| dzc`` exceeds twice the vertical diffusivity). What the choice changes at 1.5
        deg: `benchmarks/bench_numerics.py`. Default "upwind".
      vertical_mixing: implicit vertical diffusion with ``kappa_v`` (tracers) and ``nu_v``
        (momentum) plus convective mixing. Default True.
      wind_stress: surface momentum flux ``rho_air C_d |U10| U10`` (N/m^2) from the forcing,
        times the open-water fraction: 0 where the top level is at its freezing point (sea ice,
        which the model has no equation for, takes the stress), 1 from `ice_ramp_k` above it,
        linear between. Default True.
      heat_flux: surface heat flux restoring the top level toward t2m (K -> degC) with the
        learnable coefficient ``heat_restoring`` (W m^-2 K^-1). Default True.
      freshwater_flux: the surface salt flux of evaporation minus precipitation.
        ``"none"``: salt is closed. ``"e_minus_p"``: the virtual salt flux ``S_top (E - P)``
        (psu m/s, into the sea where evaporation wins) from the forcing's `evaporation` and
        `precipitation` (m/s of fresh water; `layout.Forcing`, filled from the data's
        freshwater channels ``e`` and ``tp`` in a layout with freshwater), the top level's own
        salinity (after the step's horizontal transport, like the heat flux's T), through the
        implicit vertical solve; the volume stays fixed (no freshwater volume flux). A forcing
        without the two fields: ConfigError naming this key. Default "none".
      bottom_drag: linear drag ``r_b`` (m/s, learnable ``bottom_drag``) on the deepest wet layer.
        Default True.
      eos: equation of state, ``"teos10"`` or ``"linear"`` (`eos.EOS_NAMES`). Default "teos10".
      drag_coefficient: neutral 10 m drag coefficient C_d (dimensionless) of the wind stress;
        1.3e-3 is the middle of the Large & Pond (1981) range for 5-15 m/s winds. Default 1.3e-3.
      convective_mixing: extra vertical diffusivity and viscosity, the learnable
        ``convective_kappa`` (m^2/s), across an interface where the water below is lighter than
        the water above (evaluated at the interface depth; which water, `convective_closure`
        says); implicit, so large values are stable. Default True.
      convective_closure: when and how the convective diffusivity is diagnosed. ``"step"``: once
        per model step (a day), from the step's initial state, comparing at each interface the
        densest water of the levels above with the lightest of the levels below (penetrative:
        the whole unstable part of a column mixes, not one interface per diagnosis), with a C1
        ramp, and held through the step's substeps. ``"substep"``: at every substep, from the
        two levels next to each interface, with a linear ramp. With "substep" the diffusivity
        follows the state every substep, a feedback that made float32 gradients of the small
        momentum coefficients ill-conditioned (3 deg x 4 levels, 5-day loss: nu_m 12.6 % from
        float64); with "step" 0.01 % there, and every primitive case of
        `tests/test_gradients.py` meets its 1e-2 bar (worst: 3 deg x 23 levels, per level,
        5-day shear_nu 0.29 %). The twin's truth keeps "substep" (`data/twin_truth.py`). Default "step".
      shear_mixing: Richardson-number-dependent vertical viscosity and diffusivity (Pacanowski
        & Philander 1981, the surface mixed layer of wind-driven shear) added to the background
        ``nu_v``, ``kappa_v`` at each inner interface of two wet levels: ``nu = shear_nu / (1 +
        5 Ri)^2``, ``kappa = nu / (1 + 5 Ri)``, with ``Ri = N^2 / S^2`` from the density jump
        of the two levels at the interface depth and their velocity difference (``Ri`` taken
        as 0 where the column is unstable there: convective mixing acts on top); learnable
        ``shear_nu`` (m^2/s). Diagnosed when the convective diffusivity is
        (`convective_closure`): once a model step from its initial state ("step"), or every
        substep. Default True.
      baroclinic_face_correction: the weight ``c`` of a further Rhie-Chow correction of the
        layer transports by the baroclinic pressure gradient (beyond the ``dt_bt / 2`` that
        `rhie_chow_pressure` "total" gives it): each face velocity that carries T, S and
        volume gains ``-c dt (G_face - avg(G_centre))`` (at `rhie_chow_order` 1; the
        ``(I - A C)^n`` excess at order n), the difference between the compact face gradient
        of the hydrostatic pressure and the average of the two centre forces the momentum
        equations use (dt the substep). The centred average is blind to a 2 dx density
        checkerboard; the compact face gradient is not, so the correction moves water from the
        heavy to the light columns of one and damps it, while for a smooth field it is of order
        ``(k dx / 2)^(2 n)`` of the force (a scale-selective damping of fronts a few cells wide).
        Its depth mean is dropped (the layer transports sum to the barotropic mode's, whose
        own Rhie-Chow correction handles the SSH checkerboard). 0: off (the
        transports see only the averaged centre velocities). What it changes at 1.5 deg:
        `benchmarks/bench_numerics.py`. Default 0.
      rhie_chow_pressure: what the Rhie-Chow face correction of the transports sees (the
        barotropic subcycle's ``-tau (grad_face - avg(grad_centre))``, ``tau = dt_bt / 2``, which
        damps the A-grid checkerboard of eta). ``"total"``: the hydrostatic pressure of each
        level, eta and the density's ``p'`` together, with that ``tau`` for both (the depth mean
        of p''s face excess in the subcycle, the rest in each layer's transport): no face
        transport where the pressure has no face excess, a density checkerboard is felt and
        damped. ``"ssh"``: eta alone (before 2026-12-05; the twin's truth keeps it). Under a
        5 cm sea-surface slope compensated by density below 100 m, the deep levels reached
        2.9e-4 m/s in 30 days with "ssh" and 2.5e-5 with "total" at `rhie_chow_order` 1, what
        the correction of the upper levels' curved, balanced pressure leaves; 3.1e-7 with
        "total" at order 3 (`tests/test_primitive.py`). Default "total".
      rhie_chow_order: how scale-selective every Rhie-Chow correction is (the barotropic
        subcycle's and `baroclinic_face_correction`): each sees ``(I - A C)^n`` of the compact
        face gradients (`Operators.face_excess`; ``C`` the mean of a cell's open faces, ``A``
        the mean of a face's two cells), all of a 2 dx checkerboard whatever ``n``, a
        ``(k dx / 2)^(2 n)`` share of a smooth field. ``n = 1`` is the usual ``grad_face -
        avg(grad_centre)`` (the only form before 2026-12-05, when ``C`` also counted closed
        faces as zero: a smooth gradient reaching a wall had an excess of a quarter of itself
        there). The correction of a smooth, balanced pressure drives a spurious cross-isobar
        flow; a density checkerboard is damped the same (30 days leave 61.1 % of one at order 1,
        61.3 % at 3) and a balanced front changes less (60 days: 0.05 % at 1, 0.03 % at 3).
        An integer 1-8; default 3.
      ice_ramp_k: the margin (K) above the freezing point over which the wind stress goes from
        none (ice) to full (open water); > 0. Default 0.2.
      convective_ramp_kg_m3: the density inversion (kg/m^3) over which the convective diffusivity
        ramps from 0 to its full value (linearly, or ``x^2 (3 - 2x)`` with the "step" closure); 0
        switches it fully on at any inversion. With the switch the day's result jumps wherever a
        coefficient change flips the stability of an interface, so the loss is discontinuous in the
        coefficients (central differences differed from the gradient by 7-86 % on the 3 deg,
        23-level world, 1.8 % on the 6 deg one) and the gradient never sees the stratification. A
        narrow ramp is smooth but stiff: at 0.1 kg/m^3 the float32 gradients of the small momentum
        coefficients of the 6 deg, 4-level world were off by up to 38 % (float64 fine), with the
        "substep" closure. The twin's truth keeps the switch (`TruthSpec.convective_ramp_kg_m3`):
        with a 0.1 ramp its 4.5 deg quick twin became non-finite in its third year (weak inversions
        mix weakly and can grow there). Default 0.3.
      rho0_kg_m3: Boussinesq reference density (kg/m^3). Default 1025.
      gravity_m_s2: gravitational acceleration (m/s^2). Default 9.81.
      max_substep_s: upper bound (s) on the baroclinic substep (the internal-wave and surface-flux
        time scales); the paper-mode CFL plan may choose shorter. Default 3600.
      barotropic_cfl: Courant number ``c dt_bt sqrt(1/dx^2 + 1/dy^2)`` (dimensionless, <= 1) of the
        forward-backward gravity-wave subcycle, with ``c = sqrt(g H_max)``. Default 0.5.
      barotropic_polar_filter: also filter the zonal gradient and transport of the barotropic
        subcycle, so that its short step follows the zonal spacing at the filter's cutoff
        latitude instead of the 4 km cells next to the pole (1.5 deg, 695 m deep: 9 steps of
        400 s per hour instead of 273 of 13 s). Both are filtered with the same symmetric
        operator ``M A M`` (A the row's Fourier filter, M the face mask), so the centre force
        stays the adjoint of the transport divergence and the subcycle keeps its energy bound
        wherever coastlines cross the filtered rows (see "Energy" in the module docstring).
        An earlier verdict that the filtered subcycle slowly grew was made with the old,
        not energy-consistent centre force. False: the unfiltered subcycle. Default True.
      barotropic_depth: the water depth of the barotropic (depth-mean) mode. ``"levels"``: the
        model levels' column (at most 643 m on the 23 GLORYS levels: gravity waves of 80 m/s
        instead of the real ocean's 200, and f/H of a flat shelf sea). ``"sea_floor"``: the real
        sea floor of the grid (`Grid.sea_floor_m`, the embedded world's ETOPO5 depth; at least
        the levels' column), through a passive layer below the deepest level that is that
        level continued down to the sea floor for the barotropic mode: it has the deepest
        level's velocity, tendencies and pressure gradient (at the faces, the deepest open
        level's), so the depth-mean flow, its forcing and the transports are over the whole
        depth while a deep flow stays as weak as the deepest level's; the levels stretch with
        eta over the whole depth (z*), and the water the passive layer exchanges with the
        deepest level crosses that level's floor with the level's own T and S (so the levels'
        heat and salt content changes by that exchange only). The subcycle's short step
        follows the faster waves (about sqrt(6000 / 643) = 3 times more short steps at 1.5
        deg). A grid without a sea floor: ConfigError. Default "levels".
    """

    pressure_gradient: bool = True
    free_surface: bool = True
    vertical_advection: bool = True
    vertical_advection_scheme: str = "upwind"
    vertical_mixing: bool = True
    wind_stress: bool = True
    heat_flux: bool = True
    freshwater_flux: str = "none"
    bottom_drag: bool = True
    eos: str = "teos10"
    drag_coefficient: float = 1.3e-3
    convective_mixing: bool = True
    convective_ramp_kg_m3: float = 0.3
    convective_closure: str = "step"
    shear_mixing: bool = True
    baroclinic_face_correction: float = 0.0
    rhie_chow_pressure: str = "total"
    rhie_chow_order: int = 3
    ice_ramp_k: float = 0.2
    rho0_kg_m3: float = RHO0_KG_M3
    gravity_m_s2: float = GRAVITY_M_S2
    max_substep_s: float = 3600.0
    barotropic_cfl: float = 0.5
    barotropic_polar_filter: bool = True
    barotropic_depth: str = "levels"

    def __post_init__(self):
        eos_lib.make_eos(self.eos)  # ConfigError naming an unknown EOS
        c = float(self.baroclinic_face_correction)
        if not (0.0 <= c <= 1.0):
            raise ConfigError(
                f"physics.primitive.baroclinic_face_correction must be in [0, 1], got {c}")
        for name in ("drag_coefficient", "convective_ramp_kg_m3"):
            v = float(getattr(self, name))
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"physics.primitive.{name} must be >= 0, got {v}")
        for name in ("rho0_kg_m3", "gravity_m_s2", "max_substep_s", "ice_ramp_k"):
            v = float(getattr(self, name))
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"physics.primitive.{name} must be > 0, got {v}")
        n = self.rhie_chow_order
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 8:
            raise ConfigError(f"physics.primitive.rhie_chow_order must be an integer 1-8, got {n!r}")
        for name, choices in (("rhie_chow_pressure", RHIE_CHOW_PRESSURES),
                              ("freshwater_flux", FRESHWATER_FLUXES),
                              ("barotropic_depth", BAROTROPIC_DEPTHS),
                              ("convective_closure", CONVECTIVE_CLOSURES),
                              ("vertical_advection_scheme", vertical.VERTICAL_ADVECTION_SCHEMES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"physics.primitive.{name} must be one of {choices}, "
                                  f"got {getattr(self, name)!r}")
        if not 0.0 < float(self.barotropic_cfl) <= 1.0:
            raise ConfigError(
                f"physics.primitive.barotropic_cfl must be in (0, 1], got {self.barotropic_cfl}"
            )


# Pacanowski & Philander (1981): nu = nu_0 / (1 + alpha Ri)^n + nu_b with alpha = 5, n = 2,
# kappa = nu / (1 + alpha Ri) + kappa_b (their nu_0 = 50 cm^2/s).
SHEAR_RI_ALPHA = 5.0
# A floor (1/s^2) under the squared shear of the Richardson number, a shear of 1e-3 1/s (1 cm/s
# over 10 m): Ri stays finite between levels moving together, and above the float32 round-off
# of N^2. With 1e-12 that round-off (levels left neutral by convection are +-1 ulp of density
# apart) set Ri in weakly sheared water, and the 5-day float32 gradient of nu_m on the 6 deg x
# 4-level case was 3.8 % from float64 (1e-8: nu_v 1.8 %; 1e-6: every coefficient within 9e-4).
SHEAR_FLOOR_S2 = 1e-6

PRIMITIVE_COEFFICIENTS: dict[str, CoefficientSpec] = {
    **PAPER_COEFFICIENTS,
    # Background interior diapycnal diffusivity ~1e-5 and a mixed-layer value ~1e-2 bracket it;
    # 1e-4 is a common single value for coarse models without a mixed-layer scheme. The solve
    # is implicit, so the bound only keeps the learned value physical.
    "kappa_v": CoefficientSpec(
        "kappa_v", 1e-4, "m^2/s", "vertical diffusivity of T and S", max_value=1.0
    ),
    # Vertical viscosity is usually ~10x the diffusivity (turbulent Prandtl number ~10).
    "nu_v": CoefficientSpec(
        "nu_v", 1e-3, "m^2/s", "vertical viscosity of momentum", max_value=1.0
    ),
    # Haney-type restoring: 30-50 W m^-2 K^-1 from linearised bulk formulae. Bound: explicit
    # restoring of a 1 m top layer over 3600 s stays below 1/3 of the gap.
    "heat_restoring": CoefficientSpec(
        "heat_restoring", 40.0, "W m^-2 K^-1",
        "surface heat-flux restoring of the top level toward the 2 m air temperature",
        max_value=400.0, per_level=False,
    ),
    # Linear bottom drag velocity r_b = C_D |u_b| with C_D = 2.5e-3 and |u_b| ~ 0.4 m/s: on the
    # shelves |u_b| is the tidal current that sets the drag (no tides here); over the deep
    # ocean the model's floor is the 700 m level of GLORYS, with no deep ocean below and no
    # topographic form stress, which is what balances the Southern Ocean's wind stress
    # (~0.15 N/m^2) in the real ocean with flow of ~0.1-0.15 m/s at that depth: r_b =
    # tau / (rho0 u) ~ 1e-3 m/s. With 2.5e-4 (C_D x 0.1 m/s, a deep-ocean frictional value)
    # the wind spun the circumpolar flow up towards tau / (rho0 r_b) ~ 0.6 m/s, and the SSH
    # difference across it beyond 3 m within a year at 1.5 deg.
    "bottom_drag": CoefficientSpec(
        "bottom_drag", 1e-3, "m/s", "linear bottom drag velocity on the deepest wet layer",
        max_value=0.1, per_level=False,
    ),
    # Convective adjustment as a large diffusivity, 1-10 m^2/s in z-level models: at 1 m^2/s a
    # 190 m unstable column mixes within a day, at 0.1 its inversion falls 30-fold
    # (tests/test_primitive.py). The default was 0.1 until 2026-12-05: at 1 the float32
    # gradients of the 6 deg x 23 level world's 5-day loss left float64's by 3.9 %
    # (convective_kappa), differentiated through the elimination of the vertical solve; with
    # its implicit derivative (`vertical._implicit_solve`) 0.29 % (docs/design.md).
    # Implicit, so the bound only keeps the learned value physical. One value: it acts where a
    # column is unstable, at whatever depth.
    "convective_kappa": CoefficientSpec(
        "convective_kappa", 1.0, "m^2/s",
        "vertical diffusivity and viscosity across statically unstable interfaces",
        max_value=10.0, per_level=False,
    ),
    # Pacanowski & Philander's nu_0 = 50 cm^2/s: the viscosity of an unstratified sheared
    # interface (Ri = 0), the diffusivity there too. Implicit, so the bound only keeps it
    # physical. One value: Ri sets the depth where it acts.
    "shear_nu": CoefficientSpec(
        "shear_nu", 5e-3, "m^2/s",
        "Richardson-number-dependent vertical viscosity (and diffusivity) at Ri = 0",
        max_value=1.0, per_level=False,
    ),
}


def primitive_coefficients(config: Any) -> dict[str, CoefficientSpec]:
    """Primitive mode's learnable coefficients for a `PhysicsConfig` (the same set for every
    configuration: the paper-mode ones and the vertical, surface and bottom terms)."""
    del config
    return dict(PRIMITIVE_COEFFICIENTS)


def wind_stress(u10: Array, v10: Array, drag_coefficient: float = 1.3e-3,
                rho_air: float = RHO_AIR_KG_M3) -> tuple[Array, Array]:
    """Surface wind stress ``rho_air C_d |U10| U10`` (N/m^2), components ``[..., H, W]``."""
    speed = jnp.sqrt(u10 * u10 + v10 * v10)
    k = rho_air * drag_coefficient
    return k * speed * u10, k * speed * v10


def check_primitive_grid(grid: Grid) -> None:
    """Raise GridError unless the levels are physical and every column is wet from the top down.

    A wet cell under a land cell would be a level deeper than the bathymetry allows (the water
    column must be contiguous from the surface to `Grid.bottom_level`).
    """
    depth = np.asarray(grid.depth, dtype=np.float64)
    if depth.ndim != 1 or depth.size == 0 or not np.all(np.isfinite(depth)):
        raise GridError(f"grid depth levels must be a finite 1-D array, got {depth.tolist()}")
    if np.any(depth <= 0):
        k = int(np.argmax(depth <= 0))
        raise GridError(f"grid depth level {k} is {depth[k]} m; depths must be positive (down)")
    dz = np.asarray(grid.dz, dtype=np.float64)
    if np.any(dz <= 0) or not np.allclose(dz, np.diff(layer_interfaces(depth))):
        raise GridError(f"grid layer thicknesses dz {dz.tolist()} do not tile the depth levels")
    wet = np.asarray(grid.wet, dtype=bool)
    below_land = wet[1:] & ~wet[:-1]
    if below_land.any():
        k, j, i = (int(x) for x in np.argwhere(below_land)[0])
        raise GridError(
            f"grid.wet has ocean at level {k + 1} ({depth[k + 1]:g} m) under land at level {k} "
            f"in row {j}, column {i}: a level deeper than the bathymetry allows "
            f"({int(below_land.sum())} such cells)"
        )
