"""Claims about the models behind the `Forecaster` interface and the functional rollout API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from neuralogcm_jax import ConfigError, LayoutError
from neuralogcm_jax.calendar import doy_sequence, next_doy
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import (
    MODEL_NAMES,
    ModelConfig,
    NeuralOGCM,
    build_model,
    canonical_model_name,
    cast_model,
)
from neuralogcm_jax.rollout import make_rollout_fn, make_step_fn, rollout


def small_world(n_levels=2, res=10.0, seed=0):
    """A 18x36 (10 deg) world with a continent, seasonal climatology and realistic stds."""
    lay = ChannelLayout.with_levels(n_levels)
    g = Grid.regular(res, depth=lay.depths_m)
    wet = np.ones((n_levels,) + g.shape, bool)
    wet[:, 5:12, 8:14] = False  # a continent
    wet[1:, 12:14, 20:24] = False  # a shelf: shallower than level 1
    g = g.with_wet(wet)
    rng = np.random.default_rng(seed)
    n = lay.n_ocean
    phase = 2 * np.pi * np.arange(366) / 366
    lat = np.deg2rad(g.lat)[None, :, None]
    clim = np.zeros((366, n) + g.shape, np.float32)
    clim[:, lay.var_slice("T")] = (
        20 * np.cos(lat)[None] + 2 * np.sin(phase)[:, None, None, None]
    ).astype(np.float32)
    clim[:, lay.var_slice("S")] = 35.0
    clim[:, lay.var_slice("U")] = (0.2 * np.cos(3 * lat))[None]
    mean = np.zeros(lay.n_channels)
    std = np.ones(lay.n_channels)
    std[lay.var_slice("T")] = 0.6
    std[lay.var_slice("S")] = 0.3
    std[lay.var_slice("U")] = 0.15
    std[lay.var_slice("V")] = 0.11
    std[lay.channel("SSH")] = 0.06
    mean[n:] = [0.0, 0.2, 278.0, 101000.0]
    std[n:] = [5.4, 4.6, 21.5, 1300.0]
    stats = Stats.build(mean, std, clim, wet, lay)
    state = (rng.normal(size=(2, n) + g.shape) * stats.wet).astype(np.float32)
    forcing = rng.normal(size=(2, 6, 4) + g.shape).astype(np.float32)
    return g, stats, jnp.asarray(state), jnp.asarray(forcing)


def tiny(name, **kw):
    """Small network sizes so every model builds and runs in seconds."""
    from neuralogcm_jax.nn import NETWORKS

    cfg_cls = NETWORKS["ste" if name == "neuralogcm" else name][1]
    small = {
        "neuralogcm": dict(hid_channels=16, n_conv_blocks=4, n_attention_blocks=1, num_heads=2, norm_groups=4),
        "unet": dict(base_channels=8, channel_mults=(1, 2), norm_groups=4),
        "convlstm": dict(hid_channels=8, n_conv_blocks=4, num_layers=1, norm_groups=4),
        "simvp": dict(hid_S=8, hid_T=16, N_S=4, N_T=2, groups=2, norm_groups=4),
        "fourcastnet": dict(embed_dim=32, depth=1, num_blocks=4),
    }[name]
    net_cfg = cfg_cls(**small)
    key = "corrector" if name == "neuralogcm" else name
    return ModelConfig(name=name, **{key: net_cfg}, **kw)


def _corrector_params(m) -> list:
    """The corrector's `nnx.Param` variables, in graph order (the output head last)."""
    return [v for _, v in nnx.iter_graph(m.corrector) if isinstance(v, nnx.Param)]


def _fill(params: list, value) -> None:
    """Set each variable to ``value(i, current)``."""
    for i, v in enumerate(params):
        v[...] = value(i, v[...])


@pytest.fixture(scope="module")
def world():
    return small_world()


