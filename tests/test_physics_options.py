"""Claims about the paper-mode physics options."""

import jax.numpy as jnp
import numpy as np
import pytest

from neuralogcm_jax import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OceanState
from neuralogcm_jax.physics import PhysicsConfig, make_physics


def _divergent_state(g):
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(1,) + g.shape) * 0.3)
    v = jnp.asarray(rng.normal(size=(1,) + g.shape) * 0.3)
    T = jnp.full((1,) + g.shape, 15.0)
    return OceanState(u, v, T, T * 0 + 35.0, jnp.zeros(g.shape))


@pytest.mark.parametrize("transfer", ["joint", "split"])
def test_advective_form_keeps_a_uniform_tracer_uniform_under_divergent_flow(transfer):
    """Also in the polar caps (12 deg: rows poleward of 60 deg filtered), with either filter
    transfer: div(U) goes through the same filter as the fluxes of q."""
    g = Grid.regular(12.0, depth=[5.0])
    st = _divergent_state(g)
    out = {}
    for mode in ("flux", "advective"):
        ph = make_physics(g, PhysicsConfig(tracer_advection=mode, polar_filter_transfer=transfer))
        c = {k: jnp.asarray(s.default) for k, s in ph.specs.items()}
        out[mode] = ph.day_step(c, st, None)
    # flux form: -T div(U) piles heat where the flow converges ...
    assert float(jnp.abs(out["flux"].T - 15.0).max()) > 0.1
    # ... the advective form has no such source (to round-off).
    np.testing.assert_allclose(np.asarray(out["advective"].T), 15.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(out["advective"].S), 35.0, atol=1e-9)
    # and momentum is treated alike in both forms.
    np.testing.assert_allclose(np.asarray(out["flux"].u), np.asarray(out["advective"].u), atol=1e-12)


def test_unknown_tracer_advection_is_named():
    with pytest.raises(ConfigError, match="tracer_advection.*'upwind'"):
        PhysicsConfig(tracer_advection="upwind")
    with pytest.raises(ConfigError, match="momentum_advection.*'upwind'"):
        PhysicsConfig(momentum_advection="upwind")
    with pytest.raises(ConfigError, match="pressure_gradient.*'geostrophic'"):
        PhysicsConfig(pressure_gradient="geostrophic")
    with pytest.raises(ConfigError, match="physics.eos.*'unesco'"):
        PhysicsConfig(eos="unesco")


def test_advective_momentum_keeps_a_uniform_current_uniform_under_divergent_flow():
    """Momentum in advective form: a uniform eastward current on a (zonally uniform) f = 0
    plane with a divergent meridional flow keeps u uniform to round-off over a day (u . grad u
    = v du/dy = 0); in flux form, -div(u U) changes it where v converges."""
    g = Grid.cartesian(6, 12, 100e3, 100e3, depth=[10.0], f0=0.0, periodic_x=True)
    y = (np.arange(12) + 0.5) / 12
    v = jnp.asarray(np.broadcast_to((0.2 * np.sin(2 * np.pi * y))[None, :, None], (1, 12, 6)))
    st = OceanState(jnp.full((1, 12, 6), 0.3), v, jnp.full((1, 12, 6), 15.0),
                    jnp.full((1, 12, 6), 35.0), jnp.zeros((12, 6)))
    c = {"nu_m": 1e-6, "nu_t": 1e-6}
    out = {m: make_physics(g, PhysicsConfig(momentum_advection=m)).day_step(c, st, None)
           for m in ("flux", "advective")}
    np.testing.assert_allclose(np.asarray(out["advective"].u), 0.3, atol=1e-12)
    assert float(jnp.abs(out["flux"].u - 0.3).max()) > 1e-3


@pytest.mark.parametrize("tracer_advection", ["flux", "advective"])
def test_level_blocks_give_the_same_day_as_all_levels_at_once(tracer_advection):
    """Paper-mode levels are independent, so integrating them in blocks (5 levels by 2: two
    blocks and one padded with land) changes nothing, with per-level coefficients and coasts
    that differ between levels."""
    g = Grid.regular(12.0, depth=[5.0, 20.0, 50.0, 100.0, 300.0])
    rng = np.random.default_rng(1)
    g = g.with_wet(rng.random(g.wet.shape) > 0.2)
    st = _divergent_state(g)
    st = OceanState(*(jnp.broadcast_to(x[:1], (5,) + g.shape) + 0.1 * k for k, x in
                      enumerate(st[:4])), st.ssh)
    coeffs = {"nu_m": jnp.linspace(1e4, 2e5, 5), "nu_t": 3e3}
    outs = []
    for block in (None, 2):
        ph = make_physics(g, PhysicsConfig(tracer_advection=tracer_advection, level_block=block))
        outs.append(ph.day_step(coeffs, st, None))
    for a, b in zip(*outs):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-12)
    assert not np.allclose(np.asarray(outs[0].u), np.asarray(st.u))  # the day did something


def test_bad_level_block_is_named():
    with pytest.raises(ConfigError, match="level_block"):
        PhysicsConfig(level_block=0)


@pytest.mark.parametrize("mode,imbalance", [("paper", "free"), ("paper", "held"),
                                            ("primitive", "free")])
