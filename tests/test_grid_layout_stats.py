"""Claims about the grid geometry, the channel layout and the normalisation."""

import numpy as np
import pytest

from neuralogcm_jax import GridError, LayoutError
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid, layer_interfaces
from neuralogcm_jax.layout import ChannelLayout


@pytest.mark.parametrize("res", [1.5, 3.0, 6.0])
def test_cell_areas_sum_to_the_sphere(res):
    g = Grid.regular(res)
    total = g.area.sum() * g.shape[1]
    assert abs(total / (4 * np.pi * g.radius**2) - 1) < 1e-12


def test_default_grid_is_the_data_grid():
    g = Grid.regular(1.5)
    assert g.shape == (120, 240) and g.n_levels == 23
    assert g.north_to_south and g.lat[0] == pytest.approx(89.25)
    # dx = R cos(phi) dlon, dy = R dphi
    assert g.dx[60] == pytest.approx(g.radius * np.cos(np.deg2rad(g.lat[60])) * np.deg2rad(1.5))
    assert g.dy == pytest.approx(g.radius * np.deg2rad(1.5))
    assert g.coriolis[0] > 0 > g.coriolis[-1]


def test_pole_row_variant_has_half_cells_and_full_sphere():
    lat = np.linspace(90, -90, 121)
    g = Grid.from_coords(lat, np.arange(240) * 1.5)
    assert abs(g.area.sum() * 240 / (4 * np.pi * g.radius**2) - 1) < 1e-12
    assert g.area[0] < g.area[1]


def test_orientation_does_not_change_geometry():
    a = Grid.regular(3.0, north_to_south=True)
    b = Grid.regular(3.0, north_to_south=False)
    np.testing.assert_allclose(a.area, b.area[::-1])
    np.testing.assert_allclose(a.face_len_y, b.face_len_y[::-1])
    assert a.y_sign == -b.y_sign


def test_face_is_open_only_between_two_wet_cells():
    wet = np.ones((1, 4, 6), bool)
    wet[0, 1, 2] = False
    g = Grid.from_coords([45, 15, -15, -45], np.arange(6) * 60 + 30, [10.0], wet)
    fx, fy = g.face_mask_x, g.face_mask_y
    assert not fx[0, 1, 1] and not fx[0, 1, 2] and fx[0, 1, 3]
    assert fx[0, 0, 5]  # the seam is an ordinary face
    assert not fy[0, 1, 2] and not fy[0, 2, 2] and fy[0, 3, 2]
    assert not fy[:, 0].any() and not fy[:, -1].any()


def test_layer_thicknesses_tile_the_column():
    z = layer_interfaces(np.array(GLORYS23_DEPTHS_M))
    assert z[0] == 0 and np.all(np.diff(z) > 0)
    assert np.all((z[:-1] < GLORYS23_DEPTHS_M) & (np.array(GLORYS23_DEPTHS_M) < z[1:]))


def test_bad_grids_are_named():
    with pytest.raises(GridError, match="wet mask has shape"):
        Grid.regular(6.0, depth=[5.0, 10.0], wet=np.ones((2, 10, 10)))
    with pytest.raises(GridError, match="increase strictly: level 2"):
        Grid.regular(6.0, depth=[5.0, 10.0, 10.0])
    with pytest.raises(GridError, match="cover 360"):
        Grid.from_coords([10, 0], [0, 1, 2])


def test_layout_round_trips_and_names_channels():
    lay = ChannelLayout()
    assert lay.n_channels == 97 and lay.n_ocean == 93
    assert lay.channel("S", 0) == 0 and lay.channel("U", 0) == 23
    assert lay.channel("V", 22) == 68 and lay.channel("T", 0) == 69
    assert lay.channel("SSH") == 92 and lay.channel("msl") == 96
    x = np.random.default_rng(0).normal(size=(2, 97, 4, 8)).astype(np.float32)
    st = lay.to_state(x)
    np.testing.assert_array_equal(lay.from_state(st), x[:, :93])
    np.testing.assert_array_equal(lay.from_forcing(lay.to_forcing(x)), x[:, 93:])
    assert st.T.shape == (2, 23, 4, 8) and st.ssh.shape == (2, 4, 8)


def test_layout_refuses_arrays_that_do_not_fit():
    lay = ChannelLayout.with_levels(3)
    with pytest.raises(LayoutError, match=r"\(5, 4, 8\).*13 or 17"):
        lay.to_state(np.zeros((5, 4, 8)))


def test_normalising_round_trips_and_land_stays_zero():
    lay = ChannelLayout.with_levels(2)
    rng = np.random.default_rng(1)
    g = Grid.regular(30.0, depth=lay.depths_m)
    wet = rng.random((2,) + g.shape) > 0.3
    clim = rng.normal(size=(366, lay.n_channels) + g.shape).astype(np.float32)
    st = Stats.build(rng.normal(size=lay.n_channels), rng.random(lay.n_channels) + 0.5, clim, wet, lay)
    x = rng.normal(size=(lay.n_ocean,) + g.shape).astype(np.float32) * 3 + 10
    x_land_nan = np.where(st.wet, x, np.nan)
    a = st.physical_to_anomaly(x_land_nan, 59)
    assert np.all(a[~st.wet] == 0) and np.all(np.isfinite(a))
    back = st.anomaly_to_physical(a, 59)
    np.testing.assert_allclose(back[st.wet], x[st.wet], rtol=1e-6)
    assert np.all(back[~st.wet] == 0)
