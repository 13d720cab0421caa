"""The truth of a twin dataset: its physics, its substep, its true daily means, the map onto the
model grid.

The truth (`TruthSpec`, "twin v2") is a different model from the one being trained, so that skill
on it means something:

* primitive-equation physics (`neuralogcm_jax.physics.primitive`: pressure gradients from the
  TEOS-10 density, free surface, vertical advection and mixing, convective mixing, wind stress
  and a surface heat flux restoring toward the air temperature plus the climatological SST - t2m
  offset (`TruthSpec.heat_target`), bottom drag), where the model's default physics is the
  paper mode (horizontal advection, Coriolis and Laplacian diffusion only, no forcing);
* on its own grid, by default twice as fine as the model's (`TruthSpec.resolution_deg`), then
  coarse-grained conservatively (area-weighted over the wet fine cells, the converter's
  regridder: `neuralogcm_jax.data.coarse`) onto the model grid; the model grid is ocean where at
  least half of a cell is truth ocean;
* with its own numerics: a substep `substep_s` (model: the CFL plan of paper mode), the
  primitive mode's integrator (forward Euler of the baroclinic momentum, split-explicit free
  surface, implicit vertical solve; model: SSP Runge-Kutta with Strang-split Coriolis), a polar
  filter cutoff `polar_filter_lat_deg` and barotropic Courant number `barotropic_cfl` other than
  the model defaults (60 deg, 0.5), and convective mixing diagnosed at every substep between
  neighbouring levels and switched fully on at any inversion (model: once a model step,
  penetrative, ramped over 0.3 kg/m^3; `PrimitiveTerms.convective_closure`); vertical
  advection upwind, pinned (`PrimitiveTerms.vertical_advection_scheme`);
* coefficients different from the model's defaults (`TRUTH_COEFFICIENTS`);
* surface salinity restoring and a slow interior restoring of T and S toward the climatology
  (`climate_restoring`, applied exactly at every substep), which keeps a decade from drifting
  away from the real ocean;
* daily forcing with real interannual winds and synoptic noise (`neuralogcm_jax.data.forcing`),
  synthesised on the truth grid and stored coarse-grained (whole-cell area means).

The older truth (``mode="paper"``: the model's own paper physics plus `surface_closure`, on the
model grid) remains available as an option.

Time convention. Day ``t``'s forcing is held for the whole day ``t``; the stored ocean channels
of day ``t`` are the TRUE daily mean over that day: the average of the states after each of the
``86400 / substep_s`` truth substeps of the day, accumulated inside the day's scan (then
coarse-grained); the forcing channels of day ``t`` hold the forcing of day ``t``. A model stepping
``(x_t, f_{t+1}) -> x_{t+1}`` therefore sees the forcing that drove the truth over day ``t+1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2, RHO0_KG_M3, RHO_AIR_KG_M3, SECONDS_PER_DAY
from neuralogcm_jax.data.coarse import CoarseGrainer
from neuralogcm_jax.data.twin_spec import DatasetSpec, TruthSpec
from neuralogcm_jax.data.world import World, load_world
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics import PhysicsConfig, make_physics
from neuralogcm_jax.physics.primitive import PrimitiveTerms
from neuralogcm_jax.physics.primitive_terms import KELVIN_OFFSET


def _physics_for(world: World, truth: TruthSpec, freshwater: bool = False):
    dt = truth.dt_s
    if truth.mode == "primitive":
        # One physics call = one truth substep, so the day's mean can see every substep.
        config = PhysicsConfig(
            mode="primitive", step_s=dt, max_substep_s=dt,
            polar_filter_lat_deg=truth.polar_filter_lat_deg, remat_substeps=False,
            primitive=PrimitiveTerms(max_substep_s=dt, barotropic_cfl=truth.barotropic_cfl,
                                     eos=truth.eos, drag_coefficient=truth.drag_coefficient,
                                     convective_ramp_kg_m3=truth.convective_ramp_kg_m3,
                                     convective_closure="substep",
                                     vertical_advection_scheme="upwind",
                                     baroclinic_face_correction=0.0,
                                     rhie_chow_pressure="ssh", rhie_chow_order=1,
                                     freshwater_flux="e_minus_p" if freshwater else "none"),
        )
    else:
        # The paper-mode truth interleaves its surface closure with the physics every substep.
        # It runs the seed's paper form (no pressure gradient, flux-form advection), pinned so
        # that the dataset does not change with the model's physics defaults.
        config = PhysicsConfig.seed_paper(step_s=dt, remat_substeps=False)
    physics = make_physics(world.grid, config)
    if truth.mode == "primitive" and physics.n_substeps != 1:
        raise ConfigError(
            f"truth substep_s={dt:g} s exceeds the stability limit of the {world.resolution_deg} "
            f"deg truth grid ({physics.plan.dt_stable_s:.0f} s); choose a shorter one")
    coeffs = dict(truth.coefficients)
    missing = sorted(set(physics.specs) - set(coeffs))
    if missing:
        raise ConfigError(f"truth coefficients lack {missing} needed by {truth.mode} mode")
    return physics, {k: float(coeffs[k]) for k in physics.specs}


def surface_closure(state: OceanState, forcing: Forcing, sst_target, grid_depth, wet,
                    truth: TruthSpec, dt_s: float) -> OceanState:
    """One `dt_s` of the paper-mode truth's surface physics, solved exactly per cell.

    * Wind: ``du/dt = tau_x / (rho0 H_E) exp(-z/H_E) - u / t_drag`` (same for v), with
      ``tau = rho_air C_d |U10| U10``: the acceleration of a stress absorbed over the
      Ekman depth ``H_E``, against linear drag.
    * Heat: ``dT/dt = exp(-z/H_T) (T* - T) / t_T`` with ``T* = sst_target`` (degC).
    Fields ``[L, H, W]``, `sst_target` ``[H, W]``, `grid_depth` ``[L, 1, 1]`` (m)."""
    dtype = state.T.dtype
    c = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    speed = jnp.sqrt(forcing.u10**2 + forcing.v10**2)
    k = c(RHO_AIR_KG_M3 * truth.drag_coefficient)
    he = c(truth.ekman_depth_m)
    shape = jnp.exp(-grid_depth / he) / (c(RHO0_KG_M3) * he)
    t_drag = c(truth.drag_days * SECONDS_PER_DAY)
    decay = jnp.exp(-c(dt_s) / t_drag)
    ax = k * speed * forcing.u10 * shape
    ay = k * speed * forcing.v10 * shape
    u = state.u * decay + ax * t_drag * (1 - decay)
    v = state.v * decay + ay * t_drag * (1 - decay)
    t_heat = c(truth.heat_restoring_days * SECONDS_PER_DAY)
    rate = jnp.exp(-grid_depth / c(truth.heat_depth_m)) / t_heat
    T = sst_target + (state.T - sst_target) * jnp.exp(-rate * c(dt_s))
    return state._replace(u=jnp.where(wet, u, 0), v=jnp.where(wet, v, 0), T=jnp.where(wet, T, 0))


def climate_restoring(state: OceanState, T_clim, S_clim, grid_depth, wet, truth: TruthSpec,
                      dt_s: float) -> OceanState:
    """Exact relaxation of S at the surface (e-folding depth `heat_depth_m`, time scale
    `salinity_restoring_days`) and of T and S everywhere (`interior_restoring_days`) toward the
    climatology; T is kept above -1.9 degC (sea ice is not modelled)."""
    dtype = state.T.dtype
    c = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    day = c(SECONDS_PER_DAY)
    r_int = 1.0 / (c(truth.interior_restoring_days) * day)
    r_s = jnp.exp(-grid_depth / c(truth.heat_depth_m)) / (c(truth.salinity_restoring_days) * day)
    T = T_clim + (state.T - T_clim) * jnp.exp(-r_int * c(dt_s))
    S = S_clim + (state.S - S_clim) * jnp.exp(-(r_int + r_s) * c(dt_s))
    T = jnp.maximum(T, c(-1.9))
    return state._replace(T=jnp.where(wet, T, 0), S=jnp.where(wet, S, 0))


@dataclasses.dataclass(frozen=True, eq=False)
class Truth:
    """The truth of a `DatasetSpec`: its world, physics and the map onto the model grid.

    Attributes:
      world: the truth's world (`load_world` at the truth resolution and the dataset's levels).
      physics: the physics core of one substep.
      substep: ``substep(state, inputs) -> state``, one truth substep of `TruthSpec.dt_s`
        seconds (jittable); `inputs` = ``(forcing [4 or 6, H, W], sst_target [H, W])`` on the truth
        grid (sst_target in degC, ``sst_clim + (t2m - t2m_clim)``: the paper mode's surface
        closure and, with ``TruthSpec.heat_target == "offset"``, the primitive mode's heat flux
        restore toward it).
      n_substeps: substeps per day.
      coarse: the `CoarseGrainer` onto the model grid, or None when the truth is on it.
      grid: the model grid (the dataset's), with its wet mask.
    """

    world: World
    physics: Any
    substep: Any
    n_substeps: int
    coarse: CoarseGrainer | None
    grid: Any

    def to_model(self, state: OceanState) -> OceanState:
        """A truth-grid state -> the model grid (coarse wet-area means, 0 on model land)."""
        return state if self.coarse is None else self.coarse.state(state)

    def forcing_to_model(self, forcing: np.ndarray) -> np.ndarray:
        """``[..., 4 or 6, H, W]`` truth-grid forcing -> the model grid (whole-cell area means)."""
        if self.coarse is None:
            return forcing
        return self.coarse.forcing(np.asarray(forcing, np.float64)).astype(np.float32)

    def day(self, state: OceanState, inputs) -> tuple[OceanState, OceanState]:
        """One truth day (jittable): ``(state at the end of the day, the day's mean over the
        states after each substep)``, both on the truth grid."""
        def body(carry, _):
            s, acc = carry
            s = self.substep(s, inputs)
            return (s, jax.tree.map(jnp.add, acc, s)), None

        zero = jax.tree.map(jnp.zeros_like, state)
        (state, acc), _ = jax.lax.scan(body, (state, zero), None, length=self.n_substeps)
        inv = 1.0 / self.n_substeps
        return state, jax.tree.map(lambda a: a * jnp.asarray(inv, a.dtype), acc)


def make_truth(spec: DatasetSpec) -> Truth:
    """The `Truth` of `spec` (see the module doc)."""
    truth = spec.truth
    world = load_world(spec.truth_resolution_deg, spec.n_levels)
    physics, coeffs = _physics_for(world, truth, spec.freshwater)
    g = world.grid
    dt = truth.dt_s
    dtype = jnp.float32
    wet = jnp.asarray(g.wet)
    depth = jnp.asarray(g.depth, dtype)[:, None, None]
    dz = jnp.asarray(g.dz, dtype)[:, None, None]
    T_clim = jnp.asarray(world.T_clim, dtype)
    S_clim = jnp.asarray(world.S_clim, dtype)
    coeffs = {k: jnp.asarray(v, dtype) for k, v in coeffs.items()}
    area = np.broadcast_to(g.area[:, None], g.shape) * g.wet[0]
    ocean_area_w = jnp.asarray(area / area.sum(), dtype)
    alpha, beta = 2.0e-4, 7.6e-4  # thermal expansion (1/K), haline contraction (1/psu)

    def paper_piece(state: OceanState, forcing: Forcing, sst_target) -> OceanState:
        """`dt` seconds of the paper-mode truth: physics, then the surface closure, then the
        removal of the spurious tracer source of flux-form advection by a divergent flow.

        The paper physics advects T and S in flux form, ``-div(q U)``; with a divergent (Ekman)
        flow and no vertical velocity that holds a source ``-q div U`` which concentrates
        tracers where the flow converges without bound. The truth adds ``+q div U`` back with the
        current velocity, so its tracers move in advective form, ``-U . grad q`` (to the accuracy
        of using the velocity at the end of each piece)."""
        state = physics.day_step(coeffs, state, forcing)
        state = surface_closure(state, forcing, sst_target, depth, wet, truth, dt)
        neg_div = physics.operators(dtype).advection(jnp.ones_like(state.T), state.u, state.v)
        factor = jnp.exp(-neg_div * jnp.asarray(dt, dtype))
        return state._replace(T=jnp.where(wet, state.T * factor, 0),
                              S=jnp.where(wet, state.S * factor, 0))

    def substep(state: OceanState, inputs) -> OceanState:
        f, sst_target = inputs
        forcing = Forcing(f[0], f[1], f[2], f[3])
        if spec.freshwater:  # e, tp: the day's totals (m of water, ECMWF's signs) -> m/s
            day_s = jnp.asarray(SECONDS_PER_DAY, dtype)
            forcing = forcing._replace(evaporation=-f[4] / day_s, precipitation=f[5] / day_s)
        if truth.mode == "paper":
            state = paper_piece(state, forcing, sst_target)
        else:
            if truth.heat_target == "offset":
                # Primitive mode's flux restores the top level toward its forcing's t2m (only
                # the heat flux reads t2m): hand it the air temperature plus the day's
                # climatological SST - t2m offset, sst_clim + (t2m - t2m_clim), in K.
                forcing = forcing._replace(t2m=sst_target + jnp.asarray(KELVIN_OFFSET, dtype))
            state = physics.day_step(coeffs, state, forcing)
        state = climate_restoring(state, T_clim, S_clim, depth, wet, truth, dt)
        if truth.mode == "paper":
            # Paper mode has no free surface: diagnose SSH as the steric height of the column's
            # T/S anomaly (linear EOS) plus the inverse-barometer response to sea-level pressure.
            steric = jnp.sum(
                jnp.where(wet, (alpha * (state.T - T_clim) - beta * (state.S - S_clim)) * dz, 0),
                axis=0,
            )
            msl_anom = f[3] - jnp.sum(ocean_area_w * f[3])
            ssh = steric - msl_anom / jnp.asarray(RHO0_KG_M3 * GRAVITY_M_S2, dtype)
            state = state._replace(ssh=jnp.where(wet[0], ssh, 0).astype(dtype))
        return state

    coarse = None
    model_grid = g
    if not np.isclose(spec.truth_resolution_deg, spec.resolution_deg):
        coarse = CoarseGrainer(g, spec.resolution_deg)
        model_grid = coarse.grid
    return Truth(world=world, physics=physics, substep=substep, n_substeps=truth.n_substeps,
                 coarse=coarse, grid=model_grid)


def make_runner(truth: Truth):
    """A jitted ``run(state, inputs_chunk, valid [n]) -> (state, model-grid daily means [n, ...])``.

    Days with ``valid == False`` leave the state unchanged: a short last chunk is padded to the
    fixed chunk length so the scan compiles once."""
    def run(state, inputs, valid):
        def body(s, xv):
            x, ok = xv
            s_new, mean = truth.day(s, x)
            s_new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), s_new, s)
            return s_new, truth.to_model(mean)

        return jax.lax.scan(body, state, (inputs, valid))

    return jax.jit(run)
