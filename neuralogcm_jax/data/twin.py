"""Twin datasets: a known "truth" ocean run on the embedded world, written in the real layout.

``neuralogcm make-data --preset demo|skill|twin --out DIR [--seed N] [--overwrite]`` (and the
library function `generate_dataset`) spins the truth up from the embedded climatology at rest,
then runs it through consecutive calendar years and writes, per year, ``DIR/{split}/YEAR.h5``
(``fields`` float32 ``[T, C, H, W]``, T = 365 or 366, channels in `neuralogcm_jax.layout` order,
NaN on land), the statistics files, ``land_mask.h5`` and a ``README.md`` that states what the
truth contains.

The truth (`TruthSpec`, "twin v2") is a different model from the one being trained, so that skill
on it means something:

* primitive-equation physics (`neuralogcm_jax.physics.primitive`: pressure gradients from the
  TEOS-10 density, free surface, vertical advection and mixing, convective mixing, wind stress
  and surface heat flux from the forcing, bottom drag), where the model's default physics is the
  paper mode (horizontal advection, Coriolis and Laplacian diffusion only, no forcing);
* on its own grid, by default twice as fine as the model's (`TruthSpec.resolution_deg`), then
  coarse-grained conservatively (area-weighted over the wet fine cells, the converter's
  regridder: `neuralogcm_jax.data.coarse`) onto the model grid; the model grid is ocean where at
  least half of a cell is truth ocean;
* with its own numerics: a substep `substep_s` (model: the CFL plan of paper mode), the
  primitive mode's integrator (forward Euler of the baroclinic momentum, split-explicit free
  surface, implicit vertical solve; model: SSP Runge-Kutta with Strang-split Coriolis), a polar
  filter cutoff `polar_filter_lat_deg` and barotropic Courant number `barotropic_cfl` other than
  the model defaults (60 deg, 0.5);
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

Statistics (training years only): ocean channels' climatology by day of year (0-based ordinal day,
index 365 = 31 December of leap years), smoothed by a circular 31-day window weighted by the number
of samples of each day, 0 on land; ocean channels' mean and std of the anomalies about it (wet
cells); forcing channels' mean and std of the raw values (all cells). A std is floored at 1% of
the largest std of the same variable over its levels, so a channel that barely varies (deep
currents) cannot blow up normalised errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2, RHO0_KG_M3, RHO_AIR_KG_M3, SECONDS_PER_DAY
from neuralogcm_jax.data.coarse import CoarseGrainer
from neuralogcm_jax.data.forcing import ForcingSynthesizer, NoiseSpec, days_in_year
from neuralogcm_jax.data.world import World, load_world
from neuralogcm_jax.errors import ConfigError, DataError
from neuralogcm_jax.layout import ChannelLayout, Forcing, OceanState

# Truth coefficients (SI), each different from the model's default in physics/params.py and
# physics/primitive.py (defaults: nu_m 5e4, nu_t 1e3, kappa_v 1e-4, nu_v 1e-3,
# heat_restoring 40, bottom_drag 1e-3).
TRUTH_COEFFICIENTS = {
    "nu_m": 8.0e4,
    "nu_t": 2.5e3,
    "kappa_v": 3.0e-4,
    "nu_v": 5.0e-3,
    "heat_restoring": 30.0,
    "bottom_drag": 5.0e-4,
}


@dataclasses.dataclass(frozen=True)
class TruthSpec:
    """What the truth ocean contains (every field with its unit).

    Attributes:
      mode: physics of the truth, ``"primitive"`` (twin v2, default) or ``"paper"`` (the older
        truth: the model's paper physics + `surface_closure`, on the model grid).
      resolution_deg: grid spacing (deg) of the truth; a multiple of 1.5 no coarser than the
        model grid, coarse-grained onto it. None: the model grid itself (no coarse-graining).
      coefficients: truth physics coefficients (SI); only those the mode uses are passed.
      substep_s: length (s) of one truth substep; must divide a day. Daily means average the
        states after every substep. None: 7200 in primitive mode (12 a day; the model's own
        primitive default is 3600), 3600 in paper mode (the interval at which the closure and
        tracer correction are interleaved with the physics, well inside the inertial period).
      polar_filter_lat_deg: polar-filter cutoff (deg) of the primitive truth (model default 60).
      barotropic_cfl: Courant number of the primitive truth's barotropic subcycle (model default
        0.5).
      eos: equation of state of the primitive truth (`physics.eos.EOS_NAMES`).
      drag_coefficient: wind-stress drag coefficient (dimensionless; both modes).
      ekman_depth_m: e-folding depth (m) of the wind-stress acceleration (paper mode).
      drag_days: linear drag time scale (days) of the currents (paper mode).
      heat_depth_m: e-folding depth (m) of the mixed-layer heat restoring (paper mode) and of the
        surface salinity restoring (both modes).
      heat_restoring_days: time scale (days) of the surface heat restoring toward
        ``sst_clim + (t2m - t2m_clim)`` (paper mode).
      salinity_restoring_days: time scale (days) of surface salinity restoring toward the
        climatology (both modes; decays with depth like the heat restoring).
      interior_restoring_days: time scale (days) of the restoring of T and S at every level
        toward the climatology (both modes).
    """

    mode: str = "primitive"
    resolution_deg: float | None = None
    coefficients: tuple[tuple[str, float], ...] = tuple(TRUTH_COEFFICIENTS.items())
    substep_s: float | None = None
    polar_filter_lat_deg: float = 70.0
    barotropic_cfl: float = 0.35
    eos: str = "teos10"
    drag_coefficient: float = 1.3e-3
    ekman_depth_m: float = 40.0
    drag_days: float = 4.0
    heat_depth_m: float = 30.0
    heat_restoring_days: float = 15.0
    salinity_restoring_days: float = 90.0
    interior_restoring_days: float = 730.0

    def __post_init__(self):
        if self.mode not in ("paper", "primitive"):
            raise ConfigError(f"truth mode must be 'paper' or 'primitive', got {self.mode!r}")
        skip = ("mode", "coefficients", "eos", "resolution_deg", "substep_s")
        for f in dataclasses.fields(self):
            if f.name in skip:
                continue
            if not float(getattr(self, f.name)) > 0:
                raise ConfigError(f"truth {f.name} must be > 0, got {getattr(self, f.name)}")
        if self.substep_s is not None:
            n = SECONDS_PER_DAY / float(self.substep_s)
            if not float(self.substep_s) > 0 or abs(n - round(n)) > 1e-9:
                raise ConfigError(
                    f"truth substep_s must divide a day (86400 s), got {self.substep_s}")
        if self.resolution_deg is not None and not float(self.resolution_deg) > 0:
            raise ConfigError(f"truth resolution_deg must be > 0, got {self.resolution_deg}")
        if self.mode == "paper" and self.resolution_deg is not None:
            raise ConfigError("the paper-mode truth runs on the model grid (resolution_deg=None)")
        if not 0.0 < float(self.barotropic_cfl) <= 1.0:
            raise ConfigError(f"truth barotropic_cfl must be in (0, 1], got {self.barotropic_cfl}")

    @property
    def dt_s(self) -> float:
        """The substep (s), with the mode's default resolved."""
        if self.substep_s is not None:
            return float(self.substep_s)
        return 7200.0 if self.mode == "primitive" else 3600.0

    @property
    def n_substeps(self) -> int:
        return int(round(SECONDS_PER_DAY / self.dt_s))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A twin dataset: grid, years per split, spin-up, truth and forcing noise.

    Attributes:
      resolution_deg: model grid spacing (deg; a multiple of 1.5).
      n_levels: number of GLORYS levels (first n).
      train_years, valid_years, test_years: calendar years per split; together consecutive.
      spinup_days: days run before the first year (climatological forcing of the year before
        plus noise) so the currents exist and the state is near the truth's own climate.
      truth: the truth model (its own grid: `TruthSpec.resolution_deg`).
      noise: synoptic forcing noise (None: none).
      chunk_days: days per compiled scan (memory vs. dispatch overhead).
    """

    resolution_deg: float = 6.0
    n_levels: int = 23
    train_years: tuple[int, ...] = (1983, 1984)
    valid_years: tuple[int, ...] = (1985,)
    test_years: tuple[int, ...] = (1986,)
    spinup_days: int = 60
    truth: TruthSpec = TruthSpec(resolution_deg=3.0)
    noise: NoiseSpec | None = NoiseSpec()
    chunk_days: int = 61

    def __post_init__(self):
        years = self.years
        if not self.train_years:
            raise ConfigError("a dataset needs at least one training year")
        if list(years) != list(range(years[0], years[0] + len(years))):
            raise ConfigError(
                f"split years must be consecutive train -> valid -> test, got {list(years)}"
            )
        if self.spinup_days < 0 or self.chunk_days < 1:
            raise ConfigError(
                f"spinup_days must be >= 0 and chunk_days >= 1, got {self.spinup_days}, "
                f"{self.chunk_days}"
            )
        tr = self.truth.resolution_deg
        if tr is not None and float(tr) > float(self.resolution_deg) + 1e-9:
            raise ConfigError(
                f"truth resolution {tr} deg is coarser than the model grid {self.resolution_deg}")

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(self.train_years) + tuple(self.valid_years) + tuple(self.test_years)

    @property
    def truth_resolution_deg(self) -> float:
        tr = self.truth.resolution_deg
        return float(self.resolution_deg if tr is None else tr)

    def split_of(self, year: int) -> str:
        for name in ("train", "valid", "test"):
            if year in getattr(self, f"{name}_years"):
                return name
        raise ConfigError(f"year {year} is in no split")


_DEMO = DatasetSpec(
    resolution_deg=6.0,
    n_levels=23,
    train_years=(1983, 1984),
    valid_years=(1985,),
    test_years=(1986,),
    spinup_days=90,
    truth=TruthSpec(resolution_deg=3.0),
)

PRESETS: dict[str, DatasetSpec] = {
    # The demo grid (6 deg x 23 GLORYS levels) from a 3 deg primitive-equation truth: 2 training
    # years, one validation and one test year; minutes on a 2-core CPU (README/BENCHMARKS).
    "demo": _DEMO,
    # The skill benchmark's dataset (benchmarks/bench_skill.py): the demo grid and truth with
    # 6 training years, one validation and one held-out test year.
    "skill": dataclasses.replace(_DEMO, train_years=tuple(range(1983, 1989)), valid_years=(1989,),
                                 test_years=(1990,), spinup_days=180),
    # The real resolution and levels, the eleven FNOC years (leap years 1984, 1988, 1992). A truth
    # twice as fine (0.75 deg) does not exist here: the embedded world is 1.5 deg, and it would
    # cost ~16x the 1.5 deg truth (4x the cells, half the substep). So the truth runs on the model
    # grid itself (1.5 deg, no coarse-graining); it still differs from the model in physics,
    # numerics and coefficients.
    "twin": DatasetSpec(
        resolution_deg=1.5,
        n_levels=23,
        train_years=tuple(range(1982, 1990)),
        valid_years=(1990, 1991),
        test_years=(1992,),
        spinup_days=365,
        truth=TruthSpec(resolution_deg=1.5),
        chunk_days=31,
    ),
}


# ------------------------------------------------------------------------------ truth model
def _physics_for(world: World, truth: TruthSpec):
    from neuralogcm_jax.physics import PhysicsConfig, make_physics

    dt = truth.dt_s
    if truth.mode == "primitive":
        from neuralogcm_jax.physics.primitive import PrimitiveTerms

        # One physics call = one truth substep, so the day's mean can see every substep.
        config = PhysicsConfig(
            mode="primitive", step_s=dt, max_substep_s=dt,
            polar_filter_lat_deg=truth.polar_filter_lat_deg, remat_substeps=False,
            primitive=PrimitiveTerms(max_substep_s=dt, barotropic_cfl=truth.barotropic_cfl,
                                     eos=truth.eos, drag_coefficient=truth.drag_coefficient),
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
    import jax.numpy as jnp

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
    import jax.numpy as jnp

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
        seconds (jittable); `inputs` = ``(forcing [4, H, W], sst_target [H, W])`` on the truth
        grid (sst_target in degC, used by the paper mode only).
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
        """``[..., 4, H, W]`` truth-grid forcing -> the model grid (whole-cell area means)."""
        if self.coarse is None:
            return forcing
        return self.coarse.forcing(np.asarray(forcing, np.float64)).astype(np.float32)

    def day(self, state: OceanState, inputs) -> tuple[OceanState, OceanState]:
        """One truth day (jittable): ``(state at the end of the day, the day's mean over the
        states after each substep)``, both on the truth grid."""
        import jax
        import jax.numpy as jnp

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
    import jax.numpy as jnp

    truth = spec.truth
    world = load_world(spec.truth_resolution_deg, spec.n_levels)
    physics, coeffs = _physics_for(world, truth)
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
        if truth.mode == "paper":
            state = paper_piece(state, forcing, sst_target)
        else:
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


def _make_runner(truth: Truth):
    """A jitted ``run(state, inputs_chunk, valid [n]) -> (state, model-grid daily means [n, ...])``.

    Days with ``valid == False`` leave the state unchanged: a short last chunk is padded to the
    fixed chunk length so the scan compiles once."""
    import jax
    import jax.numpy as jnp

    def run(state, inputs, valid):
        def body(s, xv):
            x, ok = xv
            s_new, mean = truth.day(s, x)
            s_new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), s_new, s)
            return s_new, truth.to_model(mean)

        return jax.lax.scan(body, state, (inputs, valid))

    return jax.jit(run)


# ------------------------------------------------------------------------------ statistics
def _smooth_circular(sums: np.ndarray, counts: np.ndarray, half_width: int = 15) -> np.ndarray:
    """``[366, ...]`` sums and ``[366]`` sample counts -> windowed means over ``2 hw + 1`` days,
    circular in the day of year (float32)."""
    n = sums.shape[0]
    out = np.empty(sums.shape, dtype=np.float32)
    # A running window sum (float64): one add and one subtract per day instead of 31 adds.
    window = np.zeros(sums.shape[1:], dtype=np.float64)
    count = 0
    for j in range(-half_width, half_width + 1):
        window += sums[j % n]
        count += counts[j % n]
    for d in range(n):
        if d > 0:
            enter, leave = (d + half_width) % n, (d - half_width - 1) % n
            window += sums[enter]
            window -= sums[leave]
            count += counts[enter] - counts[leave]
        if count == 0:
            raise DataError("a 31-day window holds no training day; need at least one full year")
        out[d] = window / count
    return out


def _read_year(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["fields"], dtype=np.float32)


def compute_stats(
    train_files: Sequence[tuple[int, Path]], layout: ChannelLayout, wet: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stats of the training years (see module doc): ``mean [C]``, ``std [C]``,
    ``clim [366, n_ocean, H, W]`` (0 on land) and its harmonics ``[2 K + 1, n_ocean, H, W]``
    (`normalize.fit_harmonics`); the ocean mean/std are of the anomalies from the harmonic
    climatology, the one the pipeline and the models use."""
    from neuralogcm_jax.data.normalize import climatology_at, fit_harmonics

    n_oc = layout.n_ocean
    wet_ch = layout.wet_channels(wet)[:n_oc]
    h, w = wet.shape[1:]
    # float64 sums where they fit in ~1 GB; float32 (ample for <= a few dozen years) otherwise.
    big = 366 * n_oc * h * w * 8 > 1e9
    sums = np.zeros((366, n_oc, h, w), dtype=np.float32 if big else np.float64)
    counts = np.zeros(366, dtype=np.int64)
    for _, path in train_files:
        x = _read_year(path)
        sums[: x.shape[0]] += np.nan_to_num(x[:, :n_oc])
        counts[: x.shape[0]] += 1
    clim = _smooth_circular(sums, counts)
    del sums
    clim *= wet_ch[None]
    harmonics = fit_harmonics(clim) * wet_ch[None]
    C = layout.n_channels
    s1 = np.zeros(C)
    s2 = np.zeros(C)
    n = np.zeros(C)
    for _, path in train_files:
        x = _read_year(path)
        for t in range(x.shape[0]):
            a = x[t, :n_oc] - climatology_at(harmonics, t)
            a = np.where(wet_ch, a, 0.0).astype(np.float64)
            s1[:n_oc] += a.sum(axis=(1, 2))
            s2[:n_oc] += (a * a).sum(axis=(1, 2))
            n[:n_oc] += wet_ch.sum(axis=(1, 2))
            fr = x[t, n_oc:].astype(np.float64)
            s1[n_oc:] += fr.sum(axis=(1, 2))
            s2[n_oc:] += (fr * fr).sum(axis=(1, 2))
            n[n_oc:] += h * w
    mean = s1 / np.maximum(n, 1)
    std = np.sqrt(np.maximum(s2 / np.maximum(n, 1) - mean**2, 0.0))
    # Floor each ocean channel's std at 1% of its variable's largest std over levels.
    for var in ("S", "U", "V", "T", "SSH"):
        sl = layout.var_slice(var)
        top = std[sl].max()
        std[sl] = np.maximum(std[sl], max(0.01 * top, 1e-6))
    std[n_oc:] = np.maximum(std[n_oc:], 1e-6)
    return mean.astype(np.float32), std.astype(np.float32), clim, harmonics


