"""Primitive mode's barotropic mode over the real sea floor (`PrimitiveTerms.barotropic_depth`
"sea_floor", issue 15): a passive layer below the deepest level carries the depth-mean flow the
levels cannot hold, so gravity waves travel at sqrt(g H_sea_floor) and f/H is the real ocean's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neuralogcm_jax.errors import ConfigError, GridError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OceanState
from neuralogcm_jax.physics import PhysicsConfig, make_physics
from neuralogcm_jax.physics.primitive import PRIMITIVE_COEFFICIENTS, PrimitiveEquation, PrimitiveTerms

G = 9.81
LEVELS = (5.0, 15.0, 35.0, 75.0, 150.0)  # the column holds 187.5 m


def coefficients(**values):
    out = {k: s.default for k, s in PRIMITIVE_COEFFICIENTS.items()}
    out.update(values)
    return {k: jnp.asarray(v, jnp.float64) for k, v in out.items()}


def physics(grid, substeps=1, **terms):
    cfg = PhysicsConfig(mode="primitive", min_substeps=substeps,
                        primitive=PrimitiveTerms(**terms))
    return make_physics(grid, cfg)


def equation(phys, coeffs):
    geo = phys.geometry(jnp.float64)
    return PrimitiveEquation.from_coefficients(geo, coeffs, phys.terms, phys.eos,
                                               phys.n_barotropic, phys.dt_barotropic_s, phys.specs)


def channel(floor_m: float, nx: int = 64, dx: float = 50e3) -> Grid:
    """A periodic f = 0 channel, 3 rows of `nx` cells, the 5 levels above a flat sea floor."""
    g = Grid.cartesian(nx, 3, dx, dx, depth=LEVELS, f0=0.0, periodic_x=True)
    return g.with_sea_floor(np.full(g.shape, floor_m))


def _period_s(barotropic_depth: str, substeps: int, n_steps: int) -> float:
    """Period (s) of the gravest standing wave of the 4000 m channel, from the zero crossings
    of eta in its first column over `n_steps` substeps (`substeps` a day), no friction."""
    grid = channel(4000.0)
    phys = physics(grid, substeps=substeps, barotropic_depth=barotropic_depth)
    dt = phys.dt_substep_s
    eq = equation(phys, coefficients(nu_m=1.0, nu_t=1.0, bottom_drag=0.0))
    x = (np.arange(grid.shape[1]) + 0.5) / grid.shape[1]
    eta0 = 0.01 * np.cos(2 * np.pi * x)[None].repeat(3, 0)
    z = jnp.zeros((grid.n_levels,) + grid.shape)
    st = OceanState(u=z, v=z, T=z + 10.0, S=z + 35.0, ssh=jnp.asarray(eta0))

    def step(s, _):
        s = eq.split_explicit_step(s, None, dt)
        return s, s.ssh[1, 0]

    _, eta = jax.jit(lambda s: jax.lax.scan(step, s, None, length=n_steps))(st)
    eta = np.concatenate([[eta0[1, 0]], np.asarray(eta)])
    t = dt * np.arange(eta.size)
    i = np.nonzero(np.sign(eta[1:]) != np.sign(eta[:-1]))[0]
    crossings = t[i] - eta[i] * dt / (eta[i + 1] - eta[i])  # linear interpolation
    assert crossings.size >= 3
    return 2.0 * (crossings[-1] - crossings[0]) / (crossings.size - 1)


@pytest.mark.parametrize("barotropic_depth,depth,substeps,n_steps", [
    ("sea_floor", 4000.0, 144, 60), ("levels", 187.5, 24, 120)])
def test_gravity_waves_travel_at_the_speed_of_the_barotropic_depth(barotropic_depth, depth,
                                                                    substeps, n_steps):
    """The gravest standing wave of a 3200 km periodic channel over a 4000 m sea floor has the
    period L / sqrt(g H) of that sea floor with "sea_floor" (4.5 h), of the levels' 187.5 m
    column with "levels" (20.7 h), within 1 %."""
    period = _period_s(barotropic_depth, substeps, n_steps)
    exact = 64 * 50e3 / np.sqrt(G * depth)
    assert abs(period / exact - 1) < 0.01, (period, exact)


@pytest.fixture(scope="module")
def world6():
    """The embedded world at 6 deg x 23 levels (its ETOPO5 sea floor: to 5600 m under the
    levels' 643 m) with a stratified, sloshing start: its climatology, a 20 cm SSH tilt."""
    from neuralogcm_jax.data.world import load_world

    world = load_world(6.0, 23)
    grid = world.grid
    st = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), world.initial_state(np.float64))
    lat = jnp.asarray(grid.lat)[:, None]
    st = st._replace(ssh=0.2 * jnp.sin(jnp.deg2rad(lat)) * jnp.cos(
        jnp.deg2rad(jnp.asarray(grid.lon))[None]) * grid.wet[0])
    return world, st


