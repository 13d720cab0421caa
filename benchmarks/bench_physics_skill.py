"""Forecast skill of the pure physics of each mode on the demo twin's held-out (test) year.

From every 5th day of the test year (every 30th with ``--quick``) each physics variant is rolled
out 10 days, driven by the recorded forcing, and scored with the evaluation code of
`neuralogcm_jax.eval.evaluate` (`evaluate_forecaster`, `evaluate_reference`): the paper-convention
RMSE (per-channel RMSE in normalised anomaly units, averaged over the 17 ocean channels;
`eval/metrics.py`) at 1, 5 and 10 days, beside persistence and climatology. A variant is the
hybrid with its corrector switched off (`evaluate.pure_physics_model`), so it is exactly what the
hybrid's physics contributes. The notes give the 1-day RMSE per variable (mean over levels).

Variants: the seed's paper form (no pressure gradient, flux-form advection), the seed with the
advective forms only, balanced paper mode (the code's default: hydrostatic pressure gradient and
advective forms), balanced paper mode with smaller diffusivities, balanced paper mode holding 90 %
of the start state's Coriolis-pressure residual over the day (``imbalance: held``, the shipped
configs'), the held paper mode with the day-mean output (``output: day_mean``), primitive mode,
primitive mode whose surface heat flux restores toward t2m plus the SST - t2m offset fitted
to the training years (``model.heat_offset_harmonics: 2``) instead of toward t2m itself, and
primitive mode with each of its numerical options: centred vertical advection and the baroclinic
face correction.

Two references say how much 1-day skill a surface physics could add to persistence at all:
`wind_response` (statistical: each upper level's velocity change regressed on the day's change of
wind stress, fitted on the training years) and `slab_forecast` (physical: a wind-driven slab over
levels that keep their velocity, with and without the previous day's wind; its depth and friction
chosen on the validation year).

The demo twin is generated (``make-data --preset demo``, ~30 s) into
``$NEURALOGCM_BENCH_DEMO`` (default: ``demo-twin`` in the system temporary directory) unless it is
there already.

Run alone: ``python -m benchmarks.run physics_skill`` (``--quick``: fewer initial dates).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

LEADS = (1, 5, 10)


def _demo_root() -> Path:
    from neuralogcm_jax.data.twin import generate_dataset

    root = Path(os.environ.get("NEURALOGCM_BENCH_DEMO",
                               Path(tempfile.gettempdir()) / "demo-twin"))
    if not (root / "test").is_dir():
        generate_dataset(root, "demo", seed=0, progress=False)
    return root


def variants():
    """(name, PhysicsConfig, initial SI coefficients, what it is[, other ModelConfig fields])."""
    from neuralogcm_jax.physics import PhysicsConfig
    from neuralogcm_jax.physics.primitive import PrimitiveTerms

    return [
        ("paper_seed", PhysicsConfig.seed_paper(), {},
         "the seed's paper form: no pressure gradient, flux-form momentum and tracers"),
        ("paper_seed_advective", PhysicsConfig(pressure_gradient="none"), {},
         "the seed plus the advective forms (no pressure gradient)"),
        ("paper_balanced", PhysicsConfig(), {},
         "balanced paper mode, the default: hydrostatic pressure gradient (TEOS-10) + advective "
         "forms"),
        ("paper_balanced_small_nu", PhysicsConfig(), {"nu_m": 1e4, "nu_t": 1e2},
         "balanced paper mode with nu_m = 1e4, nu_t = 1e2 m^2/s (defaults 5e4, 1e3)"),
        ("paper_held", PhysicsConfig(imbalance="held"), {},
         "balanced paper mode holding the start state's Coriolis-pressure residual (imbalance: "
         "held, imbalance_release 0.1; the shipped configs' physics)"),
        ("paper_held_day_mean", PhysicsConfig(imbalance="held", output="day_mean"), {},
         "paper_held returning the mean of its substep states over the day (output: day_mean), "
         "the quantity the daily-mean targets store"),
        ("primitive", PhysicsConfig(mode="primitive"), {},
         "primitive mode with its default terms (free surface, wind stress, heat flux, mixing)"),
        ("primitive_heat_offset", PhysicsConfig(mode="primitive"), {},
         "primitive mode whose heat flux restores toward t2m plus the SST - t2m offset fitted to "
         "the training years (model.heat_offset_harmonics: 2)", {"heat_offset_harmonics": 2}),
        ("primitive_centred", PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(
            vertical_advection_scheme="centred")), {},
         "primitive mode with centred (second-order) instead of upwind vertical advection"),
        ("primitive_face_corrected", PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(
            baroclinic_face_correction=0.5)), {},
         "primitive mode whose layer transports see the baroclinic pressure gradient's "
         "checkerboard (baroclinic_face_correction 0.5)"),
        ("primitive_sea_floor", PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(
            barotropic_depth="sea_floor")), {},
         "primitive mode whose barotropic mode sees the embedded world's ETOPO5 sea floor "
         "(barotropic_depth: sea_floor; the twin's truth has the levels' 643 m)"),
    ]


def _with_world_sea_floor(grid):
    """`grid` with its dataset's sea floor, or the embedded world's at its resolution (a demo
    twin generated before the datasets carried one): the twin's grid is the world's,
    coarse-grained."""
    from neuralogcm_jax.data.world import load_world

    if grid.sea_floor_m is not None:
        return grid

    world = load_world(float(abs(grid.lat[1] - grid.lat[0])), grid.n_levels).grid
    depth = world.sea_floor_m
    if np.allclose(world.lat, grid.lat[::-1]):
        depth = depth[::-1]
    elif not np.allclose(world.lat, grid.lat):
        raise ValueError("the twin's grid is not the embedded world's")
    return grid.with_sea_floor(depth)


def _per_variable(r, layout, lead_idx=0) -> str:
    from neuralogcm_jax.eval.evaluate import variable_rows

    per = {}
    for v, _k, _d, c in variable_rows(layout):
        per.setdefault(v, []).append(r["rmse_normalised"][lead_idx, c])
    return ", ".join(f"{v} {np.mean(x):.3f}" for v, x in per.items())


def balance_rows(data, inits, depths_idx=(10, 16, 22), min_lat_deg=15.0) -> list[dict]:
    """How far the truth's currents are from the balanced paper physics' own geostrophic balance.

    For the initial dates `inits`, the velocity ``U_g = k x G / f`` of the pressure-gradient
    acceleration ``G`` that balanced paper mode computes from the state's own T, S and SSH
    (`equations.pressure_gradient_acceleration`) is compared with the truth's ``U`` poleward of
    `min_lat_deg`: ``|U - U_g| / |U|`` (root-mean-square over cells and dates), in interior cells
    (all four neighbours wet) and coastal cells, at the levels `depths_idx`, and in the top
    level. The part ``U - U_g`` is what the physics turns inertially (by ``f * 86400 s`` a day)."""
    import jax.numpy as jnp

    from neuralogcm_jax.physics import PhysicsConfig, make_physics
    from neuralogcm_jax.physics.eos import make_eos
    from neuralogcm_jax.physics.equations import pressure_gradient_acceleration

    grid, stats, lay = data.grid, data.stats, data.stats.layout
    ops = make_physics(grid, PhysicsConfig()).operators(jnp.float32)
    f = np.asarray(ops.coriolis)
    wet = np.asarray(ops.wet)
    north = np.pad(wet[:, 1:], ((0, 0), (0, 1), (0, 0)))
    south = np.pad(wet[:, :-1], ((0, 0), (1, 0), (0, 0)))
    nb = np.roll(wet, 1, -1) * np.roll(wet, -1, -1) * north * south
    interior = wet * nb
    far = (np.abs(np.asarray(grid.lat)) > min_lat_deg)[:, None]
    eos = make_eos("teos10")
    sums = {}
    levels = (0,) + tuple(k for k in depths_idx if k < grid.n_levels)
    for t in inits:
        x = np.asarray(stats.anomaly_to_physical(data.state[t], data.doy[t]))
        st = lay.to_state(x)  # land is 0
        g = np.asarray(pressure_gradient_acceleration(
            ops, jnp.asarray(st.T, jnp.float32), jnp.asarray(st.S, jnp.float32),
            jnp.asarray(st.ssh, jnp.float32), grid.depth, eos))
        ug, vg = g[1] / f, -g[0] / f
        u, v = np.asarray(st.u), np.asarray(st.v)
        for where, m in (("interior", interior), ("coast", wet - interior)):
            for k in levels:
                sel = (m[k] > 0) & far
                a = sums.setdefault((where, k), np.zeros(2))
                a += [np.sum(((u[k] - ug[k]) ** 2 + (v[k] - vg[k]) ** 2)[sel]),
                      np.sum((u[k] ** 2 + v[k] ** 2)[sel])]
    rows = []
    for (where, k), (num, den) in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rows.append({"name": f"imbalance_{where}_{lay.depths_m[k]:g}m",
                     "value": float(np.sqrt(num / den)), "unit": "ratio",
                     "notes": (f"rms(U - Ug) / rms(U): truth currents against balanced paper mode's geostrophic velocity, "
                               f"{where} cells poleward of {min_lat_deg:g} deg, {len(inits)} dates")})
    return rows


def _stress(stats, forcing) -> np.ndarray:
    """Wind stress ``tau_x + i tau_y`` (N/m^2, complex ``[..., H, W]``) of normalised forcing
    ``[..., 4, H, W]``: `primitive_terms.wind_stress` of the stored 10 m wind."""
    import jax.numpy as jnp

    from neuralogcm_jax.physics.primitive_terms import wind_stress

    phys = np.asarray(stats.denormalize_forcing(forcing), np.float64)
    tx, ty = wind_stress(jnp.asarray(phys[..., 0, :, :]), jnp.asarray(phys[..., 1, :, :]))
    return np.asarray(tx, np.float64) + 1j * np.asarray(ty, np.float64)


def _coriolis(grid) -> np.ndarray:
    """``[H, 1]`` Coriolis parameter (1/s)."""
    return np.asarray(grid.coriolis, np.float64)[:, None]


def wind_response(train, max_level: int = 12, eq_lat_deg: float = 10.0):
    """A statistical reference, not a physics: each level's day-to-day velocity change as a local,
    linear response to the day's change of wind stress, fitted on the training years.

    Poleward of `eq_lat_deg` the regressor is the change of the Ekman transport
    ``M = tau x k / (rho0 f)`` (m^2/s) and the fit ``dU = (a + b k x) dM`` (``1/a`` is the depth of
    a slab carrying all of it); within `eq_lat_deg` of the equator, where ``f`` vanishes, ``dU``
    is a general 2 x 2 matrix times ``d tau`` (``86400 / (rho0 A_xx)`` is the depth of a slab
    accelerated downwind for a day). Stress: `primitive_terms.wind_stress` of the stored 10 m wind.
    Only the top `max_level` levels are fitted and moved. Returns
    ``predict(state0, forcing0, forcing1)`` (normalised anomalies and forcing) and, per level, the
    fitted depths and explained variances."""
    from neuralogcm_jax.constants import RHO0_KG_M3, SECONDS_PER_DAY

    stats, lay = train.stats, train.stats.layout
    n = lay.n_ocean
    f = _coriolis(train.grid)
    eq = (np.abs(np.asarray(train.grid.lat)) <= eq_lat_deg)[:, None]
    inv = np.where(eq, 0.0, 1.0 / (RHO0_KG_M3 * np.where(eq, 1.0, f)))
    std = stats.std[:n].astype(np.float64)
    levels = range(min(max_level, lay.n_levels))
    cu = [lay.channel("U", k) for k in levels]
    cv = [lay.channel("V", k) for k in levels]

    def stress(forcing):
        tau = _stress(stats, forcing)
        return tau.real, tau.imag

    tx, ty = stress(train.forcing)
    dtx, dty = tx[1:] - tx[:-1], ty[1:] - ty[:-1]
    dmu, dmv = dty * inv, -dtx * inv
    coef, info = [], {}
    for k, (iu, iv) in enumerate(zip(cu, cv)):
        du = (train.state[1:, iu] - train.state[:-1, iu]) * std[iu]
        dv = (train.state[1:, iv] - train.state[:-1, iv]) * std[iv]
        wet = np.broadcast_to(stats.wet[iu] > 0, du.shape)
        m = wet & ~eq
        a = np.stack([np.concatenate([dmu[m], dmv[m]]), np.concatenate([-dmv[m], dmu[m]])], 1)
        y = np.concatenate([du[m], dv[m]])
        ab = np.linalg.lstsq(a, y, rcond=None)[0]
        me = wet & eq
        x = np.stack([dtx[me], dty[me]], 1)
        au = np.linalg.lstsq(x, du[me], rcond=None)[0]
        av = np.linalg.lstsq(x, dv[me], rcond=None)[0]
        coef.append((ab, au, av))
        info[k] = {
            "ekman_explained": 1 - np.var(y - a @ ab) / np.var(y),
            "ekman_depth_m": 1 / ab[0] if ab[0] > 0 else np.inf,
            "equator_explained": 1 - (np.var(du[me] - x @ au) + np.var(dv[me] - x @ av))
            / (np.var(du[me]) + np.var(dv[me])),
            "equator_depth_m": SECONDS_PER_DAY / (RHO0_KG_M3 * au[0]) if au[0] > 0 else np.inf,
        }

    def predict(state0, forcing0, forcing1):
        t0x, t0y = stress(forcing0)
        t1x, t1y = stress(forcing1)
        ex, ey = t1x - t0x, t1y - t0y
        mu, mv = ey * inv, -ex * inv
        out = np.array(state0, np.float64)
        for (ab, au, av), iu, iv in zip(coef, cu, cv):
            du = np.where(eq, au[0] * ex + au[1] * ey, ab[0] * mu - ab[1] * mv)
            dv = np.where(eq, av[0] * ex + av[1] * ey, ab[1] * mu + ab[0] * mv)
            out[:, iu] += np.where(stats.wet[iu] > 0, du, 0.0) / std[iu]  # land stays 0
            out[:, iv] += np.where(stats.wet[iv] > 0, dv, 0.0) / std[iv]
        return out.astype(np.float32)

    return predict, info


def slab_forecast(data, depth_m: float, rate_per_day: float, wind_change: bool):
    """A physical reference: below a wind-driven slab of depth `depth_m`, every level keeps its
    velocity (its daily-mean imbalance is taken as balanced by what the grid does not resolve,
    instead of being turned inertially); the levels above it, relative to the first level below,
    obey ``dW/dt = -(r + i f) W + tau / (rho0 h)`` (complex ``W = u + i v``; Pollard-Millard slab,
    friction rate ``r``) over the day. With `wind_change` the initial slab is taken to be in
    equilibrium with the previous day's stress and the forecast moves it by the change of the
    equilibrium; without it (what a step that sees only the new day's forcing can do) the slab
    starts from the state and is driven by the new stress. T, S and SSH are persisted. Returns
    ``predict(inits)`` (normalised anomalies of the days ``inits + 1``)."""
    from neuralogcm_jax.constants import RHO0_KG_M3, SECONDS_PER_DAY

    stats, lay = data.stats, data.stats.layout
    std = stats.std[: lay.n_ocean].astype(np.float64)
    lam = rate_per_day / SECONDS_PER_DAY + 1j * _coriolis(data.grid)
    force = _stress(stats, data.forcing) / (RHO0_KG_M3 * depth_m)
    below = int(np.searchsorted(np.asarray(lay.depths_m), depth_m))
    decay = np.exp(-lam * SECONDS_PER_DAY)

    def velocity(t, k):
        cu, cv = lay.channel("U", k), lay.channel("V", k)
        return data.state[t, cu] * std[cu] + 1j * data.state[t, cv] * std[cv]

    def predict(inits):
        out = np.array(data.state[inits], np.float64)
        base = velocity(inits, below)
        new = force[inits + 1] / lam
        for k in range(min(below, lay.n_levels)):
            w0 = velocity(inits, k) - base
            if wind_change:
                w = w0 + (new - force[inits] / lam) * (1 - decay)
            else:
                w = new + decay * (w0 - new)
            cu, cv = lay.channel("U", k), lay.channel("V", k)
            out[:, cu] = np.where(stats.wet[cu] > 0, (base + w).real, 0.0) / std[cu]
            out[:, cv] = np.where(stats.wet[cv] > 0, (base + w).imag, 0.0) / std[cv]
        return out.astype(np.float32)

    return predict


def slab_rows(valid, test, inits, where, layout) -> list[dict]:
    """`slab_forecast` with its depth and rate chosen on every third day of the validation year,
    scored on the test dates `inits`, with and without the previous day's wind."""
    from neuralogcm_jax.eval.evaluate import initial_dates, score_predictions

    every_day = initial_dates(valid.n_days, 1, 3)
    rows = []
    for change in (False, True):
        best = None
        for h in (10.0, 20.0, 30.0, 45.0):
            for r in (1.0, 2.0, 4.0):
                p = slab_forecast(valid, h, r, change)
                score = score_predictions(valid, every_day, lambda k: p(every_day), 1)[0]
                if best is None or score["paper_rmse"][0] < best[0]:
                    best = (score["paper_rmse"][0], h, r)
        _, h, r = best
        p = slab_forecast(test, h, r, change)
        res = score_predictions(test, inits, lambda k: p(inits), 1)[0]
        what = ("the previous and the new day's wind (slab moved by the change of its "
                "equilibrium)" if change else "the new day's wind only (the model step's forcing)")
        rows.append({
            "name": f"slab_{'wind_change' if change else 'new_wind'}_1d",
            "value": float(res["paper_rmse"][0]), "unit": "paper RMSE",
            "notes": (f"physical reference (slab_forecast): levels below a {h:g} m wind-driven "
                      f"slab (friction {r:g}/day; both chosen on the validation year) keep their "
                      f"velocity, the slab sees {what}; {where}; 1-day per variable: "
                      f"{_per_variable(res, layout)}")})
    return rows


def score_pure_physics(name, model_cfg, grid, data, inits, max_lead, prepare=None):
    """The evaluation (`evaluate_forecaster`) of the pure physics of the hybrid `model_cfg`
    builds on `grid` with `data`'s statistics, from `inits`; `prepare(hybrid)` may set fitted
    fields first."""
    from neuralogcm_jax.eval.evaluate import evaluate_forecaster, pure_physics_model
    from neuralogcm_jax.model import build_model

    hybrid = build_model(model_cfg, grid, data.stats)
    if prepare is not None:
        prepare(hybrid)
    model = pure_physics_model({name: hybrid}, data)
    return evaluate_forecaster(model, data, inits, max_lead, batch=8, desc=name)[0]


def run(quick: bool) -> list[dict]:
    from neuralogcm_jax.eval.evaluate import (
        evaluate_reference,
        initial_dates,
        load_split,
        score_predictions,
    )
    import jax.numpy as jnp

    from neuralogcm_jax.data import h5format, persistence
    from neuralogcm_jax.model import ModelConfig
    from neuralogcm_jax.train.fitted import FIT_BLOCK_DAYS, fit_heat_offset

    root = _demo_root()
    data = load_split(root, "test")
    max_lead = max(LEADS)
    inits = initial_dates(data.n_days, max_lead, 30 if quick else 5)
    layout = data.stats.layout
    where = (f"demo twin test year ({data.grid.describe()}), {len(inits)} initial dates every "
             f"{30 if quick else 5} days")
    rows = []

    def add(name, r, what, seconds=None):
        for lead in LEADS:
            notes = f"{what}; {where}" if lead == 1 else ""
            if lead == 1:
                notes += f"; 1-day per variable: {_per_variable(r, layout)}"
                if seconds is not None:
                    notes += f"; {seconds:.0f} s"
            rows.append({"name": f"{name}_{lead}d", "value": float(r["paper_rmse"][lead - 1]),
                         "unit": "paper RMSE", "notes": notes})

    rows += balance_rows(data, inits)
    for ref in ("persistence", "climatology"):
        r, _ = evaluate_reference(ref, data, inits, max_lead)
        add(ref, r, f"reference forecast: {ref}")
    predict, info = wind_response(load_split(root, "train"))
    r, _ = score_predictions(
        data, inits,
        lambda k: predict(data.state[inits], data.forcing[inits], data.forcing[inits + 1]), 1)
    fits = "; ".join(
        f"{layout.depths_m[k]:g} m: Ekman slab {v['ekman_depth_m']:.0f} m explains "
        f"{v['ekman_explained']:.2f}, equatorial slab {v['equator_depth_m']:.0f} m explains "
        f"{v['equator_explained']:.2f}" for k, v in info.items() if k in (0, 4, 7))
    rows.append({
        "name": "wind_response_1d", "value": float(r["paper_rmse"][0]), "unit": "paper RMSE",
        "notes": (f"statistical reference (wind_response): persistence plus each of the top "
                  f"{len(info)} levels' velocity change as a local linear response to the day's "
                  f"change of wind stress, fitted on the training years; {where}; 1-day per "
                  f"variable: {_per_variable(r, layout)}; fits: {fits}")})
    rows += slab_rows(load_split(root, "valid"), data, inits, where, layout)
    for name, cfg, coeffs, what, *extra in variants():
        t0 = time.perf_counter()
        grid = data.grid
        if getattr(cfg.primitive, "barotropic_depth", None) == "sea_floor":
            grid = _with_world_sea_floor(grid)
        def fit_offset(hybrid):
            if hasattr(hybrid, "heat_offset"):  # fitted to the training years, as `train` does
                train = h5format.open_dataset(root, splits=["train"])
                blocks = persistence.day_blocks(train, "train", data.stats, FIT_BLOCK_DAYS, 0,
                                                forcing=True)
                hybrid.heat_offset[...] = jnp.asarray(fit_heat_offset(hybrid, blocks))

        model_cfg = ModelConfig(name="neuralogcm", physics=cfg, physics_coefficients=coeffs,
                                **(extra or [{}])[0])
        r = score_pure_physics(name, model_cfg, grid, data, inits, max_lead, fit_offset)
        add(name, r, what, time.perf_counter() - t0)
    return rows


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row)
