"""Claims about the column physics: diffusion, closed floors, continuity, hydrostatics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neuralogcm_jax.physics import vertical


def _column(n_levels, dz, shape=(1, 1)):
    h = jnp.full((n_levels,) + shape, dz)
    z = (jnp.arange(n_levels) + 0.5) * dz
    return h, z


def test_diffusion_of_a_gaussian_matches_the_analytic_spread():
    """c(z, t) = s0/s exp(-(z-z0)^2 / 2 s^2), s^2 = s0^2 + 2 kappa t, within 2 % of the peak."""
    n, dz, kappa, dt, days = 200, 5.0, 1e-2, 3600.0, 10
    h, z = _column(n, dz)
    z0, s0 = 500.0, 30.0
    c = jnp.exp(-((z - z0) ** 2) / (2 * s0**2))[:, None, None] * jnp.ones((n, 1, 1))
    wet = jnp.ones((n, 1, 1), bool)
    step = jax.jit(lambda c: vertical.implicit_vertical_diffusion(c, kappa, dt, h, wet))
    for _ in range(int(days * 86400 / dt)):
        c = step(c)
    s = np.sqrt(s0**2 + 2 * kappa * days * 86400)
    exact = s0 / s * np.exp(-((np.asarray(z) - z0) ** 2) / (2 * s**2))
    assert np.max(np.abs(np.asarray(c)[:, 0, 0] - exact)) < 0.02 * exact.max()


def test_diffusion_conserves_column_content_and_adds_the_surface_flux():
    rng = np.random.default_rng(1)
    n = 6
    h = jnp.asarray(rng.uniform(1, 50, (n, 3, 4)))
    c = jnp.asarray(rng.normal(size=(n, 3, 4)))
    wet = jnp.ones((n, 3, 4), bool)
    q = jnp.asarray(rng.normal(size=(3, 4))) * 1e-4
    out = vertical.implicit_vertical_diffusion(c, 1e-2, 86400.0, h, wet, surface_flux=q)
    np.testing.assert_allclose((h * out).sum(0) - (h * c).sum(0), 86400.0 * q, rtol=1e-10, atol=1e-12)


def test_no_flux_through_the_sea_floor():
    """Cells below the deepest wet level never change and the wet column keeps its content."""
    n = 8
    h, _ = _column(n, 10.0, (2, 2))
    wet = np.ones((n, 2, 2), bool)
    wet[5:, 0, 0] = False  # a shallow column: its floor is the bottom of level 4
    wet[2:, 1, 1] = False
    wet = jnp.asarray(wet)
    c = jnp.asarray(np.random.default_rng(2).normal(size=(n, 2, 2)))
    out = vertical.implicit_vertical_diffusion(c, 1.0, 1e5, h, wet)
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(wet)], np.asarray(c)[~np.asarray(wet)])
    content = lambda x: (h * x * wet).sum(0)
    np.testing.assert_allclose(content(out), content(c), rtol=1e-11, atol=1e-12)
    # A very long step mixes each wet column to its mean.
    mixed = vertical.implicit_vertical_diffusion(c, 1.0, 1e9, h, wet)
    np.testing.assert_allclose(mixed[:5, 0, 0], c[:5, 0, 0].mean(), rtol=1e-4)


def test_bottom_drag_decays_a_single_layer_exponentially_in_the_implicit_limit():
    h = jnp.full((1, 1, 1), 100.0)
    u = jnp.ones((1, 1, 1))
    r = 1e-3  # m/s -> e-folding time h / r = 1e5 s
    out = vertical.implicit_vertical_diffusion(u, 0.0, 100.0, h, jnp.ones((1, 1, 1), bool), bottom_drag=r)
    assert float(out[0, 0, 0]) == pytest.approx(1.0 / (1.0 + 100.0 * r / 100.0))


def test_uniform_density_anomaly_gives_linear_pressure():
    depth = jnp.asarray([5.0, 15.0, 40.0, 100.0])
    rho = jnp.full((4, 2, 3), 2.0)
    p = vertical.hydrostatic_pressure(rho, depth, g=9.81)
    np.testing.assert_allclose(p[:, 0, 0], 9.81 * 2.0 * depth, rtol=1e-12)
    assert p.dtype == rho.dtype


def test_vertical_velocity_closes_the_column():
    rng = np.random.default_rng(3)
    div = jnp.asarray(rng.normal(size=(5, 2, 2))) * 1e-6
    w = vertical.vertical_velocity(div)
    assert w.shape == (6, 2, 2)
    np.testing.assert_array_equal(w[-1], 0.0)
    np.testing.assert_allclose(w[0], -div.sum(0), rtol=1e-12)
    # z*: with dh/dt = dz/H * deta/dt and deta/dt = -sum div, the surface value vanishes.
    dz = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0])[:, None, None]
    deta = -div.sum(0)
    w_star = vertical.vertical_velocity(div, dz / dz.sum() * deta)
    np.testing.assert_allclose(w_star[0], 0.0, atol=1e-20)


def _advect_one_step(c, h, w_mid, scheme, dt=1.0):
    """One implicit step of pure vertical advection by a uniform upward `w_mid` (closed ends);
    returns the tendency dc/dt of every level."""
    n = c.shape[0]
    w = jnp.full((n + 1, 1, 1), w_mid).at[0].set(0.0).at[-1].set(0.0)
    wet = jnp.ones((n, 1, 1), bool)
    out = vertical.implicit_vertical_diffusion(c, 0.0, dt, h, wet, w=w, advection=scheme)
    return (out - c) / dt


def test_centred_vertical_advection_is_exact_for_a_linear_profile_on_stretched_levels():
    """c = a z advected by a uniform w: dc/dt = w a (z down, w up) in every interior layer; the
    centred interface values are exact on any spacing, the upwind ones are off by a h / 2."""
    h = jnp.asarray(np.geomspace(1.0, 120.0, 23))[:, None, None]  # GLORYS-like stretching
    z = jnp.cumsum(h, 0) - 0.5 * h
    a, w = 0.01, 1e-4  # degC/m, m/s
    inner = slice(2, -2)  # away from the closed top and bottom
    cen = _advect_one_step(a * z, h, w, "centred")[inner, 0, 0]
    np.testing.assert_allclose(cen, w * a, rtol=1e-8)
    up = _advect_one_step(a * z, h, w, "upwind")[inner, 0, 0]
    assert float(np.max(np.abs(up / (w * a) - 1))) > 0.05  # measured 0.12 (centred: 1.4e-10)


@pytest.mark.parametrize("scheme,order", [("upwind", 1.0), ("centred", 2.0)])
def test_vertical_advection_converges_at_its_order(scheme, order):
    """A Gaussian advected by a uniform w: the error of dc/dt against w dc/dz falls by 2^order
    when the levels are halved."""
    errs = []
    for n in (40, 80, 160):
        dz = 400.0 / n
        h, z = _column(n, dz)
        c = jnp.exp(-((z - 200.0) ** 2) / (2 * 40.0**2))[:, None, None]
        exact = 1e-4 * (-(z - 200.0) / 40.0**2) * c[:, 0, 0]  # w dc/dz, z down, w up
        tend = _advect_one_step(c, h, 1e-4, scheme)[:, 0, 0]
        errs.append(float(jnp.max(jnp.abs(tend - exact)[n // 8: -n // 8])))
    rates = np.log2(np.asarray(errs[:-1]) / np.asarray(errs[1:]))
    np.testing.assert_allclose(rates, order, atol=0.15)  # measured 0.99, 1.00; 1.95, 1.99


@pytest.mark.parametrize("scheme", ["upwind", "centred"])
def test_implicit_vertical_advection_conserves_column_content(scheme):
    """Flux form: a divergent w only moves c within the column (1e-12, float64); land keeps its
    value; in advective form a uniform field stays uniform."""
    rng = np.random.default_rng(5)
    n = 7
    h = jnp.asarray(rng.uniform(1, 50, (n, 3, 4)))
    c = jnp.asarray(rng.normal(size=(n, 3, 4)))
    wet = np.ones((n, 3, 4), bool)
    wet[4:, 0, 0] = False
    wet = jnp.asarray(wet)
    w = jnp.asarray(rng.normal(size=(n + 1, 3, 4))) * 1e-3
    w = w.at[0].set(0.0).at[-1].set(0.0)
    out = vertical.implicit_vertical_diffusion(c, 1e-3, 3600.0, h, wet, w=w, advection=scheme)
    content = lambda x: (h * x * wet).sum(0)
    np.testing.assert_allclose(content(out), content(c), rtol=1e-12, atol=1e-12)
    assert float(jnp.abs(out - c).max()) > 1e-3  # something moved
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(wet)], np.asarray(c)[~np.asarray(wet)])
    ones = jnp.ones_like(c)
    flat = vertical.implicit_vertical_diffusion(ones, 1e-3, 3600.0, h, wet, w=w,
                                                advective_form=True, advection=scheme)
    np.testing.assert_allclose(flat, 1.0, rtol=1e-12)


def test_unknown_vertical_advection_scheme_is_named():
    from neuralogcm_jax.errors import ConfigError

    h, _ = _column(3, 1.0)
    with pytest.raises(ConfigError, match="'quick'.*known: upwind, centred"):
        vertical.implicit_vertical_diffusion(h, 0.0, 1.0, h, jnp.ones((3, 1, 1), bool),
                                             advection="quick")


def test_diffusion_is_differentiable_wrt_kappa():
    h, _ = _column(10, 10.0)
    c = jnp.linspace(20.0, 5.0, 10)[:, None, None]
    wet = jnp.ones((10, 1, 1), bool)
    loss = lambda k: jnp.sum(vertical.implicit_vertical_diffusion(c, k, 86400.0, h, wet) ** 2)
    g = jax.grad(loss)(1e-3)
    eps = 1e-7
    fd = (loss(1e-3 + eps) - loss(1e-3 - eps)) / (2 * eps)
    assert g == pytest.approx(float(fd), rel=1e-5)


def _convecting_columns(kappa_c, dtype, w=None):
    """5 days of hourly implicit steps of 6 x 6 columns of 23 levels 1 to 400 m thick (to 3.1 km;
    the deep levels land in two rows), cooled at the surface, T noisy and unstable in the top
    three levels, the convective diffusivity ``kappa_c`` ramped (C1, over 0.3 kg/m^3, linear
    EOS) across unstable interfaces and diagnosed once a day; a heat-content-weighted loss."""
    L, H, W = 23, 6, 6
    edges = np.concatenate([[0.0], np.cumsum(np.geomspace(1.0, 400.0, L))])
    zc = 0.5 * (edges[1:] + edges[:-1])
    rng = np.random.default_rng(0)
    T0 = 4 + 16 * np.exp(-zc / 150.0)[:, None, None] + 0.3 * rng.normal(size=(L, H, W))
    T0[:3] -= 3.0 * rng.random((H, W))
    S0 = 35 + 0.01 * rng.normal(size=(L, H, W))
    wet = np.ones((L, H, W), bool)
    wet[15:, :2] = False
    h = jnp.asarray(np.diff(edges)[:, None, None] * np.ones((L, H, W)), dtype)
    T, S = jnp.asarray(T0, dtype), jnp.asarray(S0, dtype)
    q = jnp.full((2, H, W), -2e-5, dtype).at[1].set(0.0)
    for _ in range(5):
        x = jnp.clip(((-0.2 * T + 0.8 * S)[:-1] - (-0.2 * T + 0.8 * S)[1:]) / 0.3, 0.0, 1.0)
        K = 1e-5 + kappa_c * x * x * (3 - 2 * x)

        def body(ts, _):
            return vertical.implicit_vertical_diffusion(
                ts, K, jnp.asarray(3600.0, dtype), h, wet, q, w=w), None

        ts, _ = jax.lax.scan(body, jnp.stack([T, S]), None, length=24)
        T, S = ts[0], ts[1]
    return jnp.sum((T - 10.0) ** 2 * h) * 1e-3


@pytest.mark.parametrize("kappa_c,rtol", [(1.0, 1e-4), (10.0, 5e-3)])
def test_float32_gradient_by_a_large_convective_diffusivity(kappa_c, rtol):
    """The float32 derivative of 5 days of convecting columns by the convective diffusivity
    equals float64 central differences: 1.3e-5 apart at 1 m^2/s, 1.0e-3 at 10 (measured). The
    derivative is implicit, with each flux a coupling times a difference; differentiated through
    the elimination it was 1.2e-3 and 2.2e-2 apart (`vertical._implicit_solve`)."""
    g32 = jax.jit(jax.grad(lambda k: _convecting_columns(k, jnp.float32)))(jnp.float32(kappa_c))
    g64 = jax.jit(jax.grad(lambda k: _convecting_columns(k, jnp.float64)))(jnp.float64(kappa_c))
    eps = 1e-4 * kappa_c
    fd = (_convecting_columns(kappa_c + eps, jnp.float64)
          - _convecting_columns(kappa_c - eps, jnp.float64)) / (2 * eps)
    assert float(g64) == pytest.approx(float(fd), rel=1e-6)
    assert float(g32) == pytest.approx(float(fd), rel=rtol)
    assert abs(float(fd)) > 1e-4  # the loss depends on it
