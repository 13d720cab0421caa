"""Twin datasets: a known "truth" ocean run on the embedded world, written in the real layout.

``neuralogcm make-data --preset demo|twin --out DIR [--seed N] [--overwrite]`` (and the library
function `generate_dataset`) spins the truth model up from the embedded climatology at rest, then
runs it day by day through consecutive calendar years and writes, per year, ``DIR/{split}/YEAR.h5``
(``fields`` float32 ``[T, C, H, W]``, T = 365 or 366, channels in `neuralogcm_jax.layout` order,
NaN on land), the statistics files, ``land_mask.h5`` and a ``README.md`` that states what the
truth contains.

The truth (`TruthSpec`) holds what the model's default physics (paper mode with the default
coefficients of `physics.params`) lacks, so a corrector has something real to learn:

* the primitive-equation physics (pressure gradients, free surface, vertical advection and
  mixing, wind stress, surface heat flux, bottom drag) when ``mode="primitive"``; in
  ``mode="paper"`` the paper physics plus `surface_closure` (wind-driven mixed-layer momentum,
  linear drag, mixed-layer heat restoring and a diagnosed SSH);
* coefficients different from the model's defaults (`TRUTH_COEFFICIENTS`);
* surface salinity restoring and a slow interior restoring of T and S toward the climatology
  (`climate_restoring`), which keeps eleven years from drifting away from the real ocean;
* daily forcing with real interannual winds and synoptic noise (`neuralogcm_jax.data.forcing`).

Time convention. The state at the end of day ``t`` is the truth step of the end of day ``t-1``
under the forcing of day ``t``; the stored ocean channels of day ``t`` are the daily mean,
approximated by the mean of the states at the start and end of the day; the forcing channels of
day ``t`` hold the forcing of day ``t``. A model stepping ``(x_t, f_{t+1}) -> x_{t+1}`` therefore
sees the forcing that drove the truth over that day.

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

import numpy as np

from neuralogcm_jax.constants import GRAVITY_M_S2, RHO0_KG_M3, RHO_AIR_KG_M3, SECONDS_PER_DAY
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
      mode: physics of the truth, ``"primitive"`` or ``"paper"`` (+ `surface_closure`).
      coefficients: truth physics coefficients (SI); only those the mode uses are passed.
      ekman_depth_m: e-folding depth (m) of the wind-stress acceleration (paper mode).
      drag_days: linear drag time scale (days) of the currents (paper mode).
      heat_depth_m: e-folding depth (m) of the mixed-layer heat restoring (paper mode).
      heat_restoring_days: time scale (days) of the surface heat restoring toward
        ``sst_clim + (t2m - t2m_clim)`` (paper mode).
      salinity_restoring_days: time scale (days) of surface salinity restoring toward the
        climatology (both modes; decays with depth like the heat restoring).
      interior_restoring_days: time scale (days) of the restoring of T and S at every level
        toward the climatology (both modes).
      drag_coefficient: wind-stress drag coefficient (dimensionless, paper mode).
      piece_s: interval (s) at which the paper-mode truth interleaves its surface closure and
        tracer correction with the physics; must divide a day. Default 3600 (well inside the
        inertial period, so the Ekman response and the correction follow the rotating flow;
        2 h already lets salinity drift by several psu in a year at 6 deg).
    """

    mode: str = "paper"
    coefficients: tuple[tuple[str, float], ...] = tuple(TRUTH_COEFFICIENTS.items())
    ekman_depth_m: float = 40.0
    drag_days: float = 4.0
    heat_depth_m: float = 30.0
    heat_restoring_days: float = 15.0
    salinity_restoring_days: float = 90.0
    interior_restoring_days: float = 730.0
    drag_coefficient: float = 1.3e-3
    piece_s: float = 3600.0

    def __post_init__(self):
        if self.mode not in ("paper", "primitive"):
            raise ConfigError(f"truth mode must be 'paper' or 'primitive', got {self.mode!r}")
        for f in dataclasses.fields(self):
            if f.name in ("mode", "coefficients"):
                continue
            if not float(getattr(self, f.name)) > 0:
                raise ConfigError(f"truth {f.name} must be > 0, got {getattr(self, f.name)}")
        n = SECONDS_PER_DAY / self.piece_s
        if abs(n - round(n)) > 1e-9:
            raise ConfigError(f"truth piece_s must divide a day (86400 s), got {self.piece_s}")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A twin dataset: grid, years per split, spin-up, truth and forcing noise.

    Attributes:
      resolution_deg: grid spacing (deg; a multiple of 1.5).
      n_levels: number of GLORYS levels (first n).
      train_years, valid_years, test_years: calendar years per split; together consecutive.
      spinup_days: days run before the first year (climatological forcing of the year before
        plus noise) so the currents exist and the state is near the truth's own climate.
      truth: the truth model.
      noise: synoptic forcing noise (None: none).
      chunk_days: days per compiled scan (memory vs. dispatch overhead).
    """

    resolution_deg: float = 6.0
    n_levels: int = 4
    train_years: tuple[int, ...] = (1983, 1984)
    valid_years: tuple[int, ...] = (1985,)
    test_years: tuple[int, ...] = (1986,)
    spinup_days: int = 60
    truth: TruthSpec = TruthSpec()
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

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(self.train_years) + tuple(self.valid_years) + tuple(self.test_years)

    def split_of(self, year: int) -> str:
        for name in ("train", "valid", "test"):
            if year in getattr(self, f"{name}_years"):
                return name
        raise ConfigError(f"year {year} is in no split")


PRESETS: dict[str, DatasetSpec] = {
    # Small enough to generate in a few minutes on a 2-core CPU and train on in minutes.
    "demo": DatasetSpec(
        resolution_deg=6.0,
        n_levels=4,
        train_years=(1983, 1984),
        valid_years=(1985,),
        test_years=(1986,),
        spinup_days=60,
    ),
    # The real resolution and levels, the eleven FNOC years (leap years 1984, 1988, 1992).
    "twin": DatasetSpec(
        resolution_deg=1.5,
        n_levels=23,
        train_years=tuple(range(1982, 1990)),
        valid_years=(1990, 1991),
        test_years=(1992,),
        spinup_days=365,
        chunk_days=31,
    ),
}


# ------------------------------------------------------------------------------ truth model
def _physics_for(world: World, truth: TruthSpec):
    from neuralogcm_jax.physics import PhysicsConfig, make_physics

    if truth.mode == "primitive":
        from neuralogcm_jax.physics.primitive import PrimitiveTerms

        config = PhysicsConfig(mode="primitive", primitive=PrimitiveTerms())
    else:
        # The paper-mode truth interleaves its surface closure with the physics every
        # `piece_s` seconds (see `make_truth_step`), so the physics steps that long. It runs the
        # seed's paper form (no pressure gradient, flux-form advection, corrected in `piece`),
        # pinned so that the dataset does not change with the model's physics defaults.
        config = PhysicsConfig.seed_paper(step_s=truth.piece_s)
    physics = make_physics(world.grid, config)
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


def make_truth_step(world: World, truth: TruthSpec):
    """``step(state, inputs) -> state``: one truth day (jittable), and the physics used.

    `inputs` = ``(forcing [4, H, W], sst_target [H, W])``, sst_target in degC."""
    import jax
    import jax.numpy as jnp

    physics, coeffs = _physics_for(world, truth)
    g = world.grid
    n_pieces = 1 if truth.mode == "primitive" else int(round(SECONDS_PER_DAY / truth.piece_s))
    dt_piece = SECONDS_PER_DAY / n_pieces
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

    def piece(state: OceanState, forcing: Forcing, sst_target) -> OceanState:
        """`dt_piece` seconds of the paper-mode truth: physics, then the surface closure, then
        the removal of the spurious tracer source of flux-form advection by a divergent flow.

        The paper physics advects T and S in flux form, ``-div(q U)``; with a divergent (Ekman)
        flow and no vertical velocity that holds a source ``-q div U`` which concentrates
        tracers where the flow converges without bound. The truth adds ``+q div U`` back with the
        current velocity, so its tracers move in advective form, ``-U . grad q`` (to the accuracy
        of using the velocity at the end of each piece)."""
        state = physics.day_step(coeffs, state, forcing)
        state = surface_closure(state, forcing, sst_target, depth, wet, truth, dt_piece)
        neg_div = physics.operators(dtype).advection(jnp.ones_like(state.T), state.u, state.v)
        factor = jnp.exp(-neg_div * jnp.asarray(dt_piece, dtype))
        return state._replace(T=jnp.where(wet, state.T * factor, 0),
                              S=jnp.where(wet, state.S * factor, 0))

    def step(state: OceanState, inputs) -> OceanState:
        f, sst_target = inputs
        forcing = Forcing(f[0], f[1], f[2], f[3])
        if truth.mode == "paper":
            state = jax.lax.fori_loop(
                0, n_pieces, lambda _, s: piece(s, forcing, sst_target), state
            )
        else:
            state = physics.day_step(coeffs, state, forcing)
        state = climate_restoring(state, T_clim, S_clim, depth, wet, truth, SECONDS_PER_DAY)
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

    return step, physics


def _make_runner(step):
    """A jitted ``run(state, inputs_chunk, valid [n]) -> (state, daily_means [n, ...])``.

    Days with ``valid == False`` leave the state unchanged: a short last chunk is padded to the
    fixed chunk length so the scan compiles once."""
    import jax
    import jax.numpy as jnp

    def run(state, inputs, valid):
        def body(s, xv):
            x, ok = xv
            s_new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), step(s, x), s)
            mean = jax.tree.map(lambda a, b: 0.5 * (a + b), s, s_new)
            return s_new, mean

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

    if isinstance(preset_or_spec, str):
        if preset_or_spec not in PRESETS:
            raise ConfigError(f"unknown preset {preset_or_spec!r}; known: {sorted(PRESETS)}")
        spec = PRESETS[preset_or_spec]
    else:
        spec = preset_or_spec
    out = Path(out)
    _prepare_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t_start = time.perf_counter()
    try:
        world = load_world(spec.resolution_deg, spec.n_levels)
        g = world.grid
        layout = ChannelLayout.with_levels(spec.n_levels)
        step, physics = make_truth_step(world, spec.truth)
        run = _make_runner(step)
        synth = ForcingSynthesizer(world, seed, spec.noise)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), world.initial_state())
        wet_ch = layout.wet_channels(g.wet)
        n_oc = layout.n_ocean
        total = spec.spinup_days + sum(days_in_year(y) for y in spec.years)
        bar = tqdm(total=total, desc="make-data", unit="day", disable=not progress,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} days "
                   "[{elapsed}<{remaining}, {rate_fmt}]")

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
                bar.update(b - a)
            return state

        # Spin-up: climatology of the year before the first one (no FNOC anomaly outside
        # 1982-1992) plus noise, repeated as needed.
        remaining = spec.spinup_days
        while remaining > 0:
            yf = synth.year(spec.years[0] - 1, n_days=min(remaining, 365))
            state = advance(state, yf, yf.forcing.shape[0])
            remaining -= yf.forcing.shape[0]
        # A NaN truth means an unstable configuration: fail before writing anything bad.
        if not np.isfinite(np.asarray(state.T)[g.wet]).all():
            raise DataError(f"truth became non-finite during spin-up ({spec.truth.mode} mode)")

        files = []
        for year in spec.years:
            yf = synth.year(year)
            n = yf.forcing.shape[0]
            fields = np.empty((n, layout.n_channels) + g.shape, dtype=np.float32)
            fields[:, n_oc:] = yf.forcing
            state = advance(state, yf, n, fields)
            fields[:, ~wet_ch] = np.nan
            path = tmp / spec.split_of(year) / f"{year}.h5"
            h5format.write_year(path, fields, g.lat, g.lon, g.depth,
                                attrs={"source": "neuralogcm_jax twin", "seed": int(seed)})
            files.append((year, path))
            del fields
        bar.close()

        mean, std, clim, harmonics = compute_stats(
            [(y, p) for y, p in files if y in spec.train_years], layout, g.wet
        )
        h5format.write_stats(tmp, mean, std, clim, harmonics)
        h5format.write_land_mask(tmp, wet_ch, g.lat, g.lon)
        elapsed = time.perf_counter() - t_start
        (tmp / "README.md").write_text(_readme(spec, seed, physics, world, elapsed))
        (tmp / "spec.json").write_text(json.dumps(_spec_dict(spec) | {"seed": int(seed)}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readme(spec: DatasetSpec, seed: int, physics, world: World, elapsed_s: float) -> str:
    t = spec.truth
    coeffs = dict(t.coefficients)
    used = {k: coeffs[k] for k in physics.specs}
    g = world.grid
    lines = [
        "# Twin dataset (neuralogcm_jax make-data)",
        "",
        "A synthetic ocean in the NeuralOGCM data layout: known truth, real geography.",
        "",
        f"* grid: {g.describe()}, {spec.resolution_deg} deg, levels (m) "
        f"{', '.join(f'{d:g}' for d in g.depth)}",
        f"* splits: train {list(spec.train_years)}, valid {list(spec.valid_years)}, "
        f"test {list(spec.test_years)}; spin-up {spec.spinup_days} days before "
        f"{spec.years[0]}",
        f"* seed: {seed}; generated in {elapsed_s:.1f} s",
        "",
        "## Truth",
        "",
        f"* physics mode: **{t.mode}** ({physics.n_substeps} substep(s) of "
        f"{physics.dt_substep_s:.0f} s per physics call, "
        + (f"{int(round(SECONDS_PER_DAY / t.piece_s))} calls of {t.piece_s:g} s per day)"
           if t.mode == "paper" else "one call per day)"),
        "* coefficients (SI): " + ", ".join(f"{k} = {v:g}" for k, v in used.items())
        + " (the model's defaults differ: see neuralogcm_jax/physics/params.py)",
    ]
    if t.mode == "paper":
        lines += [
            f"* surface closure (not in the model's physics): wind stress rho_air C_d |U10| U10 "
            f"(C_d = {t.drag_coefficient:g}) absorbed with e-folding depth {t.ekman_depth_m:g} m, "
            f"linear drag {t.drag_days:g} days; heat restoring toward sst_clim + (t2m - "
            f"t2m_clim) with e-folding depth {t.heat_depth_m:g} m and time scale "
            f"{t.heat_restoring_days:g} days; SSH diagnosed as steric height (alpha 2e-4/K, "
            "beta 7.6e-4/psu) plus the inverse barometer",
        ]
    lines += [
        f"* climate restoring: surface salinity toward Levitus ({t.salinity_restoring_days:g} "
        f"days, e-folding depth {t.heat_depth_m:g} m); T and S at every level toward Levitus "
        f"({t.interior_restoring_days:g} days); T >= -1.9 degC",
        "* initial state: Levitus annual T/S at rest, SSH 0",
        "",
        "## Forcing (channels u10, v10 m/s; t2m K; msl Pa)",
        "",
        "* COADS monthly climatology interpolated daily between mid-month values;",
        "* plus the FNOC monthly wind anomaly of the same calendar month (years 1982-1992; zero "
        "outside);",
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
        "daily means (mean of the states at the start and end of the day), NaN on land; "
        "forcing of day t in the forcing channels of day t. Stats from the training years: "
        "`climate_mean_s_t_ssh.npy` [366, n_ocean, H, W] (31-day circular window, 0 on land), "
        "`mean_s_t_ssh.npy`, `std_s_t_ssh.npy` [C] (ocean: anomalies about the climatology; "
        "forcing: raw values); `land_mask.h5` [C, H, W], 1 = ocean. `spec.json` holds the full "
        "specification.",
        "",
        "Sources of the world: neuralogcm_jax/data/embedded/SOURCES.md.",
        "",
    ]
    return "\n".join(lines)
