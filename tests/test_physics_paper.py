"""Claims about the paper-mode physics core: exact inertial oscillations, a closed basin that keeps
its heat and salt, land that never changes, gradients that match finite differences, learned
coefficients that cannot break stability, named errors on bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neuralogcm_jax.errors import ConfigError, StateError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics import PhysicsConfig, check_state, make_physics
from neuralogcm_jax.testing import coastline_wet_mask, smooth_state

COEFFS = {"nu_m": 5e4, "nu_t": 1e3}


@functools.lru_cache(maxsize=None)
def _coast_mask(res):
    return coastline_wet_mask(Grid.regular(res, depth=[10.0]))


def _basin(res=3.0, depth=(10.0, 100.0)):
    """A global grid with realistic coastlines (global_land_mask), closed everywhere."""
    return Grid.regular(res, depth=list(depth)).with_wet(_coast_mask(res))


def _f64(state):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), state)


def _content(x, grid):
    """Volume integral over ocean cells (units of x times m^3)."""
    return float((np.asarray(x, np.float64) * grid.cell_volume * grid.wet).sum())


# ----------------------------------------------------------------------------- Coriolis
def test_inertial_oscillation_has_period_2pi_over_f_and_constant_amplitude():
    """A uniform current on an f-plane turns at f: period 2 pi / f within 0.5 %, speed constant
    within 1 % over 10 days (forward Euler would grow by sqrt(1 + (f dt)^2) every step)."""
    f0 = 1.0e-4
    g = Grid.cartesian(8, 8, 50e3, 50e3, depth=[20.0], f0=f0, periodic_x=True)
    physics = make_physics(g, PhysicsConfig(step_s=3600.0, max_substep_s=1800.0))
    u0 = 0.3
    shape = (1, 8, 8)
    st = OceanState(jnp.full(shape, u0), jnp.zeros(shape), jnp.full(shape, 10.0),
                    jnp.full(shape, 35.0), jnp.zeros((8, 8)))
    hours = 240
    _, traj = jax.jit(physics.integrate, static_argnums=(3, 4))(COEFFS, _f64(st), None, hours, True)
    u = np.asarray(traj.u[:, 0, 4, 4])
    v = np.asarray(traj.v[:, 0, 4, 4])
    t = 3600.0 * np.arange(1, hours + 1)
    # du/dt = f v, dv/dt = -f u: the current turns clockwise, angle f t
    angle = np.unwrap(np.arctan2(-v, u))
    rate = np.polyfit(t, angle, 1)[0]
    period = 2 * np.pi / rate
    assert period == pytest.approx(2 * np.pi / f0, rel=0.005)
    speed = np.hypot(u, v)
    assert np.all(np.abs(speed / u0 - 1) < 0.01)


# ----------------------------------------------------------------------------- closed basin
def test_closed_basin_keeps_its_heat_and_salt_for_30_days_and_land_is_untouched():
    """Realistic coastlines (3 deg), 30 days of flux-form advection + diffusion (+ Coriolis):
    total T and S content conserved to 1e-12 relative (float64); land cells (NaN here) come back
    unchanged.

    Without the pressure gradient: flux-form tracers pile up where this divergent flow converges
    (T from 33 to 45 degC in 27 days), and with ``pressure_gradient="hydrostatic"`` that density
    drives currents beyond the CFL bound (4.6 m/s at 13.5 N by day 27). The default advective
    form does not conserve exactly; balanced mode with flux-form tracers conserves over 10 days:
    `tests/test_balanced.py`."""
    g = _basin()
    physics = make_physics(g, PhysicsConfig(tracer_advection="flux", pressure_gradient="none"))
    st = _f64(smooth_state(g, max_speed_m_s=1.5))
    st = st._replace(T=jnp.where(g.wet, st.T, jnp.nan), S=jnp.where(g.wet, st.S, jnp.nan),
                     u=jnp.where(g.wet, st.u, jnp.nan))
    out = jax.jit(physics.integrate, static_argnums=(3,))(COEFFS, st, None, 30)
    for name in ("T", "S"):
        before = _content(np.nan_to_num(getattr(st, name)), g)
        after = _content(np.nan_to_num(getattr(out, name)), g)
        assert abs(after / before - 1) < 1e-12, name  # telescoping fluxes: round-off only
    for name in ("u", "v", "T", "S"):
        a, b = np.asarray(getattr(st, name)), np.asarray(getattr(out, name))
        np.testing.assert_array_equal(b[~g.wet], a[~g.wet])
        assert np.all(np.isfinite(b[g.wet]))
    # the flow did something: the state changed in the ocean
    assert np.abs(np.asarray(out.T - st.T)[g.wet]).max() > 1e-3


def test_rolling_the_world_by_k_longitudes_rolls_the_result():
    g = _basin()
    k = 11
    gr = g.with_wet(np.roll(g.wet, k, axis=-1))
    st = _f64(smooth_state(g))
    roll = lambda s: jax.tree.map(lambda x: jnp.roll(x, k, axis=-1), s)  # noqa: E731
    a = make_physics(g).integrate(COEFFS, st, None, 2)
    b = make_physics(gr).integrate(COEFFS, roll(st), None, 2)
    for x, y in zip(roll(a), b):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=1e-9)


def test_row_orientation_does_not_change_the_ocean():
    """The same ocean stored south-to-north gives the row-flipped result (v stays northward)."""
    g = _gradient_grid()
    flipped = Grid.regular(9.0, depth=[10.0, 100.0], north_to_south=False)
    flipped = flipped.with_wet(g.wet[:, ::-1])
    st = _f64(smooth_state(g))
    flip = lambda s: jax.tree.map(lambda x: jnp.flip(x, axis=-2), s)  # noqa: E731
    a = make_physics(g).integrate(COEFFS, st, None, 2)
    b = make_physics(flipped).integrate(COEFFS, flip(st), None, 2)
    for x, y in zip(flip(a), b):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- gradients
def _gradient_grid():
    base = Grid.regular(9.0, depth=[10.0, 100.0])  # 20 x 40
    wet = np.ones(base.wet.shape, bool)
    wet[:, 6:10, 10:16] = False  # an island
    wet[1, 12:16, 20:30] = False  # a shelf: fewer wet cells at depth
    return base.with_wet(wet)


def test_gradients_wrt_coefficients_match_finite_differences():
    """d loss / d nu_m and d loss / d nu_t by AD through a 5-day lax.scan rollout equal central
    finite differences to 1e-4 relative (float64)."""
    g = _gradient_grid()
    physics = make_physics(g)
    st0 = _f64(smooth_state(g, max_speed_m_s=1.0))
    target = jax.tree.map(lambda x: 0.9 * x, st0)
    vol = jnp.asarray(g.cell_volume * g.wet)

    def loss(log_nu, state):
        nu = jnp.exp(log_nu)
        out = physics.integrate({"nu_m": nu[0], "nu_t": nu[1]}, state, None, 5)
        err = sum(jnp.sum(vol * (getattr(out, n) - getattr(target, n)) ** 2)
                  for n in ("u", "v", "T"))
        return err / jnp.sum(vol)

    x0 = jnp.log(jnp.asarray([5e4, 2e4]))
    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    f = jax.jit(loss)
    _, (g_nu, g_state) = value_and_grad(x0, st0)
    eps = 1e-4
    for i in range(2):
        e = jnp.zeros(2).at[i].set(eps)
        fd = (f(x0 + e, st0) - f(x0 - e, st0)) / (2 * eps)
        assert float(g_nu[i]) == pytest.approx(float(fd), rel=1e-4), i
        assert abs(float(fd)) > 0
    # and w.r.t. the initial state: a directional derivative along a smooth perturbation
    d = jax.tree.map(lambda x: jnp.asarray(np.where(g.wet, np.cos(np.arange(x.size)
                                                              .reshape(x.shape) * 0.01), 0.0)),
                     st0)
    d = d._replace(ssh=jnp.zeros_like(st0.ssh))
    ad = sum(float(jnp.sum(a * b)) for a, b in zip(g_state, d))
    h = 1e-6  # small: the flux limiter is piecewise smooth in the state
    plus = jax.tree.map(lambda x, y: x + h * y, st0, d)
    minus = jax.tree.map(lambda x, y: x - h * y, st0, d)
    fd = (float(f(x0, plus)) - float(f(x0, minus))) / (2 * h)
    assert ad == pytest.approx(fd, rel=1e-4)


# ----------------------------------------------------------------------------- coefficients
def test_coefficients_are_clipped_at_their_stability_bound():
    g = _gradient_grid()
    physics = make_physics(g)
    st = _f64(smooth_state(g))
    big = physics.day_step({"nu_m": 1e12, "nu_t": 1e12}, st, None)
    cap = physics.day_step({k: s.max_value for k, s in physics.specs.items()}, st, None)
    for a, b in zip(big, cap):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.isfinite(np.asarray(big.T)))


def test_per_level_coefficients_act_per_level():
    g = _gradient_grid()
    physics = make_physics(g)
    st = _f64(smooth_state(g))
    per_level = physics.day_step({"nu_m": jnp.asarray([5e4, 1e5]), "nu_t": 1e3}, st, None)
    for lev, nu in enumerate([5e4, 1e5]):
        glob = physics.day_step({"nu_m": nu, "nu_t": 1e3}, st, None)
        np.testing.assert_allclose(np.asarray(per_level.u[lev]), np.asarray(glob.u[lev]),
                                   rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match=r"nu_m must be a scalar or one value per level \[2\]"):
        physics.day_step({"nu_m": jnp.ones(3), "nu_t": 1e3}, st, None)


def test_vmapped_day_step_equals_one_state_at_a_time_and_ignores_forcing():
    g = _gradient_grid()
    physics = make_physics(g)
    a = smooth_state(g, max_speed_m_s=1.0)
    b = smooth_state(g, max_speed_m_s=0.5)
    both = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    forcing = Forcing(*(jnp.ones((2,) + g.shape) * k for k in range(4)))
    out = jax.jit(jax.vmap(physics.day_step, in_axes=(None, 0, 0)))(COEFFS, both, forcing)
    one = jax.jit(physics.day_step)(COEFFS, b, None)
    for x, y in zip(out, one):
        assert x.dtype == jnp.float32  # the state's dtype is kept
        np.testing.assert_allclose(np.asarray(x[1]), np.asarray(y), rtol=2e-6, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(out.ssh[1]), np.asarray(b.ssh))


# ----------------------------------------------------------------------------- bad input
def test_nan_in_an_ocean_cell_is_named():
    g = _gradient_grid()
    st = smooth_state(g)
    T = np.array(st.T)
    T[1, 4, 7] = np.nan
    with pytest.raises(StateError, match=r"T is nan in an ocean cell at level 1 \(100 m\), row 4, "
                                         r"column 7 \(lat 49\.5, lon 67\.5\)"):
        check_state(st._replace(T=T), g)
    # NaN on land is fine (raw data has it)
    T = np.array(st.T)
    T[~g.wet] = np.nan
    check_state(st._replace(T=T), g)
    with pytest.raises(StateError, match=r"state\.u has shape \(2, 5, 5\)"):
        check_state(st._replace(u=np.zeros((2, 5, 5))), g)


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="physics.mode must be 'paper' or 'primitive'"):
        PhysicsConfig(mode="spectral")
    with pytest.raises(ConfigError, match="physics.cfl"):
        PhysicsConfig(cfl=1.5)


# ----------------------------------------------------------------------------- long run
@pytest.mark.slow
def test_a_year_on_the_realistic_ocean_stays_finite_and_slow():
    """365 days at 1.5 deg x 23 levels on realistic coastlines from a smooth state with speeds up
    to 1.5 m/s: every value stays finite and speeds stay below 5 m/s."""
    from neuralogcm_jax.grid import GLORYS23_DEPTHS_M

    g = Grid.regular(1.5, depth=GLORYS23_DEPTHS_M).with_wet(_coast_mask(1.5))
    physics = make_physics(g)
    st = jax.tree.map(jnp.asarray, smooth_state(g, max_speed_m_s=1.5))
    run = jax.jit(physics.integrate, static_argnums=(3,))
    for _ in range(365 // 73):
        st = run(COEFFS, st, None, 73)
        speed = np.hypot(np.asarray(st.u), np.asarray(st.v))[g.wet]
        assert np.all(np.isfinite(speed)) and speed.max() < 5.0
        for x in (st.T, st.S):
            assert np.all(np.isfinite(np.asarray(x)[g.wet]))


# ----------------------------------------------------------------------------- wiring
def test_physics_demo_writes_a_figure_and_diagnostics(tmp_path):
    import json

    from neuralogcm_jax.cli import main

    rc = main(["physics-demo", "--out", str(tmp_path), "--days", "2", "--resolution", "6",
               "--levels", "2"])
    assert rc == 0
    diag = json.loads((tmp_path / "diagnostics.json").read_text())
    assert len(diag["days"]) == 3 and diag["n_substeps_per_day"] >= 1
    # not round-off: the default advective form of T is not conservative under this divergent
    # flow (6e-4 in 2 days; the flux form conserved to 1e-5 in float32)
    assert abs(diag["relative_drift_mean_T"]) < 2e-3
    assert (tmp_path / "sst_speed.png").stat().st_size > 10_000
    assert main(["physics-demo", "--out", str(tmp_path), "--days", "0"]) == 2
