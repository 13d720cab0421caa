"""Twin datasets: a known "truth" ocean run on the embedded world, written in the real layout.

``neuralogcm make-data --preset demo|skill|twin --out DIR [--seed N] [--overwrite]`` (and the
library function `generate_dataset`) spins the truth up from the embedded climatology at rest,
then runs it through consecutive calendar years and writes, per year, ``DIR/{split}/YEAR.h5``
(``fields`` float32 ``[T, C, H, W]``, T = 365 or 366, channels in `neuralogcm_jax.layout` order,
NaN on land), the statistics files, ``land_mask.h5``, ``spec.json`` and a ``README.md`` that
states what the truth contains. `generate_self_twin` writes the same layout from the model's own
paper physics (coefficient-recovery tests).

The pieces, one module each (every name below is also importable from here):

* `neuralogcm_jax.data.twin_spec`: `DatasetSpec`, `TruthSpec`, `TRUTH_COEFFICIENTS`, `PRESETS`,
  `resolve_spec`, `spec_dict` (no JAX);
* `neuralogcm_jax.data.twin_truth`: the truth model ("twin v2": what it contains and how it
  differs from the model, the surface closure and climate restoring, true daily means, the
  coarse-graining onto the model grid): `make_truth`, `Truth`, `make_runner`;
* `neuralogcm_jax.data.twin_stats`: the normalisation statistics of the training years
  (`compute_stats`);
* this module: the generation itself, the files and the README.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm


from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.forcing import ForcingSynthesizer, climatological_daily, days_in_year
from neuralogcm_jax.data.twin_spec import (
    PRESETS,
    TRUTH_COEFFICIENTS,
    DatasetSpec,
    TruthSpec,
    resolve_spec,
    spec_dict,
)
from neuralogcm_jax.data.twin_stats import compute_stats, smooth_circular
from neuralogcm_jax.data.twin_truth import (
    Truth,
    climate_restoring,
    make_runner,
    make_truth,
    surface_closure,
)
from neuralogcm_jax.data.world import SURFACE_VARIABLES, load_world
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import FORCING_VARIABLES, ChannelLayout, OceanState
from neuralogcm_jax.physics import PhysicsConfig, make_physics

# The names these helpers had while everything lived in this module (tests, benchmarks).
_smooth_circular, _make_runner, _spec_dict = smooth_circular, make_runner, spec_dict


# ------------------------------------------------------------------------------ files
def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: target exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise DataError(
                f"{out}: target directory is not empty; pass --overwrite (overwrite=True) to "
                "replace it"
            )


@contextlib.contextmanager
def _staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling directory of `out` to write the dataset into: renamed into place when
    the block ends normally, removed on any error, so a failed run leaves `out` as it was. A
    non-empty `out` is refused unless `overwrite`."""
    _prepare_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_year(root: Path, split: str, year: int, fields: np.ndarray, wet_ch: np.ndarray,
                grid: Grid, source: str, seed: int) -> Path:
    """``root/split/YEAR.h5`` from `fields` ``[T, C, H, W]``, set to NaN on land first."""
    fields[:, ~wet_ch] = np.nan
    path = root / split / f"{year}.h5"
    h5write.write_year(path, fields, grid.lat, grid.lon, grid.depth,
                        attrs={"source": source, "seed": int(seed)})
    return path


def _write_statistics(root: Path, train_files: Sequence[tuple[int, Path]], layout: ChannelLayout,
                      grid: Grid) -> None:
    """The statistics of the training years (`compute_stats`) and ``land_mask.h5``."""
    mean, std, clim, harmonics = compute_stats(train_files, layout, grid.wet)
    h5write.write_stats(root, mean, std, clim, harmonics)
    h5write.write_land_mask(root, layout.wet_channels(grid.wet), grid.lat, grid.lon,
                            grid.sea_floor_m)