def test_the_levels_heat_and_salt_change_only_by_what_crosses_their_floor(world6):
    """Two days of substeps over the real sea floor, no surface fluxes, float64: the total volume
    (eta's area integral) is kept to 1e-12 of the ocean's, and the levels' heat and salt
    contents change by exactly the water the passive layer exchanges with the deepest level,
    carrying that level's T and S (to 1e-10 of the exchanged content); T and S stay within
    their initial ranges. Measured: 2.5e-5 of the ocean's volume crossed the floors, volume
    kept to 4e-22, heat and salt budgets closed to 7e-12 and 6e-12 of the exchanged content
    (itself 7e-5 of the heat content)."""
    world, st = world6
    grid = world.grid
    phys = physics(grid, barotropic_depth="sea_floor")
    eq = equation(phys, coefficients())
    geo = eq.geo
    wet = jnp.asarray(grid.wet)
    area = jnp.asarray(grid.area)[:, None]
    dt = phys.dt_substep_s

    def contents(s):
        h = geo.dz * (1.0 + s.ssh / geo.bt_depth) * wet * area
        return jnp.sum(h * s.T), jnp.sum(h * s.S), jnp.sum(s.ssh * area * wet[0])

    def substep(s, _):
        u, v, slow = eq.baroclinic_momentum(s, dt)
        *_, w_floor = eq.layer_transports(u, v, s.ssh, dt, slow)
        up = dt * geo.bottom * w_floor * area  # m^3 into each deepest level
        return eq.split_explicit_step(s, None, dt), (
            jnp.sum(up * s.T), jnp.sum(up * s.S), jnp.sum(jnp.abs(up)),
            jnp.sum(jnp.abs(up * s.T)), jnp.sum(jnp.abs(up * s.S)))

    end, (heat_in, salt_in, moved, heat_abs, salt_abs) = jax.jit(
        lambda s: jax.lax.scan(substep, s, None, 2 * phys.n_substeps))(st)
    (h0, s0, v0), (h1, s1, v1) = contents(st), contents(end)
    ocean_volume = float(jnp.sum(geo.bt_depth * area * wet[0]))
    assert float(jnp.sum(moved)) > 1e-6 * ocean_volume  # water did cross the floor
    assert abs(float(v1 - v0)) < 1e-12 * ocean_volume
    assert abs(float(h1 - h0 - jnp.sum(heat_in))) < 1e-10 * float(jnp.sum(heat_abs))
    assert abs(float(s1 - s0 - jnp.sum(salt_in))) < 1e-10 * float(jnp.sum(salt_abs))
    w = grid.wet
    for new, old in ((end.T, st.T), (end.S, st.S)):
        assert float(np.asarray(new)[w].min()) >= float(np.asarray(old)[w].min()) - 1e-9
        assert float(np.asarray(new)[w].max()) <= float(np.asarray(old)[w].max()) + 1e-9


def test_bad_sea_floor_settings_are_named():
    g = Grid.cartesian(4, 3, 1e4, 1e4, depth=LEVELS)
    with pytest.raises(ConfigError, match="barotropic_depth must be one of .* got 'etopo'"):
        PrimitiveTerms(barotropic_depth="etopo")
    with pytest.raises(ConfigError, match="barotropic_depth is 'sea_floor' but the grid has no"):
        physics(g, barotropic_depth="sea_floor")
    with pytest.raises(ConfigError, match="barotropic_depth must be one of"):
        PhysicsConfig(mode="primitive", primitive={"barotropic_depth": "deep"})
    with pytest.raises(GridError, match=r"sea floor depth has shape \(3, 5\), expected"):
        g.with_sea_floor(np.ones((3, 5)))
    bad = np.full(g.shape, 100.0)
    bad[1, 2] = np.nan
    with pytest.raises(GridError, match="finite and >= 0 in ocean cells: nan in row 1, column 2"):
        g.with_sea_floor(bad)
    bad[1, 2] = -5.0
    with pytest.raises(GridError, match="-5.0 in row 1, column 2"):
        g.with_sea_floor(bad)
    # A sea floor above the levels' own bottom changes nothing: the levels' column is kept.
    shallow = physics(g.with_sea_floor(np.full(g.shape, 10.0)), barotropic_depth="sea_floor")
    geo = shallow.geometry(jnp.float64)
    assert np.allclose(np.asarray(geo.bt_depth), np.asarray(geo.col_depth))
    assert float(jnp.abs(geo.passive).max()) == 0.0


