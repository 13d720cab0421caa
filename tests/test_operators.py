"""Claims about the finite-volume operators: analytic diffusion, monotone advection, conservation,
the polar filter, closed coasts and the periodic seam."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import sph_harm_y

from neuralogcm_jax.grid import Grid
from neuralogcm_jax.physics.operators import Operators, limited_increment, polar_filter_transfer
from neuralogcm_jax.physics.params import CoefficientSpec
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS
from neuralogcm_jax.physics.integrators import (
    INTEGRATORS,
    real_axis_stability_extent,
    repeat,
    repeat_strang,
    ssp_rk3_step,
    strang_split,
)
from neuralogcm_jax.physics.planning import choose_integrator, plan_substeps
from neuralogcm_jax.physics.stepping import PhysicsConfig

DAY = 86400.0


def _lat_lon(g):
    return np.deg2rad(g.lat)[:, None], np.deg2rad(g.lon)[None, :]


def _random_land(shape, frac, seed):
    rng = np.random.default_rng(seed)
    return rng.random(shape) > frac


# ----------------------------------------------------------------------------- diffusion
def test_spherical_harmonics_decay_at_the_analytic_rate():
    """On an all-ocean sphere Y_l^m decays like exp(-nu l(l+1) t / R^2) (1.5 deg, l <= 6),
    with the polar filter on and the substep from the diffusion limit."""
    g = Grid.regular(1.5, depth=[10.0])
    lat, lon = _lat_lon(g)
    lm = [(1, 0), (2, 1), (3, 2), (4, 4), (5, 3), (6, 0), (6, 4), (6, 6)]
    y0 = np.stack([np.real(sph_harm_y(l, m, np.pi / 2 - lat, lon)) for l, m in lm])[:, None]
    nu = 1e5
    t_end = 0.7 * g.radius**2 / (42 * nu)  # Y_6 decays to 1/2
    ops = Operators.from_grid(g, jnp.float64, 60.0)
    specs = {"nu": CoefficientSpec("nu", nu, "m^2/s", "test diffusivity", max_value=nu)}
    plan = plan_substeps(g, PhysicsConfig(u_max_m_s=1e-9, max_substep_s=1e9), specs, t_end)
    run = jax.jit(repeat(ssp_rk3_step(lambda q: ops.laplacian_diffusion(q, nu), plan.dt_s),
                         plan.n_substeps, remat=False))
    y = np.asarray(run(jnp.asarray(y0)))
    a = g.area[:, None]
    for k, (l, m) in enumerate(lm):
        amplitude = (y[k, 0] * y0[k, 0] * a).sum() / (y0[k, 0] ** 2 * a).sum()
        expected = np.exp(-nu * l * (l + 1) * t_end / g.radius**2)
        assert amplitude == pytest.approx(expected, rel=0.02), (l, m, amplitude, expected)
        # and the pattern stays that harmonic (no leakage into other shapes)
        resid = y[k, 0] - amplitude * y0[k, 0]
        assert np.sqrt((resid**2 * a).sum() / (y0[k, 0] ** 2 * a).sum()) < 0.02 * expected


def test_diffusion_never_crosses_a_coast_and_conserves():
    """A closed face carries no diffusive flux: land values (even huge ones) are never read, and
    the ocean total is unchanged to round-off."""
    g = Grid.regular(6.0, depth=[10.0, 50.0])
    g = g.with_wet(_random_land(g.wet.shape, 0.3, 1))
    ops = Operators.from_grid(g, jnp.float64)
    rng = np.random.default_rng(2)
    q = np.where(g.wet, rng.normal(size=g.wet.shape), 0.0)
    nu = jnp.asarray([3e5, 1e5])[:, None, None]
    t1 = np.asarray(ops.laplacian_diffusion(jnp.asarray(q), nu))
    assert np.all(t1[~g.wet] == 0)
    total = (t1 * g.area[:, None]).sum(axis=(-2, -1))
    scale = (np.abs(t1) * g.area[:, None]).sum(axis=(-2, -1))
    assert np.all(np.abs(total) < 1e-13 * scale)
    # land holding 1e30 does not change the ocean tendency: the face mask closes it before use
    t2 = np.asarray(ops.laplacian_diffusion(jnp.asarray(np.where(g.wet, q, 1e30)), nu))
    np.testing.assert_array_equal(t2, t1)


# ----------------------------------------------------------------------------- advection
def _williamson1(g, alpha):
    """Velocity (m/s) of Williamson et al. (1992) case 1 and the exact cosine bell at time t."""
    lat, lon = _lat_lon(g)
    r_e = g.radius
    u0 = 2 * np.pi * r_e / (12 * DAY)
    u = u0 * (np.cos(lat) * np.cos(alpha) + np.sin(lat) * np.cos(lon) * np.sin(alpha))
    v = -u0 * np.sin(lon) * np.sin(alpha) * np.ones_like(lat)

    def bell(phi, lam):
        r = r_e * np.arccos(np.clip(np.cos(phi) * np.cos(lam - 1.5 * np.pi), -1, 1))
        return np.where(r < r_e / 3, 0.5 * (1 + np.cos(3 * np.pi * r / r_e)), 0.0)

    def exact(t):
        # solid-body rotation about the axis (-sin a, 0, cos a) by angle u0 t / R, traced back
        axis = np.array([-np.sin(alpha), 0.0, np.cos(alpha)])
        ang = -u0 / r_e * t
        x = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                      np.sin(lat) * np.ones_like(lon)], -1)
        xr = (x * np.cos(ang) + np.cross(axis, x) * np.sin(ang)
              + axis * (x @ axis)[..., None] * (1 - np.cos(ang)))
        return bell(np.arcsin(np.clip(xr[..., 2], -1, 1)), np.arctan2(xr[..., 1], xr[..., 0]))

    return u0, u, v, exact


def _run_bell(res, alpha, revolutions, integrator):
    g = Grid.regular(res, depth=[10.0])
    u0, u, v, exact = _williamson1(g, alpha)
    t_end = revolutions * 12 * DAY
    # the substep is the advective CFL limit of the scheme at the polar-filter cutoff
    method = INTEGRATORS[integrator]
    plan = plan_substeps(g, PhysicsConfig(u_max_m_s=u0, max_substep_s=1e9), {}, t_end,
                         ssp_coefficient=method.ssp_coefficient)
    assert plan.limited_by == "stability"
    ops = Operators.from_grid(g, jnp.float64, 60.0)
    U, V = jnp.asarray(u[None]), jnp.asarray(v[None])
    step = method.make_step(lambda q: ops.advection(q, U, V), plan.dt_s)
    q0 = exact(0.0)
    q = np.asarray(jax.jit(repeat(step, plan.n_substeps, remat=False))(jnp.asarray(q0[None])))[0]
    a = g.area[:, None]
    ref = exact(t_end)
    l2 = np.sqrt(((q - ref) ** 2 * a).sum() / (ref**2 * a).sum())
    mass = (q * a).sum() / (q0 * a).sum() - 1
    return l2, q.min(), q.max(), mass


@pytest.mark.parametrize("integrator", sorted(INTEGRATORS))
@pytest.mark.parametrize("alpha", [0.0, np.pi / 4])
def test_cosine_bell_half_revolution_at_3deg(alpha, integrator):
    """Williamson case 1 (cheap variant): half a revolution at 3 deg stays close to the exact
    bell, makes no new extrema beyond 1% of the amplitude and keeps its mass to round-off."""
    l2, lo, hi, mass = _run_bell(3.0, alpha, 0.5, integrator)
    assert l2 < 0.25
    assert lo > -0.01 and hi < 1.01
    assert abs(mass) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("integrator", sorted(INTEGRATORS))
@pytest.mark.parametrize("alpha", [0.0, np.pi / 4])
def test_cosine_bell_full_revolution_at_1p5deg(alpha, integrator):
    """Williamson case 1: after one revolution at 1.5 deg the relative l2 error is below 0.1,
    with no new extrema beyond 1% of the amplitude."""
    l2, lo, hi, mass = _run_bell(1.5, alpha, 1.0, integrator)
    assert l2 < 0.1
    assert lo > -0.01 and hi < 1.01
    assert abs(mass) < 1e-12


def test_limiter_is_zero_at_extrema_and_third_order_where_smooth():
    d_far = jnp.asarray([1.0, -1.0, 1.0, 0.3])
    d_near = jnp.asarray([-1.0, 2.0, 0.0, 0.3])
    inc = np.asarray(limited_increment(d_far, d_near))
    np.testing.assert_array_equal(inc[:3], 0.0)  # extrema and plateaus: no slope
    # on a straight line (equal differences) the face value is exact: q + d/2
    assert inc[3] == pytest.approx(0.3)


def test_advection_conserves_and_keeps_land_out():
    """Advective fluxes telescope (total tendency zero to round-off), land cells get none, and
    land values never enter: a basin with huge land values gives the same ocean tendency."""
    g = Grid.regular(6.0, depth=[10.0, 50.0])
    g = g.with_wet(_random_land(g.wet.shape[1:], 0.3, 3))
    ops = Operators.from_grid(g, jnp.float64)
    rng = np.random.default_rng(4)
    q, u, v = (np.where(g.wet, rng.normal(size=g.wet.shape), 0.0) for _ in range(3))
    t1 = np.asarray(ops.advection(jnp.asarray(q), jnp.asarray(u), jnp.asarray(v)))
    big = lambda x: jnp.asarray(np.where(g.wet, x, 1e30))  # noqa: E731
    ue, wr = ops.face_velocities(big(u), big(v))
    assert np.all(np.isfinite(ue * ops.mask_x)) and float(jnp.abs(ue).max()) < 1e29
    fx, fy = ops.advective_fluxes(big(q), ue, wr)
    t2 = np.asarray(-ops.flux_divergence(ops.polar_filter(fx), fy))
    np.testing.assert_allclose(t2, t1, rtol=0, atol=1e-12)
    assert np.all(t1[~g.wet] == 0)
    total = (t1 * g.area[:, None]).sum(axis=(-2, -1))
    assert np.all(np.abs(total) < 1e-13 * (np.abs(t1) * g.area[:, None]).sum(axis=(-2, -1)))


def test_seam_is_an_ordinary_face():
    """Rolling field, velocities and mask by k longitudes rolls every tendency by k."""
    g = Grid.regular(6.0, depth=[10.0])
    g = g.with_wet(_random_land(g.wet.shape[1:], 0.25, 5))
    rng = np.random.default_rng(6)
    q, u, v = (np.where(g.wet, rng.normal(size=g.wet.shape), 0.0) for _ in range(3))
    k = 17
    gr = g.with_wet(np.roll(g.wet, k, axis=-1))
    r = lambda x: jnp.asarray(np.roll(x, k, axis=-1))  # noqa: E731
    for ops, opr in [(Operators.from_grid(g, jnp.float64), Operators.from_grid(gr, jnp.float64))]:
        a = np.asarray(ops.advection_diffusion(jnp.asarray(q), jnp.asarray(u), jnp.asarray(v), 2e5))
        b = np.asarray(opr.advection_diffusion(r(q), r(u), r(v), 2e5))
        np.testing.assert_allclose(b, np.roll(a, k, axis=-1), rtol=0, atol=1e-12 * np.abs(a).max())


@pytest.mark.parametrize("lat_c,joint", [(60.0, False), (60.0, True), (None, False)])
def test_fused_transport_equals_the_separate_operators(lat_c, joint):
    """`self_advection_diffusion` (one padded copy, upwind-only limiter, caps written in place)
    gives the tendency of `advection_diffusion` with U = the stack's first two channels, to
    round-off, on a coast with land holding huge values, with per-channel-and-level nu."""
    g = Grid.regular(3.0, depth=[10.0, 50.0, 200.0])
    g = g.with_wet(_random_land(g.wet.shape, 0.3, 11))
    ops = Operators.from_grid(g, jnp.float64, lat_c, joint_filter=joint)
    rng = np.random.default_rng(12)
    q = np.stack([np.where(g.wet, rng.normal(size=g.wet.shape) * s, 1e30) for s in (1, 1, 5, 2)])
    nu = jnp.asarray(rng.uniform(1e4, 2e5, size=(4, 3, 1, 1)))
    fused = np.asarray(ops.self_advection_diffusion(jnp.asarray(q), nu))
    ocean = jnp.asarray(np.where(g.wet, q, 0.0))
    ref = np.asarray(ops.advection_diffusion(ocean, ocean[0:1], ocean[1:2], nu))
    wet = np.broadcast_to(g.wet, q.shape)
    scale = np.abs(ref[wet]).max()
    np.testing.assert_allclose(fused[wet], ref[wet], rtol=0, atol=1e-12 * scale)
    # fluxes telescope: the area-weighted total of each channel and level is unchanged
    total = (np.where(wet, fused, 0.0) * g.area[:, None]).sum(axis=(-2, -1))
    assert np.all(np.abs(total) < 1e-12 * scale * g.area.sum())


def test_merged_strang_half_steps_equal_the_split_substeps():
    """E(dt/2) (R E(dt))^n E(-dt/2) = (E(dt/2) R E(dt/2))^n when E(a) E(b) = E(a + b): a rotation
    by angle f t around an explicit nonlinear step."""
    f = jnp.asarray([[1e-4], [-7e-5], [3e-5]])

    def rotate(q, t):
        c, s = jnp.cos(f * t), jnp.sin(f * t)
        return jnp.stack([c * q[0] + s * q[1], c * q[1] - s * q[0], q[2]])

    step = ssp_rk3_step(lambda q: -q * q[2:3] * 1e-5 + jnp.roll(q, 1, axis=-1) * 1e-5, 600.0)
    q0 = jnp.asarray(np.random.default_rng(13).normal(size=(3, 3, 5)))
    a = repeat(strang_split(rotate, step, 600.0), 40, remat=False)(q0)
    b = repeat_strang(rotate, step, 600.0, 40, remat=True)(q0)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-12)
    assert not np.allclose(np.asarray(a), np.asarray(q0), atol=1e-3)  # it did move


# ----------------------------------------------------------------------------- polar filter
def test_polar_filter_passes_resolved_waves_and_bounds_the_rest():
    lat = np.array([0.0, 59.0, 61.0, 75.0, 88.5])
    a = polar_filter_transfer(lat, 240, 60.0)
    assert np.all(a[:2] == 1.0)  # equatorward of the cutoff: untouched
    assert np.all(a[:, 0] == 1.0)  # the zonal mean flux passes everywhere
    k = np.arange(121)
    s = np.sin(np.pi * k / 240)
    # filtered, every mode is no faster than at the cutoff: a_k sin(k dlon/2) / cos(phi) <= 1/cos(60)
    speed = a[2:] * s[None] / np.cos(np.deg2rad(lat[2:]))[:, None]
    assert np.all(speed <= 1.0 / np.cos(np.deg2rad(60.0)) + 1e-12)
    assert a[4, 1] == 1.0 and a[4, -1] < 0.06  # wave 1 kept, 2-grid wave damped at 88.5 deg


def test_polar_filter_keeps_midlatitude_rows_and_closed_faces():
    g = Grid.regular(3.0, depth=[10.0])
    g = g.with_wet(_random_land(g.wet.shape[1:], 0.3, 7))
    ops = Operators.from_grid(g, jnp.float64, 60.0)
    fx = np.random.default_rng(8).normal(size=g.wet.shape)
    out = np.asarray(ops.polar_filter(jnp.asarray(fx)))
    mid = np.abs(g.lat) <= 60
    np.testing.assert_array_equal(out[:, mid], (fx * g.face_mask_x)[:, mid])
    assert np.all(out[~g.face_mask_x] == 0)
    assert not np.allclose(out[:, ~mid], fx[:, ~mid] * g.face_mask_x[:, ~mid])


def test_substep_is_set_by_midlatitudes_not_the_polar_cells():
    g = Grid.regular(1.5, depth=[10.0])
    with_filter = plan_substeps(g, PhysicsConfig(max_substep_s=1e9))
    without = plan_substeps(g, PhysicsConfig(polar_filter_lat_deg=None, max_substep_s=1e9))
    assert with_filter.dt_stable_s > 50 * without.dt_stable_s
    # with the filter the diffusion limit is near the textbook one for dx at 60 deg (a little
    # below: the polar-cap cell's short meridional outflow path counts too)
    dx60 = g.radius * np.cos(np.deg2rad(60.0)) * np.deg2rad(1.5)
    textbook = 1.0 / (2 * 2.5e5 * (1 / dx60**2 + 1 / g.dy**2))
    assert 0.8 * textbook < with_filter.dt_diffusive_s <= textbook


def test_real_axis_stability_extents_of_euler_and_the_ssp_methods():
    assert real_axis_stability_extent((1.0, 1.0)) == pytest.approx(2.0)
    assert real_axis_stability_extent((1.0, 1.0, 0.5, 1.0 / 6.0)) == pytest.approx(2.5127, abs=1e-4)
    assert INTEGRATORS["ssprk3"].diffusive_gain == pytest.approx(2.5127 / 2, abs=1e-4)
    # SSP-RK(4,3) leaves the unit disk where R comes back to +1, not at -1
    assert INTEGRATORS["ssprk43"].diffusive_gain == pytest.approx(5.1494 / 2, abs=1e-4)
    # dense check of the extent: |R(-x)| <= 1 up to it and > 1 just beyond
    for method in INTEGRATORS.values():
        c = np.asarray(method.stability_polynomial)[::-1]
        x = 2.0 * method.diffusive_gain
        assert np.all(np.abs(np.polyval(c, -np.linspace(0.0, x, 10001))) <= 1.0 + 1e-9)
        assert abs(np.polyval(c, -1.001 * x)) > 1.0


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_integrator_steps_have_their_stated_stability_polynomial(name):
    """On ``dq/dt = lambda q`` one step multiplies q by R(lambda dt): the coefficients the planner
    uses are those of the implemented method (third order: exp's first four terms)."""
    method = INTEGRATORS[name]
    z = np.array([-0.3, -1.7 + 0.4j, 0.9j, -4.0])
    step = method.make_step(lambda q: q * z, 1.0)
    got = np.asarray(step(jnp.ones(4, jnp.complex128)))
    want = np.polyval(np.asarray(method.stability_polynomial)[::-1], z)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose(method.stability_polynomial[:4], [1, 1, 1 / 2, 1 / 6])
    assert method.stages == len(method.stability_polynomial) - 1


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_ssp_methods_keep_the_forward_euler_bound_at_their_ssp_coefficient(name):
    """Upwind advection of a step (forward Euler: monotone up to Courant 1): at Courant number
    ``ssp_coefficient`` per step the method makes no new extrema; well beyond it, it does."""
    method = INTEGRATORS[name]
    n = 64
    q0 = jnp.asarray(np.where(np.arange(n) < n // 2, 1.0, 0.0))

    def upwind(q):  # dq/dt = -(q_i - q_{i-1}) with dx = u = 1
        return -(q - jnp.roll(q, 1))

    def run(courant):
        q = q0
        step = method.make_step(upwind, courant)
        for _ in range(40):
            q = step(q)
        return np.asarray(q)

    q = run(method.ssp_coefficient)
    assert q.min() >= -1e-12 and q.max() <= 1.0 + 1e-12
    q = run(1.6 * method.ssp_coefficient)
    assert q.min() < -1e-3 or q.max() > 1.0 + 1e-3


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_planned_substep_is_stable_for_the_fastest_diffusive_mode_and_only_just(name):
    """At the largest diffusivity, white noise (which holds the fastest mode) does not grow over
    60 steps of the planned diffusion-limited substep, and grows 30 % beyond it: the plan is the
    integrator's stability limit, not a guess with room to spare. The fastest mode of the
    filtered operator is measured at over 0.77 of the planned bound (1/1.3)."""
    method = INTEGRATORS[name]
    g = Grid.regular(1.5, depth=[10.0])
    nu = PAPER_COEFFICIENTS["nu_m"].max_value
    plan = plan_substeps(g, PhysicsConfig(u_max_m_s=1e-9, max_substep_s=1e9), PAPER_COEFFICIENTS,
                         diffusive_gain=method.diffusive_gain,
                         ssp_coefficient=method.ssp_coefficient)
    assert plan.dt_stable_s == pytest.approx(plan.dt_diffusive_s, rel=1e-6)
    ops = Operators.from_grid(g, jnp.float64, 60.0)
    area = jnp.asarray(g.area)[:, None]
    q0 = jnp.asarray(np.random.default_rng(14).normal(size=g.wet.shape))

    def norm(q):  # area-weighted l2: the norm in which diffusion is symmetric
        return float(jnp.sqrt(jnp.sum(q * q * area)))

    def run(dt):
        step = method.make_step(lambda q: ops.laplacian_diffusion(q, nu), dt)
        return norm(jax.jit(repeat(step, 60, remat=False))(q0))

    assert run(plan.dt_stable_s) <= norm(q0)
    assert run(1.3 * plan.dt_stable_s) > 100 * norm(q0)


def test_auto_integrator_takes_the_fewest_tendency_evaluations():
    for res in (1.5, 3.0, 6.0):
        g = Grid.regular(res, depth=[10.0])
        method, plan = choose_integrator(g)
        costs = {}
        for name, m in INTEGRATORS.items():
            p = choose_integrator(g, PhysicsConfig(integrator=name))[1]
            costs[name] = m.stages * p.n_substeps
        assert method.stages * plan.n_substeps == min(costs.values())
    # at 1.5 deg stability sets the substep and SSP-RK(4,3) needs two thirds of the evaluations
    method, plan = choose_integrator(Grid.regular(1.5, depth=[10.0]))
    assert (method.name, plan.n_substeps, plan.dt_s) == ("ssprk43", 10, 8640.0)
    with pytest.raises(Exception, match="integrator"):
        PhysicsConfig(integrator="euler")


def test_joint_polar_filter_damps_the_whole_zonal_flux_by_a_squared():
    """With ``joint_filter`` the advective flux gets the diffusive transfer ``a_k^2 <= a_k``: the
    filtered flux of a single zonal wave in a capped row is the wave times ``a_k^2``; equatorward
    of the cutoff nothing changes; either way the sum of adv + diff is what is filtered."""
    g = Grid.regular(3.0, depth=[10.0])
    split = Operators.from_grid(g, jnp.float64, 60.0)
    joint = Operators.from_grid(g, jnp.float64, 60.0, joint_filter=True)
    a = polar_filter_transfer(g.lat, g.shape[1], 60.0)
    k = 37
    lon = np.deg2rad(g.lon)
    wave = np.broadcast_to(np.cos(k * lon), g.wet.shape).copy()
    out_j = np.asarray(joint.polar_filter(jnp.asarray(wave), jnp.asarray(0.5 * wave)))
    out_s = np.asarray(split.polar_filter(jnp.asarray(wave), jnp.asarray(0.5 * wave)))
    j = int(np.argmax(np.abs(g.lat)))  # a polar row
    np.testing.assert_allclose(out_j[0, j], 1.5 * a[j, k] ** 2 * wave[0, j], atol=1e-12)
    np.testing.assert_allclose(out_s[0, j], (a[j, k] + 0.5 * a[j, k] ** 2) * wave[0, j], atol=1e-12)
    assert a[j, k] < 0.5
    mid = np.abs(g.lat) <= 60
    np.testing.assert_array_equal(out_j[:, mid], out_s[:, mid])


# ----------------------------------------------------------------------------- Rhie-Chow excess
@pytest.mark.parametrize("order", [1, 2, 3])
def test_face_excess_is_all_of_a_checkerboard_and_sin_to_the_2n_of_a_wave(order):
    """`Operators.face_excess` on a periodic row: the face gradients of a 2 dx checkerboard come
    back whole at any order; those of a wave of k the factor ``sin(k dx / 2)^(2 n)`` (the
    symbol of ``I - A C``: ``(1 - cos k dx) / 2``); a uniform gradient none. Closed faces stay
    zero; next to a wall, see below."""
    n = 32
    g = Grid.cartesian(n, 12, 1e4, 1e4, depth=[10.0], periodic_x=True)
    ops = Operators.from_grid(g, jnp.float64)
    i = np.arange(n)
    rows = lambda f: jnp.asarray(np.broadcast_to(f, (1, 12, n)).copy())  # noqa: E731
    zero_y = jnp.zeros((1, 13, n))
    for m in (2, 3, 5):
        k = 2 * np.pi * m / n
        p = np.cos(k * i)
        gx = (np.roll(p, -1) - p) / 1e4
        ex, ey = ops.face_excess(rows(gx), zero_y, order)
        np.testing.assert_allclose(np.asarray(ex)[0], np.broadcast_to(
            np.sin(k / 2) ** (2 * order) * gx, (12, n)), rtol=0, atol=1e-13 * np.abs(gx).max())
        assert float(np.abs(ey).max()) == 0.0
    cb = (-1.0) ** i
    gx = (np.roll(cb, -1) - cb) / 1e4
    ex, _ = ops.face_excess(rows(gx), zero_y, order)
    np.testing.assert_allclose(np.asarray(ex)[0], np.broadcast_to(gx, (12, n)), rtol=1e-14)
    ex, _ = ops.face_excess(rows(np.full(n, 1e-3)), zero_y, order)
    assert float(np.abs(ex).max()) < 1e-18
    # along the rows, between two walls: a uniform gradient (a linear field) has no excess, at
    # the walls either (a cell's centre value is the mean of its open faces: counting the wall's
    # as zero gave the faces next to it a quarter of the gradient); a gradient growing by one
    # per face (a quadratic field) has none in the interior and, next to the walls, measured
    # 1/4, 1/16, 3/64 of that growth at orders 1, 2, 3.
    wall_excess = {1: 0.25, 2: 0.0625, 3: 0.046875}[order]
    for gy_open, largest in ((np.full(11, 1e-3), 0.0), (np.arange(1.0, 12.0), wall_excess)):
        gy = np.concatenate([[0.0], gy_open, [0.0]])
        _, ey = ops.face_excess(jnp.zeros((1, 12, n)), jnp.asarray(
            np.broadcast_to(gy[:, None], (1, 13, n)).copy()), order)
        ey = np.asarray(ey)[0]
        assert np.abs(ey - ey[:, :1]).max() == 0.0  # uniform along x
        ey = ey[:, 0]
        assert ey[0] == 0.0 and ey[-1] == 0.0
        np.testing.assert_allclose(np.abs(ey).max(), largest, rtol=1e-12, atol=1e-18)
        assert np.abs(ey[order + 1:-order - 1]).max() < 1e-12 * gy.max()