# ------------------------------------------------------------------------------ generation
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
    spec = resolve_spec(preset_or_spec)
    out = Path(out)
    with _staged(out, overwrite) as tmp:
        t_start = time.perf_counter()
        cpu_start = time.process_time()
        truth = make_truth(spec)
        world = truth.world
        g = truth.grid  # the model grid
        layout = ChannelLayout.with_levels(spec.n_levels, freshwater=spec.freshwater)
        run = make_runner(truth)
        synth = ForcingSynthesizer(world, seed, spec.noise, freshwater=spec.freshwater)
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
            path = _write_year(tmp, spec.split_of(year), year, fields, wet_ch, g,
                               "neuralogcm_jax twin v2", seed)
            files.append((year, path))
            del fields
        bar.close()
        timing["years_s"] = time.perf_counter() - t0

        _write_statistics(tmp, [(y, p) for y, p in files if y in spec.train_years], layout, g)
        timing["total_s"] = time.perf_counter() - t_start
        timing["cpu_s"] = time.process_time() - cpu_start
        timing["s_per_simulated_year"] = timing["years_s"] / len(spec.years) * 365.25 / (
            sum(days_in_year(y) for y in spec.years) / len(spec.years))
        timing["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        (tmp / "README.md").write_text(_readme(spec, seed, truth, timing))
        (tmp / "spec.json").write_text(json.dumps(
            spec_dict(spec) | {"seed": int(seed), "timing": timing}, indent=2))
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
    out = Path(out)
    with _staged(out, overwrite) as tmp:
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
        for i, year in enumerate(years):
            n = days_in_year(year)
            fields = np.empty((n, layout.n_channels) + g.shape, np.float32)
            clim = climatological_daily(world, year)
            for c, name in enumerate(FORCING_VARIABLES):
                fields[:, n_oc + c] = clim[:, SURFACE_VARIABLES.index(name)]
            for t in range(n):
                state = run(state)
                fields[t, :n_oc] = layout.from_state(jax.tree.map(np.asarray, state))
            if not np.isfinite(fields[:, :n_oc][:, wet_ch[:n_oc]]).all():
                raise DataError(f"self twin became non-finite in {year}")
            split = "train" if i == 0 else "valid"
            path = _write_year(tmp, split, year, fields, wet_ch, g, "neuralogcm_jax self twin", seed)
            files.append((year, split, path))
        _write_statistics(tmp, [(y, p) for y, sp, p in files if sp == "train"], layout, g)
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
    return out


# ------------------------------------------------------------------------------ README
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
            "vertical mixing with convective mixing (diagnosed every substep between "
            "neighbouring levels; the model's default diagnoses it once a day, penetrative), "
            "wind stress rho_air C_d |U10| U10 "
            f"(C_d = {t.drag_coefficient:g}) and the surface heat flux heat_restoring x "
            + ("(sst_clim + (t2m - t2m_clim) - T_top), the air temperature plus the COADS "
               "climatological SST - t2m offset of the day"
               if t.heat_target == "offset" else "(t2m - T_top)")
            + " from the forcing, linear bottom drag; neuralogcm_jax/physics/primitive.py)",
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
    if spec.freshwater:
        lines.append(
            "* freshwater channels e, tp (m of water a day, ECMWF's signs: e <= 0 evaporates): "
            "bulk evaporation rho_air C_E max(|U10|, 1 m/s) (q_sat(SST_clim) - 0.8 q_sat(t2m)) "
            "with C_E = 1.2e-3 from the day's forcing (noise included); precipitation a zonal "
            "profile (an ITCZ following the seasons between 0 and 12 N, storm tracks at 45 N/S) "
            "scaled so that the ocean's E - P integrates to zero each day; the truth's top level "
            "takes the virtual salt flux S_top (E - P) (freshwater_flux: e_minus_p; "
            "neuralogcm_jax/data/forcing.py `freshwater_daily`);")
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
        "forcing: raw values); `land_mask.h5`: `fields` [C, H, W], 1 = ocean, and "
        "`sea_floor_m` [H, W], the embedded world's ETOPO5 mean sea-floor depth under each cell "
        "(m; the truth's barotropic mode does not use it). `spec.json` holds the full "
        "specification and the timing.",
        "",
        "Sources of the world: neuralogcm_jax/data/embedded/SOURCES.md.",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "PRESETS",
    "TRUTH_COEFFICIENTS",
    "DatasetSpec",
    "OceanState",
    "Truth",
    "TruthSpec",
    "climate_restoring",
    "compute_stats",
    "generate_dataset",
    "generate_self_twin",
    "make_runner",
    "make_truth",
    "resolve_spec",
    "smooth_circular",
    "spec_dict",
    "surface_closure",
]