def test_model_names_follow_the_seed_flags():
    assert canonical_model_name("NeuralOGCM") == "neuralogcm"
    assert canonical_model_name("FourCastNet") == "fourcastnet"
    with pytest.raises(ConfigError, match="unknown model 'transformer'"):
        ModelConfig(name="transformer")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_97_to_93_channels_and_land_is_exactly_zero(world, name):
    g, stats, state, forcing = world
    m = build_model(tiny(name), g, stats, seed=1)
    x = jnp.concatenate([state, forcing[:, 0]], axis=1)
    assert x.shape[1] == 97 - 4 * (23 - 2)  # the same 97-channel layout with 2 levels
    out = m.step(state, forcing[:, 0], jnp.array([10, 200]))
    assert out.shape == state.shape
    assert bool(jnp.all(jnp.isfinite(out)))
    land = ~stats.wet
    assert bool(jnp.all(out[:, land] == 0.0))
    assert float(jnp.abs(out[:, stats.wet]).max()) > 0


def test_untrained_hybrid_equals_pure_physics_bit_for_bit(world):
    g, stats, state, forcing = world
    m = build_model(tiny("neuralogcm"), g, stats, seed=0)
    doy = jnp.array([30, 364])
    hybrid = m.step(state, forcing[:, 0], doy)
    physics = m.physics_tendency_step(state, forcing[:, 0], doy, next_doy(doy))
    physics = jnp.where(m.wet[...] > 0, physics, 0.0)
    np.testing.assert_array_equal(np.asarray(hybrid), np.asarray(physics))
    # ... and the physics did something: the state moved.
    assert float(jnp.abs(hybrid - state).max()) > 1e-3


@pytest.mark.parametrize("sees", [False, True])
def test_corrector_sees_the_physics_forecast_only_when_asked(world, sees):
    """With `corrector_sees_physics` the corrector's input holds the physics' forecast: its
    output (hybrid minus physics) changes with a physics coefficient; without, it cannot. The
    untrained hybrid still equals its physics bit for bit."""
    g, stats, state, forcing = world
    doy = jnp.array([30, 364])
    corrections = []
    for nu_m in (5e4, 1.5e5):
        m = build_model(tiny("neuralogcm", corrector_sees_physics=sees,
                            physics_coefficients={"nu_m": nu_m}), g, stats, seed=0)
        physics = jnp.where(m.wet[...] > 0, m.physics_tendency_step(
            state, forcing[:, 0], doy, next_doy(doy)), 0.0)
        np.testing.assert_array_equal(np.asarray(m.step(state, forcing[:, 0], doy)),
                                      np.asarray(physics))
        # give the zero-initialised last layer weights, the same in both models
        params = nnx.state(m.corrector, nnx.Param)
        rng = np.random.default_rng(3)
        params = jax.tree.map(lambda p: p + 1e-2 * rng.normal(size=p.shape).astype(p.dtype)
                              if not np.any(np.asarray(p)) else p, params)
        nnx.update(m.corrector, params)
        corrections.append(np.asarray(m.step(state, forcing[:, 0], doy) - physics))
    assert np.abs(corrections[0]).max() > 1e-4
    changed = np.abs(corrections[1] - corrections[0]).max()
    if sees:
        assert changed > 1e-4
    else:  # (hybrid - physics) recovers the correction to round-off only
        assert changed < 1e-5


def test_rollout_is_one_compiled_scan_and_starts_like_the_step_function(world):
    g, stats, state, forcing = world
    m = build_model(tiny("unet"), g, stats, seed=0)
    step_fn, variables = make_step_fn(m)
    doy0 = jnp.array([100, 100])
    by_hand = [state]
    for k in range(3):
        by_hand.append(step_fn(variables, by_hand[-1], forcing[:, k], doy0 + k))
    traj = rollout(m, state, forcing, 3, doy0=doy0, start_with_input=True)
    assert traj.shape == (2, 4) + state.shape[1:]
    for k in range(4):
        np.testing.assert_allclose(np.asarray(traj[:, k]), np.asarray(by_hand[k]), atol=1e-5)

    # compile time independent of steps: the scan body is traced once, whatever the length.
    fn, variables = make_rollout_fn(m)
    doys = jnp.zeros((2, 7), jnp.int32)
    eqns = [len(jax.make_jaxpr(fn)(variables, state, forcing[:, :s], doys[:, : s + 1]).eqns)
            for s in (2, 6)]
    assert eqns[0] == eqns[1]
    # and a second call with the same shapes does not trace again
    traces = []
    jitted = jax.jit(lambda v, s, f, d: (traces.append(1), fn(v, s, f, d))[1])
    jitted(variables, state, forcing[:, :5], doys[:, :6])
    jitted(variables, state * 0.5, forcing[:, :5], doys[:, :6])
    assert len(traces) == 1