def test_the_sea_floor_travels_with_the_model_arrays():
    """A checkpoint's grid entry keeps the sea floor (`checkpointing.model_arrays`,
    `grid_from_arrays`); a damaged one is a CheckpointError naming where; a grid without one
    stores none."""
    from neuralogcm_jax.checkpointing import grid_from_arrays, model_arrays
    from neuralogcm_jax.checkpointing.metadata import grid_fingerprint
    from neuralogcm_jax.data.normalize import Stats
    from neuralogcm_jax.errors import CheckpointError
    from neuralogcm_jax.layout import ChannelLayout

    g0 = Grid.regular(30.0, depth=LEVELS)
    g = g0.with_sea_floor(np.linspace(50.0, 6000.0, g0.lat.size * g0.lon.size).reshape(g0.shape))
    layout = ChannelLayout(LEVELS)
    arrays = model_arrays(g, Stats.identity(g.wet, layout))["grid"]
    back = grid_from_arrays(arrays, {"grid": grid_fingerprint(g)}, "ck/model/grid")
    np.testing.assert_array_equal(back.sea_floor_m, g.sea_floor_m)
    bad = dict(arrays, sea_floor_m=-arrays["sea_floor_m"])
    with pytest.raises(CheckpointError, match="ck/model/grid: the stored grid is invalid: sea floor"):
        grid_from_arrays(bad, {}, "ck/model/grid")
    assert "sea_floor_m" not in model_arrays(g0, Stats.identity(g0.wet, layout))["grid"]


def _trw_frequency(barotropic_depth: str) -> tuple[float, float]:
    """Phase speed of a balanced mode ``eta = a sin(l y) cos(k x)`` over a sea floor shoaling
    northward as ``H0 exp(-(y - y_mid) / L_H)`` (f-plane, periodic in x, walls north and south,
    the levels' 187.5 m flat): its measured and quasi-geostrophic topographic Rossby frequency
    ``(f / L_H) k / (k^2 + l^2 + f^2 / (g H0))`` (rad/s; measured > 0 moving east)."""
    nx, ny, dx = 32, 20, 50e3
    f0, h0, lh = 1e-4, 3000.0, 2e6
    g0 = Grid.cartesian(nx, ny, dx, dx, depth=LEVELS, f0=f0, periodic_x=True)
    y, x = (np.arange(ny) + 0.5) * dx, (np.arange(nx) + 0.5) * dx
    grid = g0.with_sea_floor(np.broadcast_to(h0 * np.exp(-(y - ny * dx / 2) / lh)[:, None],
                                             g0.shape))
    phys = physics(grid, substeps=24, barotropic_depth=barotropic_depth)
    dt = phys.dt_substep_s
    eq = equation(phys, coefficients(nu_m=1.0, nu_t=1.0, bottom_drag=0.0))
    k, l = 2 * np.pi / (nx * dx), np.pi / (ny * dx)
    sy, cy, ckx, skx = np.sin(l * y)[:, None], np.cos(l * y)[:, None], np.cos(k * x), np.sin(k * x)
    a = 0.01
    eta = a * sy * ckx
    u = -(G / f0) * a * l * cy * ckx  # geostrophic: u = -(g / f) eta_y, v = (g / f) eta_x
    v = -(G / f0) * a * k * sy * skx
    L = grid.n_levels
    st = OceanState(u=jnp.asarray(np.broadcast_to(u, (L, ny, nx))),
                    v=jnp.asarray(np.broadcast_to(v, (L, ny, nx))),
                    T=jnp.full((L, ny, nx), 10.0), S=jnp.full((L, ny, nx), 35.0),
                    ssh=jnp.asarray(eta))
    n = 10 * phys.n_substeps

    def step(s, _):
        s = eq.split_explicit_step(s, None, dt)
        return s, s.ssh

    _, etas = jax.jit(lambda s: jax.lax.scan(step, s, None, length=n))(st)
    e = np.asarray(etas) * sy[None]
    phase = np.unwrap(np.arctan2((e * skx).sum((1, 2)), (e * ckx).sum((1, 2))))
    measured = np.polyfit(dt * np.arange(1, n + 1), phase, 1)[0]
    return measured, (f0 / lh) * k / (k * k + l * l + f0 * f0 / (G * h0))


def test_a_sloping_sea_floor_carries_topographic_rossby_waves():
    """f/H steering: over a sea floor shoaling northward from 3000 m (e-folding 2000 km), a
    balanced mode of a periodic f-plane channel travels west (shallow water on its right) at the
    quasi-geostrophic topographic Rossby wave's frequency within 2 % (measured 0.3 %, a period of
    9.5 days); with the levels' flat 187.5 m column it does not move."""
    measured, theory = _trw_frequency("sea_floor")
    assert measured < 0 and abs(-measured / theory - 1) < 0.02, (measured, theory)
    flat, _ = _trw_frequency("levels")
    assert abs(flat) < 1e-3 * theory, flat
