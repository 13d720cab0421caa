"""Claims about the on-disk layout: what is written is read back, windows cross year ends the
right way, and every kind of bad data root is refused with the file and the fault named."""

from __future__ import annotations

from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import h5py
import numpy as np
import pytest

from neuralogcm_jax.data import h5format as hf

from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.h5source import H5WindowSource, denormalize_sample
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout

# ---------------------------------------------------------------------- a small world in the layout
LAYOUT = ChannelLayout.with_levels(2)  # 13 channels: 4 x 2 levels + SSH + 4 forcing
H, W = 6, 12


def wet_mask(layout: ChannelLayout = LAYOUT, h: int = H, w: int = W) -> np.ndarray:
    """``[C, H, W]`` bool: a land block in the north-west that grows with depth."""
    wet = np.ones((layout.n_levels, h, w), bool)
    for lev in range(layout.n_levels):
        wet[lev, : 2 + lev, : 3 + lev] = False
    return layout.wet_channels(wet)


def year_fields(year: int, day0: int, layout=LAYOUT, h=H, w=W) -> np.ndarray:
    """Physical-looking fields ``[T, C, H, W]``, NaN on land; the u10 forcing channel holds the
    global day index, so a test can tell which day it was given."""
    rng = np.random.default_rng(year)
    T = hf.days_in_year(year)
    x = rng.normal(size=(T, layout.n_channels, h, w)).astype(np.float32)
    x[:, layout.channel("T", 0)] += 15.0
    x[:, layout.channel("S", 0)] += 35.0
    x[:, layout.channel("u10")] = (day0 + np.arange(T))[:, None, None]
    x[:, ~wet_mask(layout, h, w)] = np.nan
    return x


def make_root(root: Path, splits: dict, layout=LAYOUT, h=H, w=W, land_mask=True, coords=True):
    """Write yearly files for ``{split: [years]}``, stats and (optionally) the land mask."""
    root = Path(root)
    lat, lon = hf.default_coords(h, w)
    for split, years in splits.items():
        day0 = 0
        for y in years:
            h5write.write_year(
                root / split / f"{y}.h5",
                year_fields(y, day0, layout, h, w),
                *((lat, lon, layout.depths_m) if coords else ()),
            )
            day0 += hf.days_in_year(y)
    rng = np.random.default_rng(1)
    C = layout.n_channels
    mean = rng.normal(size=C).astype(np.float32)
    std = (0.5 + rng.random(C)).astype(np.float32)
    clim = rng.normal(size=(366, layout.n_ocean, h, w)).astype(np.float32)
    clim[:, ~wet_mask(layout, h, w)[: layout.n_ocean]] = np.nan
    h5write.write_stats(root, mean, std, clim)
    if land_mask:
        h5write.write_land_mask(root, wet_mask(layout, h, w), lat, lon)
    return root


def rewrite(root: Path, split: str, name: str, x: np.ndarray) -> None:
    """Replace one year file with `x`, coordinates as `make_root` writes them."""
    lat, lon = hf.default_coords(x.shape[2], x.shape[3])
    h5write.write_year(root / split / name, x, lat, lon, LAYOUT.depths_m)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("data"), {"train": [2019, 2020, 2021], "valid": [2022]})


# ---------------------------------------------------------------------- round trips
def test_a_written_year_reads_back_exactly(tmp_path):
    x = year_fields(2020, 0)
    lat, lon = hf.default_coords(H, W)
    p = h5write.write_year(tmp_path / "2020.h5", x, lat, lon, LAYOUT.depths_m)
    with h5py.File(p) as f:
        np.testing.assert_array_equal(f["fields"][()], x)  # NaN in the same places
        np.testing.assert_array_equal(f["lat"][()], lat)
        np.testing.assert_array_equal(f["depth"][()], LAYOUT.depths_m)
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file must be renamed away"


@pytest.mark.parametrize("storage", ["chunked", "contiguous", "compressed"])
def test_source_reads_the_bytes_h5py_reads(tmp_path, storage):
    make_root(tmp_path, {"train": [2019, 2020]})
    x = year_fields(2020, 365)
    if storage != "chunked":  # rewrite one file as sibling writers may have stored it
        with h5py.File(tmp_path / "train" / "2020.h5", "w") as f:
            kw = {"compression": "gzip", "chunks": (4, 13, H, W)} if storage == "compressed" else {}
            f.create_dataset("fields", data=x, **kw)
            lat, lon = hf.default_coords(H, W)
            f["lat"], f["lon"], f["depth"] = lat, lon, np.array(LAYOUT.depths_m)
    src = H5WindowSource(tmp_path, "train", k_steps=1)
    got, doy = src.read_days(360, 10)  # 2019-12-27 .. 2020-01-05
    np.testing.assert_array_equal(got[5:], x[:5])
    np.testing.assert_array_equal(doy, [360, 361, 362, 363, 364, 0, 1, 2, 3, 4])