# Slow-only (about 40 s): in the default set, tests/test_gradients.py checks the float32
# gradients of the one- and five-day training loss (a rollout through this API) at the demo's
# configuration against float64 central differences, and the slow gradient matrix covers the
# seed's form in float32 as well.
@pytest.mark.slow
@pytest.mark.parametrize("physics", ["seed", "default"])
def test_gradient_through_a_4_step_hybrid_rollout_matches_finite_differences(physics):
    """float64 autodiff through 4 hybrid steps against central differences (relative 1e-4) in
    six parameters, each at a random element whose gradient is at least a tenth of its leaf's
    largest. Elements with tiny gradients are skipped because their central difference is
    round-off: for the default physics one element with a gradient 1e-2 of its leaf's largest
    (2e-6 against a loss of 1.2) gave relative differences of +1.4e-4, +1.1e-4, -8.9e-5, -8.9e-5
    at h = 1e-3 .. 1e-6, and -3.8e-5 instead of -8.9e-5 at h = 1e-5 when the loss was not jitted
    (the loss's own float64 rounding, ~1e-14, over 2h); it failed the 1e-4 bar on one machine
    and passed on another."""
    from neuralogcm_jax.physics import PhysicsConfig

    g, stats, state, forcing = small_world(n_levels=1, res=15.0)
    kw = {"physics": PhysicsConfig.seed_paper()} if physics == "seed" else {}
    m = build_model(tiny("neuralogcm", dtype="float64", **kw), g, stats, seed=0)
    cast_model(m, jnp.float64)
    # Give the zero-initialised head some weight so gradients reach the whole corrector.
    _fill(_corrector_params(m)[-2:], lambda i, x: 1e-2 * jax.random.normal(
        jax.random.key(i), x.shape, jnp.float64))
    x0 = state.astype(jnp.float64)
    forc = forcing[:, :4].astype(jnp.float64)
    doys = jnp.tile(jnp.arange(5, dtype=jnp.int32)[None] + 40, (2, 1))
    fn, _ = make_rollout_fn(m)
    params = nnx.state(m, nnx.Param)
    rest = nnx.state(m, nnx.Not(nnx.Param))

    @jax.jit  # one compilation for the gradient's forward pass and all twelve evaluations
    def loss(p):
        traj = fn(nnx.merge_state(rest, p), x0, forc, doys)
        return jnp.mean(traj**2)

    grads = jax.jit(jax.grad(loss))(params)
    leaves, treedef = jax.tree.flatten(params)
    gleaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(gl))) for gl in gleaves)
    rng = np.random.default_rng(0)
    checked = 0
    for li in rng.permutation(len(leaves))[:6]:
        leaf = np.asarray(leaves[li])
        g = np.abs(np.asarray(gleaves[li]))
        assert g.max() > 0, li  # the gradient reaches every checked leaf
        well_conditioned = np.argwhere(g >= 0.1 * g.max())
        idx = tuple(well_conditioned[rng.integers(0, len(well_conditioned))])
        h = 1e-5 * max(1.0, abs(float(leaf[idx])))
        def at(delta):
            new = [jnp.asarray(x) for x in leaves]
            new[li] = new[li].at[idx].add(delta)
            return float(loss(jax.tree.unflatten(treedef, new)))
        fd = (at(h) - at(-h)) / (2 * h)
        ad = float(np.asarray(gleaves[li])[idx])
        assert ad == pytest.approx(fd, rel=1e-4, abs=1e-10), (li, idx)
        checked += 1
    assert checked == 6


