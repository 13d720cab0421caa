"""A year of the real world in each physics mode (issue 15): 365 days at 1.5 deg x 23 levels of
the embedded world from its climatology at rest, each month under that month's climatological
forcing, stay bounded, keep their salt and report the drift of the volume-mean T after the
first three months against the bar of 0.1 degC a year. Slow: about 5 (paper) and 10 (primitive;
11 over the sea floor) minutes on 2 cores, one run per mode shared by its tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tqdm import tqdm

from neuralogcm_jax.physics import coefficient_specs, make_physics
from neuralogcm_jax.physics_demo import diagnostics

pytestmark = pytest.mark.slow

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Measured 2026-12-05 with a scratch run of the same years (daily volume means; month ends give
# the figures in the reasons below):
# * paper (the shipped configs' physics): -0.104 degC/yr after the first three months, -0.119
#   over the year, slowing (-0.038, -0.033, -0.025, -0.023 degC a quarter). Paper mode has no
#   vertical velocity and its advective form does not conserve a tracer where the flow diverges;
#   the flux form conserves it (2e-6 relative in 14 days) but made tracer where the flow
#   converged until the run failed (speeds above 3 m/s by day 14, NaN by day 30).
# * primitive (the defaults): +0.135 degC/yr, +0.074 over the year; restoring toward t2m plus
#   the SST - t2m offset instead, +0.186. The surface flux of the month-end states (months 4-12)
#   is +11.8 W/m^2 over the ocean after the freezing clamp (no sea ice) has returned the polar
#   winter's cooling, +5.2 before: the clamp is most of the miss (+0.08 of the +0.14 degC/yr),
#   the tropics' uptake, which the 643 m closed floor keeps, the rest (docs/design.md).
HEAT_DRIFT_MISSED = {
    "paper": "-0.105 degC/yr measured: the advective form does not conserve heat",
    "primitive": "+0.133 degC/yr measured (before the Rhie-Chow correction of the whole pressure "
                 "became the default; still above 0.1 with it, 2026-12-05; about +0.13 again "
                 "with convective_kappa 1 and the third-order correction): the freezing clamp "
                 "(no sea ice) returns the polar winter's heat loss and the 643 m closed floor "
                 "keeps the tropics' uptake",
    "primitive_sea_floor": "+0.128 degC/yr measured (2026-12-05, a scratch run of this loop; about "
                           "+0.13 with convective_kappa 1 and the third-order Rhie-Chow "
                           "correction): the passive layer down to the sea floor holds no heat, so "
                           "the levels keep the surface heat uptake as with the closed floor",
}


def _physics(mode, grid):
    """The shipped configs' paper physics (`configs/neuralogcm.yaml`: balanced, advective forms,
    held imbalance, day-mean output), or primitive mode's defaults (with the sea floor)."""
    from neuralogcm_jax.physics import PhysicsConfig
    from neuralogcm_jax.physics.primitive import PrimitiveTerms
    from neuralogcm_jax.train.config import CONFIG_DIR, load_config

    if mode == "paper":
        cfg = load_config(CONFIG_DIR / "neuralogcm.yaml").model.physics
    else:  # "primitive" or "primitive_sea_floor" (the barotropic mode over the ETOPO5 floor)
        cfg = PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(
            barotropic_depth="sea_floor" if mode.endswith("sea_floor") else "levels"))
    c = {k: jnp.asarray(s.default, jnp.float32) for k, s in coefficient_specs(cfg).items()}
    return make_physics(grid, cfg), c