def test_year_end_window_of_a_leap_year(root):
    src = H5WindowSource(root, "train", k_steps=1)
    stats = src.stats
    x2020, x2021 = year_fields(2020, 365), year_fields(2021, 365 + 366)
    i = 365 + 365  # 31 Dec 2020 in a split starting 1 Jan 2019
    s = src[i]
    assert int(s["time"]) == i and int(s["doy"]) == 365 and s["target_doy"].tolist() == [0]
    n = LAYOUT.n_ocean
    np.testing.assert_allclose(s["state"], stats.physical_to_anomaly(x2020[365, :n], 365), rtol=0, atol=0)
    np.testing.assert_allclose(s["target"][0], stats.physical_to_anomaly(x2021[0, :n], 0), rtol=0, atol=0)
    np.testing.assert_allclose(s["forcing"][0], stats.normalize_forcing(x2021[0, n:]), rtol=1e-6)
    # 31 Dec of a common year is day of year 364 and is followed by 1 Jan (doy 0)
    s = src[364]
    assert int(s["doy"]) == 364 and s["target_doy"].tolist() == [0]


def test_no_sample_is_its_own_target(root):
    K = 3
    src = H5WindowSource(root, "train", k_steps=K)
    n_days = 365 + 366 + 365
    assert len(src) == n_days - K
    with pytest.raises(IndexError):
        src[len(src)]
    stats = src.stats
    u10 = LAYOUT.channel("u10") - LAYOUT.n_ocean
    for i in [0, 364, 365, 729, 730, 731, len(src) - 1]:
        s = src[i]
        days = stats.denormalize_forcing(s["forcing"])[:, u10, 0, 0]
        np.testing.assert_allclose(days, np.arange(i + 1, i + K + 1), atol=1e-3)
        assert int(s["time"]) == i < days.min()
    # the last day of the split is a target, never a state
    assert int(np.rint(days[-1])) == n_days - 1


def test_normalise_then_denormalise_is_identity_and_land_stays_zero(root):
    src = H5WindowSource(root, "train", k_steps=2)
    stats = src.stats
    wet = wet_mask()[: LAYOUT.n_ocean]
    for i in (0, 730):
        s = src[i]
        raw, _ = src.read_days(i, 3)
        phys = denormalize_sample(s, stats)
        n = LAYOUT.n_ocean
        for got, want in ((phys["state"], raw[0, :n]), (phys["target"], raw[1:, :n])):
            np.testing.assert_allclose(got[..., wet], want[..., wet], rtol=1e-6, atol=1e-6 * 40)
            assert np.all(got[..., ~wet] == 0)
        np.testing.assert_allclose(phys["forcing"], raw[1:, n:], rtol=1e-6, atol=1e-3)
        assert np.all(s["state"][~wet] == 0) and np.all(s["target"][:, ~wet] == 0)
        assert all(np.isfinite(v).all() for v in s.values())


def test_source_pickles_without_open_files(root):
    src = H5WindowSource(root, "train", k_steps=1)
    assert src._readers is None  # nothing opened in __init__
    a = src[400]
    # exactly what a spawned grain worker receives
    blob = bytes(ForkingPickler.dumps(src))
    clone = ForkingPickler.loads(blob)
    assert clone._readers is None and len(blob) < 100_000
    b = clone[400]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------------- what is read from the files
def test_open_dataset_reads_grid_layout_and_mask(root):
    dr = hf.open_dataset(root)
    assert sorted(dr.splits) == ["train", "valid"]
    assert dr.split("train").years == [2019, 2020, 2021]
    assert dr.split("train").n_days == 365 + 366 + 365
    assert dr.layout == LAYOUT and dr.grid.shape == (H, W) and dr.grid.north_to_south
    np.testing.assert_array_equal(dr.wet_channels, wet_mask())
    np.testing.assert_array_equal(dr.grid.wet, wet_mask()[LAYOUT.var_slice("S")])
    st = dr.load_stats()
    np.testing.assert_array_equal(st.harmonics, np.nan_to_num(np.load(root / hf.HARMONICS_FILE)))


def test_orientation_is_read_not_assumed(tmp_path):
    lat = -np.array(hf.default_coords(H, W)[0])  # south to north
    lon = hf.default_coords(H, W)[1]
    h5write.write_year(tmp_path / "test" / "2020.h5", year_fields(2020, 0), lat, lon)
    make_root(tmp_path, {}, land_mask=False)
    dr = hf.open_dataset(tmp_path)
    assert not dr.grid.north_to_south and dr.grid.lat[0] < 0
    np.testing.assert_array_equal(dr.grid.lat, lat)
    # a land mask stored with the other orientation is refused, not flipped
    h5write.write_land_mask(tmp_path, wet_mask(), lat[::-1], lon)
    with pytest.raises(DataError, match=r"land_mask\.h5.*lat"):
        hf.open_dataset(tmp_path)