# ------------------------------------------------------------------------------ generation
def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: target exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise DataError(
                f"{out}: target directory is not empty; pass --overwrite (overwrite=True) to "
                "replace it"
            )


def _spec_dict(spec: DatasetSpec) -> dict:
    d = dataclasses.asdict(spec)
    d["truth"]["coefficients"] = dict(spec.truth.coefficients)
    return d


def resolve_spec(preset_or_spec: str | DatasetSpec) -> DatasetSpec:
    """A name of `PRESETS` or a `DatasetSpec` -> the `DatasetSpec`."""
    if isinstance(preset_or_spec, str):
        if preset_or_spec not in PRESETS:
            raise ConfigError(f"unknown preset {preset_or_spec!r}; known: {sorted(PRESETS)}")
        return PRESETS[preset_or_spec]
    return preset_or_spec


def generate_dataset(
    out: str | os.PathLike,
    preset_or_spec: str | DatasetSpec = "demo",
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate a twin dataset into `out` (see module doc); returns the final path.

    `preset_or_spec`: a name of `PRESETS` or a `DatasetSpec`. Deterministic from `seed`.
    Written into a temporary sibling directory first and renamed into place at the end, so a
    failed run leaves `out` as it was. A non-empty `out` is refused unless `overwrite`."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from neuralogcm_jax.data import h5format

    spec = resolve_spec(preset_or_spec)
    out = Path(out)
    _prepare_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        truth = make_truth(spec)
        world = truth.world
        g = truth.grid  # the model grid
        layout = ChannelLayout.with_levels(spec.n_levels)
        run = _make_runner(truth)
        synth = ForcingSynthesizer(world, seed, spec.noise)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), world.initial_state())
        wet_ch = layout.wet_channels(g.wet)
        n_oc = layout.n_ocean
        total = spec.spinup_days + sum(days_in_year(y) for y in spec.years)
        bar = tqdm(total=total, desc="make-data", unit="day", disable=not progress,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} days "
                   "[{elapsed}<{remaining}, {rate_fmt}]")
        timing = {"spinup_s": 0.0, "years_s": 0.0}

        def advance(state, yf, n_days, fields=None):
            """Run `n_days` of `yf`; with `fields` ``[n_days, C, H, W]`` given, write the daily
            means of the ocean channels into it (and fail on a non-finite truth)."""
            sst_target = yf.sst_clim + (yf.forcing[:, 2] - yf.t2m_clim)
            for a in range(0, n_days, spec.chunk_days):
                b = min(n_days, a + spec.chunk_days)
                pad = spec.chunk_days - (b - a)
                padded = lambda x: np.concatenate([x[a:b]] + [x[b - 1:b]] * pad)  # noqa: E731
                inputs = (jnp.asarray(padded(yf.forcing)), jnp.asarray(padded(sst_target)))
                valid = jnp.asarray(np.arange(spec.chunk_days) < b - a)
                state, mean = run(state, inputs, valid)
                if fields is not None:
                    mean = jax.tree.map(lambda m: np.asarray(m[: b - a]), mean)
                    fields[a:b, :n_oc] = layout.from_state(mean)
                    if not np.isfinite(fields[a:b, :n_oc][:, wet_ch[:n_oc]]).all():
                        raise DataError(
                            f"truth became non-finite in year {yf.year}, days {a}..{b - 1} "
                            f"({spec.truth.mode} mode)"
                        )
                else:
                    jax.block_until_ready(state)
                bar.update(b - a)
            return state

        # Spin-up: climatology of the year before the first one (no FNOC anomaly outside
        # 1982-1992) plus noise, repeated as needed.
        t0 = time.perf_counter()
        remaining = spec.spinup_days
        while remaining > 0:
            yf = synth.year(spec.years[0] - 1, n_days=min(remaining, 365))
            state = advance(state, yf, yf.forcing.shape[0])
            remaining -= yf.forcing.shape[0]
        # A NaN truth means an unstable configuration: fail before writing anything bad.
        if not np.isfinite(np.asarray(state.T)[world.grid.wet]).all():
            raise DataError(f"truth became non-finite during spin-up ({spec.truth.mode} mode)")
        timing["spinup_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        files = []
        for year in spec.years:
            yf = synth.year(year)
            n = yf.forcing.shape[0]
            fields = np.empty((n, layout.n_channels) + g.shape, dtype=np.float32)
            fields[:, n_oc:] = truth.forcing_to_model(yf.forcing)
            state = advance(state, yf, n, fields)
            fields[:, ~wet_ch] = np.nan
            path = tmp / spec.split_of(year) / f"{year}.h5"
            h5format.write_year(path, fields, g.lat, g.lon, g.depth,
                                attrs={"source": "neuralogcm_jax twin v2", "seed": int(seed)})
            files.append((year, path))
            del fields
        bar.close()
        timing["years_s"] = time.perf_counter() - t0

        mean, std, clim, harmonics = compute_stats(
            [(y, p) for y, p in files if y in spec.train_years], layout, g.wet
        )
        h5format.write_stats(tmp, mean, std, clim, harmonics)
        h5format.write_land_mask(tmp, wet_ch, g.lat, g.lon)
        timing["total_s"] = time.perf_counter() - t_start
        timing["cpu_s"] = time.process_time() - cpu_start
        timing["s_per_simulated_year"] = timing["years_s"] / len(spec.years) * 365.25 / (
            sum(days_in_year(y) for y in spec.years) / len(spec.years))
        timing["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        (tmp / "README.md").write_text(_readme(spec, seed, truth, timing))
        (tmp / "spec.json").write_text(json.dumps(
            _spec_dict(spec) | {"seed": int(seed), "timing": timing}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def generate_self_twin(
    out: str | os.PathLike,
    coefficients: dict[str, float],
    *,
    resolution_deg: float = 12.0,
    n_levels: int = 2,
    years: Sequence[int] = (1983, 1984),
    physics_config=None,
    seed: int = 0,
    speed_m_s: float = 0.3,
    overwrite: bool = False,
) -> Path:
    """A dataset made by the model's OWN paper physics with the given `coefficients` (no
    closures, no restoring, no forcing), for coefficient-recovery tests: the first year is the
    training split, the second (if any) the validation split.

    The stored ocean channels are the instantaneous states at the end of each day (what the
    model's one-day step predicts), starting from Levitus T/S at rest plus a smooth random flow
    of RMS speed `speed_m_s` (seeded) on the embedded world at `resolution_deg`; the forcing
    channels hold the world's monthly climatology (the paper physics ignores them)."""
    import jax
    import jax.numpy as jnp

    from neuralogcm_jax.data import h5format
    from neuralogcm_jax.physics import PhysicsConfig, make_physics

    out = Path(out)
    _prepare_out(out, overwrite)
    world = load_world(resolution_deg, n_levels)
    g = world.grid
    physics = make_physics(g, physics_config or PhysicsConfig())
    coeffs = {k: jnp.asarray(float(coefficients[k]), jnp.float32) for k in physics.specs}
    layout = ChannelLayout.with_levels(n_levels)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1F]))
    lat = np.deg2rad(g.lat)[:, None]
    lon = np.deg2rad(g.lon)[None, :]
    flow = []
    for _ in range(2):  # smooth: a few low zonal and meridional wavenumbers
        f = sum(rng.standard_normal() * np.cos(m * lon + rng.uniform(0, 2 * np.pi))
                * np.cos(lat) ** 2 * np.cos(n * lat + rng.uniform(0, np.pi))
                for m in (1, 2, 3) for n in (1, 2, 3))
        flow.append(np.broadcast_to(f, g.wet.shape) * g.wet)
    rms = np.sqrt(np.mean(np.square(flow)[:, g.wet]))
    s0 = world.initial_state()
    state = s0._replace(u=(speed_m_s / rms * flow[0]).astype(np.float32),
                        v=(speed_m_s / rms * flow[1]).astype(np.float32))
    state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), state)
    run = jax.jit(lambda s: physics.integrate(coeffs, s, None, 1, trajectory=False))
    wet_ch = layout.wet_channels(g.wet)
    n_oc = layout.n_ocean
    files = []
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for i, year in enumerate(years):
            n = days_in_year(year)
            fields = np.empty((n, layout.n_channels) + g.shape, np.float32)
            from neuralogcm_jax.data.forcing import climatological_daily
            from neuralogcm_jax.data.world import SURFACE_VARIABLES
            from neuralogcm_jax.layout import FORCING_VARIABLES

            clim = climatological_daily(world, year)
            for c, name in enumerate(FORCING_VARIABLES):
                fields[:, n_oc + c] = clim[:, SURFACE_VARIABLES.index(name)]
            for t in range(n):
                state = run(state)
                fields[t, :n_oc] = layout.from_state(jax.tree.map(np.asarray, state))
            if not np.isfinite(fields[:, :n_oc][:, wet_ch[:n_oc]]).all():
                raise DataError(f"self twin became non-finite in {year}")
            fields[:, ~wet_ch] = np.nan
            split = "train" if i == 0 else "valid"
            path = tmp / split / f"{year}.h5"
            h5format.write_year(path, fields, g.lat, g.lon, g.depth,
                                attrs={"source": "neuralogcm_jax self twin", "seed": int(seed)})
            files.append((year, split, path))
        mean, std, clim = compute_stats([(y, p) for y, sp, p in files if sp == "train"], layout,
                                        g.wet)
        h5format.write_stats(tmp, mean, std, clim)
        h5format.write_land_mask(tmp, wet_ch, g.lat, g.lon)
        (tmp / "README.md").write_text(
            "# Self twin (neuralogcm_jax.data.twin.generate_self_twin)\n\n"
            f"The model's own paper physics ({physics.n_substeps} substeps of "
            f"{physics.dt_substep_s:.0f} s a day, tracer advection "
            f"{physics.config.tracer_advection}) with coefficients "
            + ", ".join(f"{k} = {float(v):g}" for k, v in coefficients.items())
            + f" on {g.describe()} ({resolution_deg:g} deg); no closures, restoring or forcing; "
            f"Levitus T/S plus a smooth random flow of RMS {speed_m_s:g} m/s (seed {seed}); "
            "instantaneous end-of-day states. Years: "
            + ", ".join(f"{y} ({sp})" for y, sp, _ in files) + ".\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readme(spec: DatasetSpec, seed: int, truth: Truth, timing: dict) -> str:
    t = spec.truth
    physics, world, g = truth.physics, truth.world, truth.grid
    coeffs = dict(t.coefficients)
    used = {k: coeffs[k] for k in physics.specs}
    tg = world.grid
    load = timing.get("load_average")
    lines = [
        "# Twin dataset (neuralogcm_jax make-data)",
        "",
        "A synthetic ocean in the NeuralOGCM data layout: known truth, real geography.",
        "",
        f"* model grid (the stored fields): {g.describe()}, {spec.resolution_deg:g} deg, "
        f"{spec.n_levels} GLORYS levels (m) {', '.join(f'{d:g}' for d in g.depth)}",
        f"* splits: train {list(spec.train_years)}, valid {list(spec.valid_years)}, "
        f"test {list(spec.test_years)}; spin-up {spec.spinup_days} days before "
        f"{spec.years[0]}",
        f"* seed: {seed}; everything is deterministic from it (forcing noise; the truth itself has "
        "no randomness)",
        f"* generated in {timing['total_s']:.0f} s ({timing['cpu_s']:.0f} CPU-s; spin-up "
        f"{timing['spinup_s']:.0f} s, {timing['s_per_simulated_year']:.0f} s per simulated year; "
        f"load average {load if load is None else round(load, 1)} at the end)",
        "",
        "## Truth",
        "",
        f"* truth grid: {tg.describe()}, {world.resolution_deg:g} deg"
        + (" (the model grid itself)" if truth.coarse is None else
           f" ({spec.resolution_deg / world.resolution_deg:g}x finer than the model grid); "
           "coarse-grained conservatively "
           f"(area-weighted means over the wet truth cells, the converter's regridder) onto "
           f"the model grid, which is ocean where at least half of a cell is truth ocean "
           f"({100 * float(truth.coarse.lost_area_fraction().max()):.1f} % of the truth ocean "
           "area at most per level falls in model land cells)"),
    ]
    if t.mode == "primitive":
        lines += [
            "* physics: **primitive equations** (hydrostatic, Boussinesq, z* free surface; "
            f"{t.eos} equation of state; pressure gradients, vertical advection and implicit "
            "vertical mixing with convective mixing, wind stress rho_air C_d |U10| U10 "
            f"(C_d = {t.drag_coefficient:g}) and the surface heat flux heat_restoring x "
            "(t2m - T_top) from the forcing, linear bottom drag; neuralogcm_jax/physics/"
            "primitive.py)",
            f"* numerics: {t.n_substeps} substeps of {t.dt_s:g} s a day (forward Euler of the "
            "baroclinic momentum, exact Coriolis rotation, split-explicit barotropic mode with "
            f"{physics.n_barotropic} short steps of {physics.dt_barotropic_s:.0f} s (Courant "
            f"number {t.barotropic_cfl:g}), implicit vertical solve); polar filter poleward of "
            f"{t.polar_filter_lat_deg:g} deg. The model's defaults differ: paper mode, SSP "
            "Runge-Kutta with Strang-split Coriolis on its CFL-planned substep, polar filter "
            "at 60 deg, no forcing, no vertical terms.",
        ]
    else:
        lines += [
            f"* physics: **paper mode** (the model's own core) with {t.n_substeps} pieces of "
            f"{t.dt_s:g} s a day, each followed by the surface closure (not in the model's "
            f"physics): wind stress rho_air C_d |U10| U10 (C_d = {t.drag_coefficient:g}) "
            f"absorbed with e-folding depth {t.ekman_depth_m:g} m, linear drag {t.drag_days:g} "
            f"days; heat restoring toward sst_clim + (t2m - t2m_clim) with e-folding depth "
            f"{t.heat_depth_m:g} m and time scale {t.heat_restoring_days:g} days; SSH diagnosed "
            "as steric height (alpha 2e-4/K, beta 7.6e-4/psu) plus the inverse barometer",
        ]
    lines += [
        "* coefficients (SI): " + ", ".join(f"{k} = {v:g}" for k, v in used.items())
        + " (the model's defaults differ: see neuralogcm_jax/physics/params.py)",
        f"* climate restoring at every substep: surface salinity toward Levitus "
        f"({t.salinity_restoring_days:g} days, e-folding depth {t.heat_depth_m:g} m); T and S at "
        f"every level toward Levitus ({t.interior_restoring_days:g} days); T >= -1.9 degC",
        "* initial state: Levitus annual T/S at rest, SSH 0",
        "",
        "## Forcing (channels u10, v10 m/s; t2m K; msl Pa)",
        "",
        "Synthesised on the truth grid and stored as whole-cell area means on the model grid:",
        "",
        "* COADS monthly climatology interpolated daily between mid-month values;",
        "* plus the FNOC monthly wind anomaly of the same calendar month (years 1982-1992; zero "
        "outside): real interannual winds;",
    ]
    if spec.noise is None:
        lines.append("* no synoptic noise.")
    else:
        n = spec.noise
        lines.append(
            f"* plus synoptic noise: smooth isotropic random field ({n.n_modes} waves per "
            f"variable, wavelengths {n.wavelength_km[0]:g}-{n.wavelength_km[1]:g} km), AR(1) in "
            f"time with decorrelation {n.decorrelation_days:g} days; standard deviations u10 "
            f"{n.amplitude[0]:g} m/s, v10 {n.amplitude[1]:g} m/s, t2m {n.amplitude[2]:g} K, "
            f"msl {n.amplitude[3]:g} Pa."
        )
    lines += [
        "",
        "## Layout",
        "",
        "`{train,valid,test}/YEAR.h5`: dataset `fields` float32 [T, C, H, W] (T = 365/366), "
        f"TRUE daily means (the average of the {t.n_substeps} states after each truth substep of "
        "the day, then coarse-grained), NaN on land; the forcing of day t (held over day t) in "
        "the forcing channels of day t. Stats from the training years: "
        "`climate_mean_s_t_ssh.npy` [366, n_ocean, H, W] (31-day circular window, 0 on land), "
        "`mean_s_t_ssh.npy`, `std_s_t_ssh.npy` [C] (ocean: anomalies about the climatology; "
        "forcing: raw values); `land_mask.h5` [C, H, W], 1 = ocean. `spec.json` holds the full "
        "specification and the timing.",
        "",
        "Sources of the world: neuralogcm_jax/data/embedded/SOURCES.md.",
        "",
    ]
    return "\n".join(lines)