def test_bad_inputs_are_named(world):
    g, stats, state, forcing = world
    m = build_model(tiny("simvp"), g, stats, seed=0)
    with pytest.raises(LayoutError, match=r"expects \[batch, 9, 18, 36\]"):
        m.step(state[:, :5], forcing[:, 0], 0)
    with pytest.raises(LayoutError, match="shorter than steps=10"):
        rollout(m, state, forcing, 10)
    other = Grid.regular(15.0, depth=stats.layout.depths_m)
    with pytest.raises(LayoutError, match="does not fit the statistics"):
        build_model(tiny("unet"), other, stats)


def test_next_day_of_year_wraps_at_year_end():
    np.testing.assert_array_equal(next_doy(jnp.array([0, 58, 363, 364, 365])), [1, 59, 364, 0, 0])
    seq = doy_sequence(jnp.array([363, 365], jnp.int32), 3)
    np.testing.assert_array_equal(seq, [[363, 364, 0, 1], [365, 0, 1, 2]])


def test_model_config_is_hashable_and_its_coefficients_frozen():
    a = ModelConfig(physics_coefficients={"nu_t": 1e3, "nu_m": 5e4})
    b = ModelConfig(physics_coefficients={"nu_m": 5e4, "nu_t": 1e3})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.physics_coefficients["nu_m"] = 1.0


def test_hybrid_holds_its_physics_coefficients_as_parameters(world):
    g, stats, *_ = world
    m = build_model(tiny("neuralogcm", physics_coefficients={"nu_m": 2e4}), g, stats)
    assert isinstance(m, NeuralOGCM)
    si = m.physics_coefficients_si()
    assert float(si["nu_m"]) == pytest.approx(2e4, rel=1e-5)
    assert float(si["nu_t"]) == pytest.approx(m.physics.specs["nu_t"].default, rel=1e-5)
    names = {str(p[-1]) for p, _ in nnx.to_flat_state(nnx.state(m.physics_params, nnx.Param))}
    assert names >= {"nu_m", "nu_t"}


def test_a_trajectory_becomes_an_xarray_dataset_in_physical_units(world):
    xr = pytest.importorskip("xarray")
    from neuralogcm_jax.eval.xr import to_xarray

    g, stats, state, forcing = world
    traj = np.asarray(state[0])[None].repeat(3, axis=0)
    doys = np.array([10, 11, 12])
    ds = to_xarray(traj, stats, g, doys, time0="2020-01-11")
    assert isinstance(ds, xr.Dataset)
    assert set(ds.data_vars) == {"S", "U", "V", "T", "SSH"}
    assert ds["T"].dims == ("time", "depth", "lat", "lon") and ds.sizes["depth"] == 2
    assert str(ds.time.values[0])[:10] == "2020-01-11"
    lay = stats.layout
    c = lay.channel("T", 1)
    j, i = np.argwhere(stats.wet[c])[0]
    expect = traj[0, c, j, i] * stats.std[c] + stats.mean[c] + stats.clim_at(10)[c, j, i]
    assert float(ds["T"][0, 1, j, i]) == pytest.approx(float(expect), rel=1e-6)
    assert np.isnan(float(ds["T"][0, 0, 6, 10]))  # land (the continent) is NaN


def _damping_t_gradient(m, state, forcing, doy):
    """For the damping tests: ``loss_at(model, raw)`` (the one-step mean-square loss with
    ``climate_damping_T`` set to `raw`, jitted), the rate's raw value and autodiff's gradient of
    the loss with respect to it."""

    def loss(mm):
        return jnp.mean(mm.step(state, forcing[:, 0], doy) ** 2)

    @nnx.jit
    def loss_at(mm, raw_t):
        mm.physics_params.climate_damping_T[...] = raw_t
        return loss(mm)

    raw0 = jnp.asarray(m.physics_params.climate_damping_T[...])
    ad = np.asarray(nnx.jit(nnx.grad(loss))(m)["physics_params"]["climate_damping_T"][...])
    return loss_at, raw0, ad