def test_the_land_mask_may_carry_the_sea_floor(tmp_path):
    """``land_mask.h5``'s optional ``sea_floor_m`` [H, W] becomes `Grid.sea_floor_m` (0 on
    land); a wrong shape is refused when written, a wrong shape or a NaN in an ocean cell when
    read, naming the file and the dataset; without it the grid has none."""
    make_root(tmp_path, {"train": [2019]})
    assert hf.open_dataset(tmp_path).grid.sea_floor_m is None
    lat, lon = hf.default_coords(H, W)
    depth = np.linspace(100.0, 5000.0, H * W).reshape(H, W)
    h5write.write_land_mask(tmp_path, wet_mask(), lat, lon, depth)
    grid = hf.open_dataset(tmp_path).grid
    ocean = grid.wet[0]
    assert ocean.any() and (~ocean).any()
    np.testing.assert_allclose(grid.sea_floor_m[ocean], depth[ocean], rtol=1e-7)  # float32 file
    assert (grid.sea_floor_m[~ocean] == 0).all()
    with pytest.raises(DataError, match=r"land_mask\.h5: sea floor depth must be \[H, W\]"):
        h5write.write_land_mask(tmp_path, wet_mask(), lat, lon, depth[:-1])
    bad = depth.copy()
    j, i = np.argwhere(ocean)[0]
    bad[j, i] = np.nan
    h5write.write_land_mask(tmp_path, wet_mask(), lat, lon, bad)
    with pytest.raises(DataError, match=rf"land_mask\.h5: dataset 'sea_floor_m': .*nan in row {j}"):
        hf.open_dataset(tmp_path)
    with h5py.File(tmp_path / hf.LAND_MASK_FILE, "a") as f:
        del f[hf.SEA_FLOOR_KEY]
        f.create_dataset(hf.SEA_FLOOR_KEY, data=np.ones((H + 1, W), np.float32))
    with pytest.raises(DataError, match=r"land_mask\.h5: dataset 'sea_floor_m': sea floor depth has shape"):
        hf.open_dataset(tmp_path)


def test_default_coordinates_for_files_without_them(tmp_path):
    make_root(tmp_path, {"train": [2019]}, h=121, w=24, land_mask=False, coords=False)
    dr = hf.open_dataset(tmp_path)
    assert dr.grid.lat[0] == 90.0 and dr.grid.lat[-1] == -90.0 and dr.grid.lon[0] == 0.0
    lat120, _ = hf.default_coords(120, 240)
    assert lat120[0] == pytest.approx(89.25) and lat120[-1] == pytest.approx(-89.25)
    # without a land mask the wet mask is the finite pattern of the first day
    np.testing.assert_array_equal(dr.wet_channels, wet_mask(h=121, w=24))


# ---------------------------------------------------------------------- bad data roots
def test_missing_split_folder(root):
    with pytest.raises(DataError, match=r"test.*split folder 'test' is missing"):
        hf.open_dataset(root, splits=("test",))


def test_empty_split(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    (tmp_path / "valid").mkdir()
    with pytest.raises(DataError, match=r"valid.*holds no YEAR\.h5"):
        hf.open_dataset(tmp_path)


def test_truncated_file(tmp_path):
    make_root(tmp_path, {"train": [2019, 2020]})
    p = tmp_path / "train" / "2020.h5"
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DataError, match=r"2020\.h5.*(truncated|corrupt)"):
        hf.open_dataset(tmp_path)


def test_garbage_file(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    (tmp_path / "train" / "2020.h5").write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DataError, match=r"2020\.h5.*cannot open"):
        hf.open_dataset(tmp_path)


