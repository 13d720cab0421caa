"""Forecast skill of the pure physics of each mode on the demo twin's held-out (test) year.

From every 5th day of the test year (every 30th with ``--quick``) each physics variant is rolled
out 10 days, driven by the recorded forcing, and scored with the evaluation code of
`neuralogcm_jax.eval.evaluate` (`evaluate_forecaster`, `evaluate_reference`): the paper-convention
RMSE (per-channel RMSE in normalised anomaly units, averaged over the 17 ocean channels;
`eval/metrics.py`) at 1, 5 and 10 days, beside persistence and climatology. A variant is the
hybrid with its corrector switched off (`evaluate.pure_physics_model`), so it is exactly what the
hybrid's physics contributes. The notes give the 1-day RMSE per variable (mean over levels).

Variants: the seed's paper form (no pressure gradient, flux-form advection), the seed with the
advective forms only, balanced paper mode (the default: hydrostatic pressure gradient and advective
forms), balanced paper mode with smaller diffusivities, primitive mode.

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
    """(name, PhysicsConfig, initial SI coefficients, what it is)."""
    from neuralogcm_jax.physics import PhysicsConfig

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
        ("primitive", PhysicsConfig(mode="primitive"), {},
         "primitive mode with its default terms (free surface, wind stress, heat flux, mixing)"),
    ]


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


def run(quick: bool) -> list[dict]:
    from neuralogcm_jax.eval.evaluate import (
        evaluate_forecaster,
        evaluate_reference,
        initial_dates,
        load_split,
        pure_physics_model,
    )
    from neuralogcm_jax.model import ModelConfig, build_model

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
    for name, cfg, coeffs, what in variants():
        t0 = time.perf_counter()
        hybrid = build_model(ModelConfig(name="neuralogcm", physics=cfg,
                                         physics_coefficients=coeffs), data.grid, data.stats)
        model = pure_physics_model({name: hybrid}, data)
        r, _ = evaluate_forecaster(model, data, inits, max_lead, batch=8, desc=name)
        add(name, r, what, time.perf_counter() - t0)
    return rows


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row)