# Slow-only: the shipped configurations damp per level, whose test (below) makes the same claims
# per level in the default run.
@pytest.mark.slow
def test_climate_damping_scales_each_variables_anomaly_and_learns_through_its_rate(world):
    """`climate_damping_days`: the physics' forecast anomaly of each variable is multiplied by
    exp(-r_v * 86400 s), with r_v a learnable coefficient under physics_params (one per variable),
    and nothing else changes; its gradient agrees with central differences; without it the
    model has only the physics core's coefficients."""
    g, stats, state, forcing = world
    doy = jnp.array([30, 364])
    plain = build_model(tiny("neuralogcm"), g, stats, seed=0)
    assert set(plain.physics_params.specs) == set(plain.physics.specs)
    rates = {"S": 1 / 400, "U": 1 / 20, "V": 1 / 10, "T": 1 / 90, "SSH": 1 / 5}  # 1/day
    m = build_model(tiny("neuralogcm", climate_damping_days=30.0, physics_coefficients={
        f"climate_damping_{v}": r / 86400 for v, r in rates.items()}), g, stats, seed=0)
    lay = stats.layout
    undamped = plain.physics_tendency_step(state, forcing[:, 0], doy, next_doy(doy))
    damped = m.physics_tendency_step(state, forcing[:, 0], doy, next_doy(doy))
    for v, r in rates.items():
        s = lay.var_slice(v)
        np.testing.assert_allclose(np.asarray(damped[:, s]),
                                   np.asarray(undamped[:, s]) * np.exp(-r), rtol=2e-6, atol=1e-7)
    # untrained, the hybrid is its (damped) physics
    np.testing.assert_array_equal(
        np.asarray(m.step(state, forcing[:, 0], doy)),
        np.asarray(jnp.where(m.wet[...] > 0, damped, 0.0)))

    # the rate is learnable: d loss / d raw rate against central differences (float32)
    loss_at, raw0, ad = _damping_t_gradient(m, state, forcing, doy)
    ad = float(ad)
    h = 1e-2
    fd = (float(loss_at(m, raw0 + h)) - float(loss_at(m, raw0 - h))) / (2 * h)
    loss_at(m, raw0)
    assert abs(ad) > 1e-4
    assert ad == pytest.approx(fd, rel=1e-2)

    with pytest.raises(ConfigError, match="model.climate_damping_days"):
        ModelConfig(climate_damping_days=0.0)
    with pytest.raises(ConfigError, match="model.climate_damping_days"):
        ModelConfig(climate_damping_days=-5)
    with pytest.raises(ConfigError, match="model.climate_damping_days"):
        ModelConfig(climate_damping_days=0.5)  # a rate of 2/day, above its bound of 1/day


def test_per_level_climate_damping_scales_each_levels_anomaly_by_its_own_rate(world):
    """`climate_damping_per_level`: one rate per level for S, U, V and T (one for SSH), each
    channel's anomaly multiplied by its own level's factor; each level's rate gets its own
    gradient (central differences, float32); per-level without a damping is refused."""
    g, stats, state, forcing = world
    doy = jnp.array([30, 364])
    lay = stats.layout
    n_lev = g.n_levels
    plain = build_model(tiny("neuralogcm"), g, stats, seed=0)
    m = build_model(tiny("neuralogcm", climate_damping_days=30.0, climate_damping_per_level=True),
                    g, stats, seed=0)
    pp = m.physics_params
    for v in ("S", "U", "V", "T"):
        assert getattr(pp, f"climate_damping_{v}")[...].shape == (n_lev,)
    assert getattr(pp, "climate_damping_SSH")[...].shape == ()
    # distinct rates per level: 1/(5 days) ... 1/(200 days), a different order per variable
    days = {v: np.geomspace(5.0, 200.0, n_lev)[::(1 if i % 2 == 0 else -1)]
            for i, v in enumerate(("S", "U", "V", "T"))}
    for v, d in days.items():
        spec = pp.specs[f"climate_damping_{v}"]
        getattr(pp, f"climate_damping_{v}")[...] = jnp.asarray(
            np.stack([spec.raw_init(1.0 / (x * 86400)) for x in d]), jnp.float32)
    undamped = plain.physics_tendency_step(state, forcing[:, 0], doy, next_doy(doy))
    damped = m.physics_tendency_step(state, forcing[:, 0], doy, next_doy(doy))
    for v, d in days.items():
        s = lay.var_slice(v)
        factor = np.exp(-1.0 / d)[None, :, None, None]
        np.testing.assert_allclose(np.asarray(damped[:, s]), np.asarray(undamped[:, s]) * factor,
                                   rtol=2e-5, atol=1e-7)
    s = lay.var_slice("SSH")
    np.testing.assert_allclose(np.asarray(damped[:, s]), np.asarray(undamped[:, s])
                               * np.exp(-1.0 / 30.0), rtol=2e-5, atol=1e-7)

    # each level's rate is learnable on its own: d loss / d raw rate of T at two levels
    loss_at, raw0, ad = _damping_t_gradient(m, state, forcing, doy)
    assert ad.shape == (n_lev,) and np.all(np.isfinite(ad))
    h = 1e-2
    for k in (0, n_lev - 1):
        e = jnp.zeros(n_lev, raw0.dtype).at[k].set(h)
        fd = (float(loss_at(m, raw0 + e)) - float(loss_at(m, raw0 - e))) / (2 * h)
        assert abs(ad[k]) > 1e-6
        assert ad[k] == pytest.approx(fd, rel=2e-2)
    loss_at(m, raw0)

    with pytest.raises(ConfigError, match="model.climate_damping_per_level"):
        ModelConfig(climate_damping_per_level=True)  # no damping to give rates per level
    with pytest.raises(ConfigError, match="model.climate_damping_per_level"):
        ModelConfig(climate_damping_days=30.0, climate_damping_per_level="yes")