def test_wrong_channel_count(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    h5write.write_year(tmp_path / "train" / "2020.h5", year_fields(2020, 0)[:, :-1])
    with pytest.raises(DataError, match=r"2020\.h5: 12 channels .*\(366, 12, 6, 12\).*13"):
        hf.open_dataset(tmp_path)
    with pytest.raises(DataError, match=r"2019\.h5: 13 channels.*expects 97"):
        hf.open_dataset(tmp_path, ChannelLayout())


def test_wrong_grid_shape(tmp_path):
    make_root(tmp_path, {"train": [2019]}, coords=False)
    h5write.write_year(tmp_path / "train" / "2020.h5", year_fields(2020, 0, w=2 * W)[..., :W + 2])
    with pytest.raises(DataError, match=r"2020\.h5: grid 6x14 .*2019\.h5 has 6x12"):
        hf.open_dataset(tmp_path)


def test_wrong_day_count(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    rewrite(tmp_path, "train", "2020.h5", year_fields(2019, 0))  # 365 days in a leap year
    with pytest.raises(DataError, match=r"2020\.h5: 365 days.*year 2020 has 366"):
        hf.open_dataset(tmp_path)


@pytest.mark.parametrize("day,full", [(365, False), (100, True)])
def test_nan_in_an_ocean_cell(tmp_path, day, full):
    make_root(tmp_path, {"train": [2019, 2020]})
    x = year_fields(2020, 365)
    c = LAYOUT.channel("T", 1)
    x[day, c, 4, 7] = np.nan
    rewrite(tmp_path, "train", "2020.h5", x)
    want = rf"2020\.h5: day {day}: non-finite value in 1 ocean cell\(s\), first at channel {c} \(T_2\.646m\), row 4, column 7"
    with pytest.raises(DataError, match=want):
        hf.open_dataset(tmp_path, full_nan_check=full)
    if full:  # a day off the sample passes the cheap check
        hf.open_dataset(tmp_path)


def test_year_gap(tmp_path):
    make_root(tmp_path, {"train": [2017, 2018, 2021]})
    with pytest.raises(DataError, match=r"train.*year gap: 2019, 2020 missing between 2018 and 2021"):
        hf.open_dataset(tmp_path)


def test_misnamed_year_file(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    rewrite(tmp_path, "train", "year2020.h5", year_fields(2020, 0))
    with pytest.raises(DataError, match=r"year2020\.h5: .*named YEAR\.h5"):
        hf.open_dataset(tmp_path)


@pytest.mark.parametrize(
    "name,arr,pattern",
    [
        ("mean_s_t_ssh.npy", np.zeros(12, np.float32), r"mean_s_t_ssh\.npy: shape \(12,\), the data has 13"),
        ("std_s_t_ssh.npy", np.zeros(13, np.float32), r"std_s_t_ssh\.npy: std of channel 0 is 0"),
        ("climate_mean_s_t_ssh.npy", np.zeros((366, 9, H, W + 1), np.float32),
         r"climate_mean_s_t_ssh\.npy: shape \(366, 9, 6, 13\), expected \[366, 9 or 13, 6, 12\]"),
        ("climate_mean_s_t_ssh.npy", np.zeros((365, 9, H, W), np.float32), r"climate_mean.*\(365, 9"),
        ("climate_harmonics_s_t_ssh.npy", np.zeros((8, 9, H, W), np.float32),
         r"climate_harmonics_s_t_ssh\.npy: shape \(8, 9, 6, 12\), expected \[2 K \+ 1, 9 or 13"),
    ],
)
def test_stats_that_do_not_match_the_data(tmp_path, name, arr, pattern):
    make_root(tmp_path, {"train": [2019]})
    np.save(tmp_path / name, arr)
    with pytest.raises(DataError, match=pattern):
        hf.open_dataset(tmp_path)


def test_missing_stats(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    (tmp_path / "std_s_t_ssh.npy").unlink()
    with pytest.raises(DataError, match=r"std_s_t_ssh\.npy: statistics file is missing"):
        H5WindowSource(tmp_path, "train")
    hf.open_dataset(tmp_path, require_stats=False)


def test_split_too_short_for_the_window(root):
    with pytest.raises(DataError, match=r"valid: 365 days cannot hold one window of 366"):
        H5WindowSource(root, "valid", k_steps=365)


def test_climatology_nan_in_an_ocean_cell(tmp_path):
    make_root(tmp_path, {"train": [2019]})
    h = np.load(tmp_path / hf.HARMONICS_FILE)
    h[3, LAYOUT.channel("T", 1), 2, 4] = np.inf
    np.save(tmp_path / hf.HARMONICS_FILE, h)
    with pytest.raises(DataError, match=r"climate_harmonics_s_t_ssh\.npy: non-finite harmonic 3 .*channel 7 \(T_2\.646m\), row 2, column 4"):
        hf.open_dataset(tmp_path)
    # a root of the earlier layout (no harmonics file): the 366-day table is checked
    (tmp_path / hf.HARMONICS_FILE).unlink()
    clim = np.load(tmp_path / hf.CLIM_FILE)
    clim[365, LAYOUT.channel("U", 0), 3, 5] = np.nan
    np.save(tmp_path / hf.CLIM_FILE, clim)
    with pytest.raises(DataError, match=r"climate_mean_s_t_ssh\.npy: day of year 365: .*channel 2 \(U_0\.494m\), row 3, column 5"):
        hf.open_dataset(tmp_path)
