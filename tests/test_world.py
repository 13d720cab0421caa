"""The embedded default world: a plausible ocean on the 1.5 deg grid and its coarsenings."""

import numpy as np
import pytest

from neuralogcm_jax.data.world import SURFACE_VARIABLES, load_world
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M


@pytest.fixture(scope="module")
def world():
    return load_world()


def test_grid_is_the_data_grid(world):
    g = world.grid
    assert g.shape == (120, 240) and g.n_levels == 23
    assert g.north_to_south
    np.testing.assert_allclose(g.lon[[0, -1]], [0.75, 359.25])
    np.testing.assert_allclose(g.depth, GLORYS23_DEPTHS_M)


def test_ocean_covers_about_seven_tenths_of_the_globe(world):
    assert 0.66 <= world.grid.ocean_fraction <= 0.72


def test_surface_temperature_is_oceanic(world):
    t0 = world.T_clim[0][world.grid.wet[0]]
    assert t0.min() >= -2.0 and t0.max() <= 31.0
    # Warm pool and polar seas both present.
    assert t0.max() > 27.0 and t0.min() < 0.0


def test_every_wet_cell_has_finite_tracers(world):
    wet = world.grid.wet
    assert np.isfinite(world.T_clim[wet]).all() and np.isfinite(world.S_clim[wet]).all()
    s = world.S_clim[wet]
    assert s.min() > 2.0 and s.max() < 42.0


def test_wet_area_shrinks_with_depth(world):
    g = world.grid
    area = (g.wet * g.area[None, :, None]).sum(axis=(1, 2))
    assert np.all(np.diff(area) <= 0)
    assert area[-1] < area[0]
    # A wet cell's column is wet all the way up (no buried ocean).
    assert np.all(g.wet[1:] <= g.wet[:-1])


def test_mediterranean_reaches_the_atlantic(world):
    from neuralogcm_jax.data.world import connected_components

    g = world.grid
    labels, _ = connected_components(g.wet[0])
    row = lambda lat: int(np.argmin(abs(g.lat - lat)))  # noqa: E731
    col = lambda lon: int(np.argmin(abs(g.lon - lon)))  # noqa: E731
    med = labels[row(34.5), col(18.0)]
    atlantic = labels[row(30.0), col(320.0)]
    assert med != 0 and med == atlantic


def test_forcing_climatology_is_complete_and_physical(world):
    s = world.surface_monthly
    assert s.shape == (12, len(SURFACE_VARIABLES)) + world.grid.shape
    assert np.isfinite(s).all()
    t2m, msl = world.surface("t2m"), world.surface("msl")
    assert 200.0 < t2m.min() and t2m.max() < 320.0
    assert 9.5e4 < msl.min() and msl.max() < 1.06e5
    # Trade winds: easterly on average between 10 and 20 N over the ocean.
    g = world.grid
    band = (g.lat > 10) & (g.lat < 20)
    u = world.surface("u10")[:, band][:, g.wet[0][band]]
    assert u.mean() < -2.0
    assert world.fnoc_winds.shape == (132, 2) + g.shape


@pytest.mark.parametrize("res", [3.0, 6.0])
def test_coarsening_keeps_the_ocean_fraction(world, res):
    c = load_world(res)
    assert c.grid.shape == (int(180 / res), int(360 / res))
    assert abs(c.grid.ocean_fraction - world.grid.ocean_fraction) < 0.03
    assert np.isfinite(c.T_clim[c.grid.wet]).all()
    assert np.all(c.grid.wet[1:] <= c.grid.wet[:-1])
    # Area-weighted mean SST is preserved by the averaging to within a few tenths of a degree.
    def mean_sst(w):
        a = w.grid.area[:, None] * w.grid.wet[0]
        return (w.T_clim[0] * a).sum() / a.sum()
    assert abs(mean_sst(c) - mean_sst(world)) < 0.5


def test_fewer_levels_take_the_first_ones(world):
    c = load_world(1.5, 2)
    assert c.grid.n_levels == 2
    np.testing.assert_array_equal(c.grid.wet, world.grid.wet[:2])
    np.testing.assert_array_equal(c.T_clim, world.T_clim[:2])


def test_initial_state_is_rest_on_climatology(world):
    st = world.initial_state(np.float32)
    assert st.T.dtype == np.float32 and st.T.shape == world.grid.wet.shape
    assert np.all(st.u == 0) and np.all(st.ssh == 0)
    assert np.all(st.T[~world.grid.wet] == 0)


@pytest.mark.parametrize("bad", [(1.0, 23), (2.0, 23), (1.5, 0), (1.5, 24)])
def test_unsupported_worlds_are_refused(bad):
    with pytest.raises(DataError, match="resolution_deg|n_levels"):
        load_world(*bad)