def test_the_coefficients_a_config_declares_are_those_its_physics_learns(mode, imbalance):
    """Each mode is built by its own module, and `coefficient_specs(config)` (what a model
    configuration checks its values against, without a grid) names the same coefficients, with
    the same specs, as the built physics."""
    from neuralogcm_jax.physics import coefficient_specs
    from neuralogcm_jax.physics.paper import PaperPhysics
    from neuralogcm_jax.physics.primitive import PrimitivePhysics

    g = Grid.regular(12.0, depth=[5.0, 20.0])
    config = PhysicsConfig(mode=mode, imbalance=imbalance)
    specs = coefficient_specs(config)
    physics = make_physics(g, config)
    assert type(physics) is {"paper": PaperPhysics, "primitive": PrimitivePhysics}[mode]
    assert specs == physics.specs
    assert ("kappa_v" in specs) == (mode == "primitive")
    assert ("imbalance_release" in specs) == (imbalance == "held")


# ----------------------------------------------------------------------------- day-mean output
def _day_mean_case(imbalance: str = "free"):
    """(grid, config keywords, n substeps, substep s, state, forcing) in float64 on a 12 deg
    world with coasts and the currents (to 1.5 m/s) and fronts of `smooth_state`."""
    from neuralogcm_jax.layout import Forcing
    from neuralogcm_jax.testing import coastline_wet_mask, smooth_state

    g = Grid.regular(12.0, depth=[10.0, 60.0])
    g = g.with_wet(coastline_wet_mask(g))
    st = OceanState(*(jnp.asarray(x, jnp.float64) for x in smooth_state(g, 1.5, np.float64)))
    phi = np.deg2rad(g.lat)[:, None] + 0 * g.lon[None, :]
    forcing = Forcing(jnp.asarray(8.0 * np.cos(3 * phi)), jnp.asarray(2.0 * np.sin(phi)),
                      jnp.asarray(273.15 + 25.0 * np.cos(phi) ** 2),
                      jnp.asarray(101325.0 + 0 * phi))
    dt = 1800.0
    return g, dict(max_substep_s=dt, imbalance=imbalance), 4, dt, st, forcing


@pytest.mark.parametrize("imbalance", ["free", "held"])
def test_day_mean_output_is_the_mean_of_the_states_after_each_substep(imbalance):
    """`output: day_mean` returns the mean of the n states a step passes through; each of them
    is the end state of a step of k substeps of the same length from the same start (the held
    pressure gradient and the held imbalance are evaluated from the start either way), so the mean of those n end states is the claim, to round-off."""
    g, kw, n, dt, st, forcing = _day_mean_case(imbalance)
    mean_phys = make_physics(g, PhysicsConfig(step_s=n * dt, output="day_mean", **kw))
    assert (mean_phys.n_substeps, mean_phys.dt_substep_s) == (n, dt)
    coeffs = {k: jnp.asarray(s.default, jnp.float64) for k, s in mean_phys.specs.items()}
    got = mean_phys.day_step(coeffs, st, forcing)
    ends = []
    for k in range(1, n + 1):
        ph = make_physics(g, PhysicsConfig(step_s=k * dt, output="end", **kw))
        assert (ph.n_substeps, ph.dt_substep_s) == (k, dt)
        ends.append(ph.day_step(coeffs, st, forcing))
    wet = g.wet
    for name in ("u", "v", "T", "S", "ssh"):
        want = np.mean([np.asarray(getattr(e, name)) for e in ends], axis=0)
        have = np.asarray(getattr(got, name))
        m = wet[0] if name == "ssh" else wet
        scale = float(np.abs(want[m]).max())
        np.testing.assert_allclose(have[m], want[m], rtol=0, atol=1e-12 * max(scale, 1.0),
                                   err_msg=name)
        # not trivially the end state: the day moved the currents
        if name in ("u", "v"):
            assert float(np.abs(np.asarray(getattr(ends[-1], name)) - have)[m].max()) > 1e-4
        np.testing.assert_array_equal(have[~m], np.asarray(getattr(st, name))[~m])  # land kept


def test_day_mean_of_an_inertial_oscillation_is_the_discrete_average_of_the_rotation():
    """A uniform current on an f-plane turns by f dt per substep; the day mean of the states
    after each substep is ``W0 (1/n) sum_i exp(-i f i dt)`` (W = u + i v), whose modulus
    ``|sin(n f dt / 2) / (n sin(f dt / 2))|`` is what is left of the current's size."""
    f0, n, dt = 1.0e-4, 24, 3600.0
    g = Grid.cartesian(8, 8, 50e3, 50e3, depth=[20.0], f0=f0, periodic_x=True)
    ph = make_physics(g, PhysicsConfig(step_s=n * dt, max_substep_s=dt, output="day_mean",
                                       pressure_gradient="none"))
    assert ph.n_substeps == n
    shape = (1, 8, 8)
    st = OceanState(jnp.full(shape, 0.3, jnp.float64), jnp.full(shape, -0.1, jnp.float64),
                    jnp.full(shape, 10.0, jnp.float64), jnp.full(shape, 35.0, jnp.float64),
                    jnp.zeros((8, 8), jnp.float64))
    out = ph.day_step({"nu_m": jnp.float64(5e4), "nu_t": jnp.float64(1e3)}, st, None)
    w0 = 0.3 - 0.1j
    want = w0 * np.mean(np.exp(-1j * f0 * dt * np.arange(1, n + 1)))
    np.testing.assert_allclose(np.asarray(out.u), want.real, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.v), want.imag, rtol=1e-12)
    shrink = abs(np.sin(n * f0 * dt / 2) / (n * np.sin(f0 * dt / 2)))
    assert abs(want) == pytest.approx(abs(w0) * shrink, rel=1e-12) and shrink < 0.8


def test_unknown_output_and_primitive_day_mean_are_named():
    with pytest.raises(ConfigError, match="physics.output must be 'end' or 'day_mean', got 'mean'"):
        PhysicsConfig(output="mean")
    with pytest.raises(ConfigError, match="day_mean is paper mode's only"):
        PhysicsConfig(mode="primitive", output="day_mean")
