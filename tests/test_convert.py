"""Claims about GLORYS12/ERA5 conversion: the regridding conserves area integrals and keeps
block-constant fields exact, sub-daily ERA5 becomes daily means, land stays land, the statistics
are what their definition says, and incomplete inputs are refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("netCDF4")

from test_h5 import make_root  # noqa: E402

from neuralogcm_jax import cli  # noqa: E402
from neuralogcm_jax.data.normalize import climatology_at, fit_harmonics  # noqa: E402
from neuralogcm_jax.data import convert as cv  # noqa: E402
from neuralogcm_jax.data import h5format as hf  # noqa: E402
from neuralogcm_jax.data.h5source import H5WindowSource  # noqa: E402
from neuralogcm_jax.errors import ConfigError, DataError  # noqa: E402
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid  # noqa: E402
from neuralogcm_jax.layout import ChannelLayout  # noqa: E402

YEAR = 2020  # a leap year: 366 days
GLORYS_DEPTHS = [0.494, 1.541, 2.646]  # GLORYS12 levels 0, 1, 2
LAYOUT = ChannelLayout.with_levels(2)  # 0.494 and 2.646 m: levels 0 and 2 of the source
RES = 15.0  # target grid: 12 x 24


# ---------------------------------------------------------------------- conservative regridding
def sphere_integral(x, lat, lon):
    edges = np.sin(np.deg2rad(cv.cell_edges(lat, clip_lat=True)))
    w = np.abs(np.diff(edges))[:, None] * np.diff(cv.cell_edges(lon))[None, :]
    return float(np.sum(w * x))


def test_regridding_conserves_the_area_integral():
    rng = np.random.default_rng(0)
    src_lat = np.linspace(89.5, -89.5, 180)  # N->S, 1 deg
    src_lon = np.arange(360) - 179.5  # -180 .. 180 convention
    tgt = Grid.regular(6.0)  # S->N? no: N->S, 0 .. 360 convention
    x = rng.normal(size=(180, 360))
    y = cv.ConservativeRegridder(src_lat, src_lon, tgt.lat, tgt.lon)(x)
    assert np.isfinite(y).all()
    a, b = sphere_integral(x, src_lat, src_lon), sphere_integral(y, tgt.lat, tgt.lon)
    assert abs(a - b) < 1e-10 * np.abs(x).sum()


def test_block_constant_field_is_kept_exactly_and_land_threshold_applies():
    src_lat = np.arange(-88.75, 90, 2.5)[::-1]  # 72 rows N->S
    src_lon = np.arange(1.25, 360, 2.5)  # 144 columns
    tgt = Grid.regular(15.0)
    block = np.arange(12 * 24, dtype=float).reshape(12, 24)
    # each 15 deg block is 6 x 6 source cells
    x = np.repeat(np.repeat(block, 6, axis=0), 6, axis=1)
    # the land threshold is on area, not on a count of source cells: block (0, 0) (75-90 N) with
    # its 4 northern rows (80-90 N) dry is 4/6 land by count but 45 % by area -> ocean; block
    # (0, 1) with its 4 southern rows (75-85 N) dry is 89 % land -> land; block (1, 1) 26 % -> ocean
    x[:4, :6] = np.nan
    x[2:6, 6:12] = np.nan
    x[6:8, 6:12] = np.nan
    y = cv.ConservativeRegridder(src_lat, src_lon, tgt.lat, tgt.lon)(x)
    assert np.isnan(y[0, 1])
    assert y[0, 0] == pytest.approx(block[0, 0], abs=1e-9)
    assert y[1, 1] == pytest.approx(block[1, 1], abs=1e-9)
    keep = np.ones_like(block, bool)
    keep[0, 1] = False
    np.testing.assert_allclose(y[keep], block[keep], atol=1e-9)


def test_vertical_choice():
    w = cv.vertical_weights(np.array(GLORYS23_DEPTHS_M), GLORYS23_DEPTHS_M[:3], "nearest")
    assert [ws[0][0] for ws in w] == [0, 1, 2]
    with pytest.raises(DataError, match="no GLORYS level near 4.0 m"):
        cv.vertical_weights(np.array([1.0, 10.0]), [4.0], "nearest")
    (lev,) = cv.vertical_weights(np.array([1.0, 10.0]), [4.0], "linear")
    z = np.array([1.0, 10.0])
    assert sum(w * (3 * z[k] + 2) for k, w in lev) == pytest.approx(3 * 4.0 + 2)  # linear exact


# ---------------------------------------------------------------------- stand-in netCDF files
SRC_LAT = np.arange(-77.5, 90, 5.0)  # GLORYS: S->N, starts at 80 S
SRC_LON = np.arange(-177.5, 180, 5.0)  # GLORYS: -180 .. 180
TGT = Grid.regular(RES)


def block_pattern(lat, lon):
    """A field constant on each 15 deg target block: lets the regridded value be known exactly."""
    j = np.floor((90.0 - lat) / RES)[:, None]
    i = np.floor(np.mod(lon, 360.0) / RES)[None, :]
    return 0.1 * j + 0.01 * i


def ocean_land(lat, lon):
    """Land: 0 .. 30 E, 0 .. 30 N (two by two target blocks)."""
    return (lat[:, None] > 0) & (lat[:, None] < 30) & (np.mod(lon, 360)[None, :] < 30)


def expected_ocean(var_offset, level, t):
    return var_offset + level + 0.01 * t + block_pattern(TGT.lat, TGT.lon)


OFFSETS = {"thetao": 10.0, "so": 35.0, "uo": 0.1, "vo": -0.1, "zos": 0.5}


def write_glorys(path, days, *, drop_var=None):
    t = np.arange(days.size)[:, None, None, None]
    times = np.datetime64(f"{YEAR}-01-01T12:00") + days.astype("timedelta64[D]")
    land = ocean_land(SRC_LAT, SRC_LON)
    pat = block_pattern(SRC_LAT, SRC_LON)
    data = {}
    for v, off in OFFSETS.items():
        if v == drop_var:
            continue
        if v == "zos":
            x = off + 0.01 * (days[:, None, None]) + pat[None]
            x = np.where(land[None], np.nan, x)
            data[v] = (("time", "latitude", "longitude"), x.astype(np.float32))
        else:
            lev = np.array([0.0, 0.5, 1.0])[None, :, None, None]  # value at 1.541 m is between
            x = off + lev + 0.01 * days[:, None, None, None] + pat[None, None]
            x = np.where(land[None, None], np.nan, x) + 0 * t
            data[v] = (("time", "depth", "latitude", "longitude"), x.astype(np.float32))
    ds = xr.Dataset(
        data, coords={"time": times, "depth": GLORYS_DEPTHS, "latitude": SRC_LAT, "longitude": SRC_LON}
    )
    ds.to_netcdf(path)


ERA_LAT = np.arange(90, -91, -10.0)  # N->S with pole points
ERA_LON = np.arange(0, 360, 10.0)


def write_era5(folder, *, skip_day=None, freshwater=False):
    """One file per variable, 6-hourly: values vary within the day so the daily mean is known.
    With `freshwater`, also ``e`` and ``tp`` as 6-hour accumulations (m): e -1, -2, -3, -4 mm in
    the four steps of a day (-10 mm that day), tp 2 mm + 0.01 mm per day of the year each."""
    hours = np.arange(0, 366 * 24, 6)
    if skip_day is not None:
        hours = hours[(hours // 24) != skip_day]
    times = np.datetime64(f"{YEAR}-01-01T00:00") + hours.astype("timedelta64[h]")
    day = hours // 24
    within = (hours % 24) / 6  # 0, 1, 2, 3 -> daily mean 1.5
    values = {"u10": 3.0 + within, "v10": -2.0 + 0.1 * day, "t2m": 280.0 + within + 0.001 * day,
              "msl": 101000.0 + 10.0 * day}
    if freshwater:
        values |= {"e": -1e-3 * (1.0 + within), "tp": 2e-3 + 1e-5 * day}
    paths = []
    for v, s in values.items():
        x = np.broadcast_to(s[:, None, None], (s.size, ERA_LAT.size, ERA_LON.size)).astype(np.float32)
        ds = xr.Dataset({v: (("valid_time", "latitude", "longitude"), x)},
                        coords={"valid_time": times, "latitude": ERA_LAT, "longitude": ERA_LON})
        p = folder / f"era5_{v}.nc"
        ds.to_netcdf(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("nc")
    days = np.arange(366)
    write_glorys(d / "glorys_h1.nc", days[:182])
    write_glorys(d / "glorys_h2.nc", days[182:])
    era = write_era5(d)
    return d, [d / "glorys_h1.nc", d / "glorys_h2.nc"], era


def cli_args(glorys, era, out, *extra):
    return ["convert-glorys", "--glorys", *map(str, glorys), "--era5", *map(str, era),
            "--out", str(out), "--years", str(YEAR), "--resolution", str(RES),
            "--levels", "2", "--quiet", *extra]


def test_conversion_end_to_end(inputs, tmp_path):
    _, glorys, era = inputs
    out = tmp_path / "root"
    assert cli.main(cli_args(glorys, era, out, "--split", "test", "--stats", "yes")) == 0
    dr = hf.open_dataset(out, full_nan_check=True)
    assert dr.layout == LAYOUT and dr.grid.shape == (12, 24) and dr.grid.north_to_south
    with hf._open_h5(out / "test" / f"{YEAR}.h5") as f:
        x = f["fields"][()]
    assert x.shape == (366, 13, 12, 24)
    for t in (0, 181, 182, 365):
        for v, name in (("T", "thetao"), ("S", "so"), ("U", "uo"), ("V", "vo")):
            for lev, src_lev in enumerate([0, 2]):  # nearest GLORYS level of 0.494 and 2.646 m
                want = expected_ocean(OFFSETS[name], [0.0, 0.5, 1.0][src_lev], t)
                got = x[t, LAYOUT.channel(v, lev)]
                wet = np.isfinite(got)
                np.testing.assert_allclose(got[wet], want[wet], atol=1e-5)
        np.testing.assert_allclose(x[t, LAYOUT.channel("u10")], 4.5, rtol=1e-6)  # mean of 3 + 0..3
        np.testing.assert_allclose(x[t, LAYOUT.channel("t2m")], 281.5 + 0.001 * t, rtol=1e-7)
        np.testing.assert_allclose(x[t, LAYOUT.channel("msl")], 101000.0 + 10 * t, rtol=1e-7)
    sst = x[0, LAYOUT.channel("T", 0)]
    # land: the 0..30 E, 0..30 N box (rows 4, 5; columns 0, 1). The source stops at 80 S, yet the
    # 75-90 S row stays ocean: 75-80 S is 55 % of its area (the threshold is on area, 50 %).
    assert np.isnan(sst[4:6, 0:2]).all() and np.isfinite(sst[11]).all()
    assert np.isfinite(sst).sum() == 12 * 24 - 4
    np.testing.assert_array_equal(dr.wet_channels[LAYOUT.channel("T", 0)], np.isfinite(sst))
    # statistics were written and the window source can use them
    s = H5WindowSource(out, "test", k_steps=1)[365 - 1]
    assert int(s["doy"]) == 364 and np.isfinite(s["state"]).all()


def test_era5_evaporation_and_precipitation_become_the_days_totals(inputs, tmp_path):
    """``--freshwater``: ERA5's ``e`` and ``tp`` (6-hour accumulations here) become the
    channels ``e`` and ``tp`` of the day's totals in m, ECMWF's signs kept, in a 4 L + 7 channel
    file that says so; the statistics cover them and the window source serves six forcing
    channels. ERA5 files without ``tp`` are one error naming it, before anything is written."""
    d, glorys, _ = inputs
    era_dir = tmp_path / "era"
    era_dir.mkdir()
    era = write_era5(era_dir, freshwater=True)
    out = tmp_path / "root"
    fresh = ChannelLayout.with_levels(2, freshwater=True)
    assert cli.main(cli_args(glorys, era, out, "--split", "train", "--freshwater",
                             "--era5-accumulation-hours", "6")) == 0
    dr = hf.open_dataset(out, full_nan_check=True)
    assert dr.layout == fresh
    with hf._open_h5(out / "train" / f"{YEAR}.h5") as f:
        x = f["fields"][()]
        assert f.attrs[hf.FORCING_ATTR] == "u10 v10 t2m msl e tp"
    assert x.shape == (366, 15, 12, 24)
    for t in (0, 59, 365):
        np.testing.assert_allclose(x[t, fresh.channel("e")], -0.010, rtol=1e-6)
        np.testing.assert_allclose(x[t, fresh.channel("tp")], 4 * (2e-3 + 1e-5 * t), rtol=1e-6)
        np.testing.assert_allclose(x[t, fresh.channel("u10")], 4.5, rtol=1e-6)
    stats = dr.load_stats()
    assert stats.mean[fresh.channel("e")] == pytest.approx(-0.010, rel=1e-5)
    assert stats.std[fresh.channel("tp")] == pytest.approx(4e-5 * np.arange(366).std(), rel=1e-3)
    s = H5WindowSource(out, "train", k_steps=1)[10]
    assert s["forcing"].shape == (1, 6, 12, 24)
    np.testing.assert_allclose(s["forcing"][0, 4], 0.0, atol=1e-3)  # e is constant: its mean
    out2 = tmp_path / "root2"
    with pytest.raises(DataError, match=r"ERA5 variable 'tp' is in none of the files"):
        cv.convert(glorys, [p for p in era if "tp" not in p.name], out2, [YEAR], "train",
                   grid=TGT, layout=fresh, progress=False)
    assert not out2.exists() or not any(out2.rglob("*.h5"))
    with pytest.raises(ConfigError, match=r"era5_accumulation_hours 0"):
        cv.convert(glorys, era, out2, [YEAR], "train", grid=TGT, layout=fresh, progress=False,
                   era5_accumulation_hours=0)


def write_bathymetry(path, name="deptho"):
    """A GLORYS-like static file: the sea floor 1000 m + 100 m per target block row, NaN on land."""
    d = 1000.0 + 1000.0 * block_pattern(SRC_LAT, SRC_LON)
    d = np.where(ocean_land(SRC_LAT, SRC_LON), np.nan, d)
    xr.Dataset({name: (("latitude", "longitude"), d.astype(np.float32))},
               coords={"latitude": SRC_LAT, "longitude": SRC_LON}).to_netcdf(path)


def test_the_glorys_sea_floor_is_regridded_into_the_land_mask(inputs, tmp_path):
    """``--bathymetry``: GLORYS's ``deptho`` becomes the grid's sea floor, the mean of the ocean
    under each target cell (a block-constant depth: exactly its value); a file without
    ``deptho`` is one error naming it, before anything is written."""
    d, glorys, era = inputs
    write_bathymetry(d / "bathy.nc")
    out = tmp_path / "root"
    assert cli.main(cli_args(glorys, era, out, "--split", "test", "--stats", "yes",
                             "--bathymetry", str(d / "bathy.nc"))) == 0
    grid = hf.open_dataset(out).grid
    ocean = grid.wet[0]
    want = 1000.0 + 1000.0 * block_pattern(TGT.lat, TGT.lon)
    np.testing.assert_allclose(grid.sea_floor_m[ocean], want[ocean], rtol=1e-6)
    assert (grid.sea_floor_m[~ocean] == 0).all()
    write_bathymetry(d / "no_deptho.nc", name="elevation")
    out2 = tmp_path / "root2"
    with pytest.raises(DataError, match=r"no_deptho\.nc: no variable 'deptho'"):
        cv.convert(glorys, era, out2, [YEAR], "test", grid=TGT, layout=LAYOUT, progress=False,
                   bathymetry=d / "no_deptho.nc")
    assert not out2.exists()


def test_incomplete_inputs_are_refused_before_writing(inputs, tmp_path):
    d, glorys, era = inputs
    out = tmp_path / "root"
    with pytest.raises(DataError, match=r"GLORYS variable 'so' has no data for 2020-07-01"):
        cv.convert(glorys[:1], era, out, [YEAR], "train", grid=TGT, layout=LAYOUT, progress=False)
    bad = tmp_path / "era"
    bad.mkdir()
    era_gap = write_era5(bad, skip_day=59)
    with pytest.raises(DataError, match=r"ERA5 variable 'u10' has no data for 2020-02-29"):
        cv.convert(glorys, era_gap, out, [YEAR], "train", grid=TGT, layout=LAYOUT, progress=False)
    with pytest.raises(DataError, match=r"'msl' is in none of the files"):
        cv.convert(glorys, era[:3], out, [YEAR], "train", grid=TGT, layout=LAYOUT, progress=False)
    with pytest.raises(DataError, match=r"nope\.nc: GLORYS file not found"):
        cv.convert([d / "nope.nc"], era, out, [YEAR], "train", grid=TGT, layout=LAYOUT, progress=False)
    assert not out.exists() or not any(out.rglob("*.h5"))
    # an existing year file is never replaced without --overwrite
    (out / "train").mkdir(parents=True)
    (out / "train" / f"{YEAR}.h5").write_bytes(b"precious")
    assert cli.main(cli_args(glorys, era, out, "--split", "train")) == 2
    assert (out / "train" / f"{YEAR}.h5").read_bytes() == b"precious"


def test_years_parsing():
    assert cv.parse_years(["1993-1995", "1996"]) == [1993, 1994, 1995, 1996]
    with pytest.raises(ConfigError, match="1995 is missing"):
        cv.parse_years(["1993,1994", "1996"])
    with pytest.raises(ConfigError, match="'19x3'"):
        cv.parse_years(["19x3"])


# ---------------------------------------------------------------------- statistics
def test_stats_follow_their_definition(tmp_path):
    root = make_root(tmp_path, {"train": [2019, 2020, 2021]})
    for name in (hf.MEAN_FILE, hf.STD_FILE, hf.CLIM_FILE):
        (root / name).unlink()
    mean, std = cv.compute_stats(root, "train", progress=False)
    dr = hf.open_dataset(root)
    L = dr.layout
    n = L.n_ocean
    xs = {}
    for yf in dr.split("train").files:
        with hf._open_h5(yf.path) as f:
            xs[yf.year] = f["fields"][()].astype(np.float64)
    clim = np.load(root / hf.CLIM_FILE)
    assert clim.shape == (366, n, 6, 12)
    wet = dr.wet_channels[:n]
    # day 59 is 1 Mar of 2019/2021 and 29 Feb of 2020: the index is the day of year, not the date
    want59 = (xs[2019][59, :n] + xs[2020][59, :n] + xs[2021][59, :n]) / 3
    np.testing.assert_allclose(clim[59][wet], want59[wet], rtol=1e-5)
    np.testing.assert_allclose(clim[365][wet], xs[2020][365, :n][wet], rtol=1e-6)  # leap year only
    assert np.isnan(clim[:, ~wet]).all()
    # anomalies from the harmonic climatology (the one the pipeline uses), fitted to the table
    h = np.load(root / hf.HARMONICS_FILE)
    np.testing.assert_array_equal(h, np.where(wet, fit_harmonics(clim), 0.0))
    anomalies = np.concatenate(
        [x[:, :n] - climatology_at(h, np.arange(x.shape[0])) for x in xs.values()])
    c = L.channel("T", 1)
    a = anomalies[:, c][:, wet[c]]
    assert mean[c] == pytest.approx(a.mean(), abs=1e-6) and abs(mean[c]) < 0.01 * std[c]
    assert std[c] == pytest.approx(a.std(), rel=1e-5)
    t2m = np.concatenate([x[:, L.channel("t2m")].ravel() for x in xs.values()])
    assert mean[L.channel("t2m")] == pytest.approx(t2m.mean(), rel=1e-6)
    assert std[L.channel("t2m")] == pytest.approx(t2m.std(), rel=1e-5)