@pytest.mark.parametrize("mode", ["paper", "primitive"])
def test_a_physics_coefficient_outside_its_range_is_named(world, mode):
    """An initial coefficient above its stability bound (which the integrator would silently
    clip), at or below zero, or not a number: one ConfigError naming the key and the range; a
    value at the bound is taken as given."""
    from neuralogcm_jax.physics import PhysicsConfig

    g, stats, _, _ = world
    physics = PhysicsConfig(mode=mode)
    name, bound = ("nu_m", "250000") if mode == "paper" else ("convective_kappa", "10")
    for bad in (1e9, 0.0, -1.0, float("nan"), "fast"):
        # refused when the configuration is made, before any data is read or model built
        with pytest.raises(ConfigError, match=rf"model\.physics_coefficients\.{name} must be "
                           rf"in \(0, {bound}\]"):
            tiny("neuralogcm", physics=physics, physics_coefficients={name: bad})
    at_bound = float(bound)
    m = build_model(tiny("neuralogcm", physics=physics, physics_coefficients={name: at_bound}),
                    g, stats, seed=0)
    assert float(m.physics_coefficients_si()[name]) == pytest.approx(at_bound, rel=1e-5)


def test_pure_physics_is_the_hybrid_with_a_zero_corrector_bit_for_bit(world):
    """`PurePhysics.of(hybrid)` (the evaluation's pure-physics reference) never runs the
    corrector and rolls out exactly like the hybrid whose corrector parameters are all zero; the
    hybrid itself is left as it was."""
    from neuralogcm_jax.model import PurePhysics

    g, stats, state, forcing = world
    m = build_model(tiny("neuralogcm", climate_damping_days=30.0), g, stats, seed=0)
    _fill(_corrector_params(m), lambda i, x: 1e-2 * jax.random.normal(  # a corrector that acts
        jax.random.key(i), x.shape, x.dtype))
    before = np.asarray(rollout(m, state, forcing, 3, 40))
    pure = PurePhysics.of(m)
    zeroed = nnx.clone(m)
    _fill(_corrector_params(zeroed), lambda i, x: jnp.zeros_like(x))
    a = np.asarray(rollout(pure, state, forcing, 3, 40))
    b = np.asarray(rollout(zeroed, state, forcing, 3, 40))
    np.testing.assert_array_equal(a, b)
    assert float(np.abs(a - before).max()) > 1e-3  # the corrector mattered in the hybrid
    np.testing.assert_array_equal(np.asarray(rollout(m, state, forcing, 3, 40)), before)
    assert type(m) is NeuralOGCM and pure.name == "neuralogcm"
    with pytest.raises(ConfigError, match="pure physics needs a NeuralOGCM, got Baseline"):
        PurePhysics.of(build_model(tiny("unet"), g, stats, seed=0))