@pytest.fixture(scope="module", params=["paper", "primitive", "primitive_sea_floor"])
def year(request):
    """Per month end of the year of `request.param`: the day, volume-mean T and S, the wet
    cells' T range, largest speed and |SSH|, whether every wet value is finite, and in primitive
    mode the surface heat flux (`_surface_heat_flux`)."""
    from neuralogcm_jax.data.world import load_world

    mode = request.param
    world = load_world(1.5, 23)
    grid = world.grid
    physics, c = _physics(mode, grid)
    state = jax.tree.map(jnp.asarray, world.initial_state(np.float32))
    run = jax.jit(lambda s, f, n: physics.integrate(c, s, f, n), static_argnums=2)
    wet, day, rows = grid.wet, 0, []
    for month in tqdm(range(12), desc=f"{mode} year", unit="month"):
        f = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), world.monthly_forcing(month))
        n = MONTH_DAYS[month]
        # Months of 30 and 31 days reuse one compilation per length.
        state = run(state, jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), f), n)
        day += n
        T, ssh = np.asarray(state.T), np.asarray(state.ssh)
        d = diagnostics(state, grid)
        rows.append({"day": day, "T_mean": d["mean_T_degC"], "S_mean": d["mean_S_psu"],
                     **_surface_heat_flux(mode, c, state, f, grid),
                     "T_min": float(T[wet].min()), "T_max": float(T[wet].max()),
                     "speed_max": d["max_speed_m_s"], "ssh_max": float(np.abs(ssh[wet[0]]).max()),
                     "finite": all(np.isfinite(np.asarray(x)[wet]).all()
                                   for x in (state.u, state.v, state.T, state.S))
                     and bool(np.isfinite(ssh[wet[0]]).all())})
        # Printed (pytest -s) so that a run records how close each month comes to the bounds.
        print(f"\n{mode} year day {day}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in rows[-1].items() if k not in ("day", "finite")))
    return mode, rows


def _surface_heat_flux(mode, c, state, forcing, grid) -> dict:
    """Primitive mode's surface heat flux ``heat_restoring (t2m - T_top)`` (W/m^2, ocean-area
    mean) of a month-end state under its month's forcing: as written (``flux``), and with the
    cooling of cells at their freezing point removed (``flux_eff``), which the freezing clamp
    returns (no sea-ice model), with the ocean fraction at the freezing point."""
    from neuralogcm_jax.constants import KELVIN_OFFSET
    from neuralogcm_jax.physics.primitive_terms import FREEZING_SLOPE_K_PSU

    if mode == "paper":
        return {}
    area = np.broadcast_to(grid.area[:, None], grid.shape) * grid.wet[0]
    top = np.asarray(state.T[0], np.float64)
    q = float(c["heat_restoring"]) * (np.asarray(forcing.t2m, np.float64) - KELVIN_OFFSET - top)
    frozen = top <= FREEZING_SLOPE_K_PSU * np.asarray(state.S[0], np.float64) + 1e-3
    mean = lambda x: float((x * area).sum() / area.sum())  # noqa: E731
    return {"flux": mean(q), "flux_eff": mean(np.where(frozen, np.maximum(q, 0.0), q)),
            "frozen": mean(frozen)}


def drift_after(rows: list[dict], key: str, first_day: int = 90) -> float:
    """Slope (per 365.25 days) of a least-squares line through the month-end values of `key`
    from `first_day` on (the issue's drift after the first three months)."""
    t, y = np.array([(r["day"], r[key]) for r in rows if r["day"] >= first_day], np.float64).T
    return float(np.polyfit(t, y, 1)[0] * 365.25)


def test_a_year_stays_bounded_and_keeps_its_salt(year):
    """Every month end finite, T in [-2.5, 35] degC, speeds below 3 m/s, |SSH| below 3 m; the
    volume-mean S drifts less than 0.02 psu a year (salt is closed: no freshwater flux)."""
    _, rows = year
    for r in rows:
        assert r["finite"], r
        assert -2.5 <= r["T_min"] and r["T_max"] <= 35.0, r
        assert r["speed_max"] < 3.0 and r["ssh_max"] < 3.0, r
    assert abs(drift_after(rows, "S_mean")) < 0.02


def test_a_year_drifts_less_than_0p1_degC_per_year(year, request):
    """Issue 15's bar, missed by both modes (strict xfail with the measured drift and why)."""
    mode, rows = year
    print(f"\n{mode} year: T drift {drift_after(rows, 'T_mean'):+.4f} degC/yr, S drift "
          f"{drift_after(rows, 'S_mean'):+.5f} psu/yr after the first three months")
    if "flux" in rows[0]:  # the surface heat flux of the month ends after the first three months
        late = [r for r in rows if r["day"] > 90]
        print(f"{mode} year: surface heat flux {np.mean([r['flux'] for r in late]):+.2f} W/m^2 "
              f"as written, {np.mean([r['flux_eff'] for r in late]):+.2f} W/m^2 with the freezing "
              f"clamp's return (month ends after day 90)")
    request.applymarker(pytest.mark.xfail(
        strict=True, reason=f"{HEAT_DRIFT_MISSED[mode]} (issue 15's bar: 0.1)"))
    assert abs(drift_after(rows, "T_mean")) < 0.1
