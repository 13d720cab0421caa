"""Twin datasets: the real layout, byte-for-byte reproducible, never damaging what is there."""

import calendar
import dataclasses

import h5py
import numpy as np
import pytest

from neuralogcm_jax.data import twin
from neuralogcm_jax.data.normalize import DEFAULT_HARMONICS, climatology_at
from neuralogcm_jax.data.forcing import ForcingSynthesizer, NoiseSpec, monthly_weights
from neuralogcm_jax.data.twin import DatasetSpec, TruthSpec, generate_dataset
from neuralogcm_jax.data.world import load_world
from neuralogcm_jax.errors import ConfigError, DataError
from neuralogcm_jax.layout import ChannelLayout

# 6 deg, 2 levels: a leap year (1984) in the training split, one year in each other split.
TINY = DatasetSpec(
    resolution_deg=6.0, n_levels=2, train_years=(1984,), valid_years=(1985,),
    test_years=(1986,), spinup_days=3,
)
# One year with six-hour truth pieces: the cheapest dataset that still runs every stage.
ONE_YEAR = dataclasses.replace(
    TINY, valid_years=(), test_years=(), truth=TruthSpec(piece_s=21600.0)
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin") / "data"
    generate_dataset(out, TINY, seed=3, progress=False)
    return out


def _fields(path):
    with h5py.File(path, "r") as f:
        return np.asarray(f["fields"])


def test_layout_of_the_written_dataset(tiny):
    layout = ChannelLayout.with_levels(2)
    world = load_world(6.0, 2)
    wet_ch = layout.wet_channels(world.grid.wet)
    for split, year in (("train", 1984), ("valid", 1985), ("test", 1986)):
        files = sorted(p.name for p in (tiny / split).iterdir())
        assert files == [f"{year}.h5"]
        x = _fields(tiny / split / f"{year}.h5")
        n_days = 366 if calendar.isleap(year) else 365
        assert x.shape == (n_days, layout.n_channels, 30, 60) and x.dtype == np.float32
        # NaN exactly on land (ocean channels), nowhere else.
        np.testing.assert_array_equal(np.isnan(x), np.broadcast_to(~wet_ch, x.shape))
    assert np.load(tiny / "mean_s_t_ssh.npy").shape == (layout.n_channels,)
    std = np.load(tiny / "std_s_t_ssh.npy")
    assert std.shape == (layout.n_channels,) and np.all(std > 0)
    clim = np.load(tiny / "climate_mean_s_t_ssh.npy")
    assert clim.shape == (366, layout.n_ocean, 30, 60) and np.isfinite(clim).all()
    with h5py.File(tiny / "land_mask.h5", "r") as f:
        np.testing.assert_array_equal(np.asarray(f["fields"]) > 0.5, wet_ch)
    readme = (tiny / "README.md").read_text()
    assert "seed: 3" in readme and "paper" in readme and "noise" in readme


def test_the_h5format_reader_accepts_it(tiny):
    from neuralogcm_jax.data.h5format import open_dataset

    info = open_dataset(tiny, full_nan_check=True)
    assert info.layout.n_levels == 2
    assert info.split("train").n_days == 366
    stats = info.load_stats()
    assert stats.harmonics.shape == (2 * DEFAULT_HARMONICS + 1, info.layout.n_ocean, 30, 60)
    assert (tiny / "climate_harmonics_s_t_ssh.npy").is_file()  # written, not fitted on load


def test_stats_are_anomaly_statistics_of_the_training_years(tiny):
    layout = ChannelLayout.with_levels(2)
    x = _fields(tiny / "train" / "1984.h5")
    mean = np.load(tiny / "mean_s_t_ssh.npy")
    std = np.load(tiny / "std_s_t_ssh.npy")
    # the anomalies are taken from the harmonic climatology, the one the pipeline uses
    h = np.load(tiny / "climate_harmonics_s_t_ssh.npy")
    clim = climatology_at(h, np.arange(x.shape[0]))
    n = layout.n_ocean
    k = layout.channel("T", 0)
    anom = x[:, k] - clim[:, k]
    np.testing.assert_allclose(np.nanmean(anom), mean[k], atol=1e-4)
    np.testing.assert_allclose(np.nanstd(anom), std[k], rtol=1e-3)
    # Ocean means are about 0 compared with their spread; forcing stats are raw.
    assert np.all(np.abs(mean[:n]) < 0.2 * std[:n])
    j = layout.channel("t2m")
    np.testing.assert_allclose(x[:, j].mean(), mean[j], rtol=1e-5)
    # The climatology of a single year is that year smoothed over 31 days, not the year itself.
    assert 0 < np.nanmean(np.abs(anom)) < np.nanstd(x[:, k])


def test_truth_is_physical_and_moving(tiny):
    layout = ChannelLayout.with_levels(2)
    x = _fields(tiny / "test" / "1986.h5")
    T = x[:, layout.channel("T", 0)]
    S = x[:, layout.channel("S", 0)]
    U = x[:, layout.channel("U", 0)]
    assert -2.0 <= np.nanmin(T) and np.nanmax(T) < 36.0
    assert 5.0 < np.nanmin(S) and np.nanmax(S) < 45.0
    assert 0.01 < np.sqrt(np.nanmean(U**2)) < 1.0
    # Day-to-day change exists (forcing noise and currents), the state is not frozen.
    assert np.nanmean(np.abs(np.diff(T, axis=0))) > 1e-3


def test_same_seed_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(a, ONE_YEAR, seed=7, progress=False)
    generate_dataset(b, ONE_YEAR, seed=7, progress=False)
    xa, xb = (_fields(p / "train" / "1984.h5") for p in (a, b))
    assert xa.tobytes() == xb.tobytes()
    for name in ("mean_s_t_ssh.npy", "std_s_t_ssh.npy", "climate_mean_s_t_ssh.npy",
                 "climate_harmonics_s_t_ssh.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_another_seed_gives_other_weather():
    world = load_world(6.0, 1)
    f7 = ForcingSynthesizer(world, seed=7).year(1984).forcing
    f8 = ForcingSynthesizer(world, seed=8).year(1984).forcing
    np.testing.assert_array_equal(f7, ForcingSynthesizer(world, seed=7).year(1984).forcing)
    assert np.abs(f7[:, 0] - f8[:, 0]).mean() > 1.0  # about the noise amplitude, 3 m/s


def test_non_empty_target_is_refused_and_a_failed_run_damages_nothing(tmp_path, monkeypatch):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match=str(out)):
        generate_dataset(out, ONE_YEAR, seed=0, progress=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    # Fail after the temporary directory exists (the truth model is built inside it).
    monkeypatch.setattr(twin, "make_truth_step", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(out, ONE_YEAR, seed=0, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary left behind
    assert (out / "keep.txt").read_text() == "precious"


def test_cli_refuses_non_empty_directory_with_exit_2(tmp_path, capsys):
    from neuralogcm_jax.cli import main

    (tmp_path / "x").write_text("x")
    assert main(["make-data", "--preset", "demo", "--out", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="consecutive"):
        DatasetSpec(train_years=(1983,), valid_years=(1985,))
    with pytest.raises(ConfigError, match="mode"):
        TruthSpec(mode="magic")
    with pytest.raises(ConfigError, match="piece_s"):
        TruthSpec(piece_s=5000.0)
    with pytest.raises(ConfigError, match="preset"):
        generate_dataset("/nonexistent/never", "huge")


def test_daily_interpolation_hits_mid_month_values():
    # On the 0-based day index of mid-January (day 15) the weight is all on January.
    m0, m1, w1 = monthly_weights(1985)
    assert m0.shape == (365,)
    assert (m0[15], m1[15]) in ((-1, 0), (0, 1))
    assert np.isclose(w1[15], 1.0 if m1[15] == 0 else 0.0)
    assert np.all((w1 >= 0) & (w1 <= 1))


def test_synoptic_noise_has_the_stated_amplitude_and_memory():
    world = load_world(6.0, 1)
    spec = NoiseSpec(decorrelation_days=3.0)
    synth = ForcingSynthesizer(world, seed=1, noise=spec)
    n = synth.noise.next_days(3000)
    std = n.std(axis=(0, 2, 3))
    np.testing.assert_allclose(std, spec.amplitude, rtol=0.1)
    a = n[:-3, 0].ravel()
    b = n[3:, 0].ravel()
    lag3 = np.dot(a, b) / np.dot(a, a)
    assert abs(lag3 - np.exp(-1.0)) < 0.05
    # Spatially smooth: neighbouring cells are strongly correlated.
    x = n[:, 0]
    r = np.corrcoef(x[:, 10, :-1].ravel(), x[:, 10, 1:].ravel())[0, 1]
    assert r > 0.8


def test_fnoc_years_carry_interannual_winds():
    world = load_world(6.0, 1)
    quiet = dict(noise=None)
    u83 = ForcingSynthesizer(world, 0, **quiet).year(1983).forcing[:, 0]
    u86 = ForcingSynthesizer(world, 0, **quiet).year(1986).forcing[:, 0]
    u99 = ForcingSynthesizer(world, 0, **quiet).year(1999).forcing[:, 0]
    u98 = ForcingSynthesizer(world, 0, **quiet).year(1998).forcing[:, 0]
    assert np.abs(u83 - u86[:365]).mean() > 0.3  # FNOC years differ
    np.testing.assert_allclose(u99, u98, atol=1e-5)  # outside FNOC: climatology only


def test_climatology_window_is_the_count_weighted_31_day_mean():
    rng = np.random.default_rng(0)
    sums = rng.standard_normal((366, 2, 3, 4))
    counts = rng.integers(0, 3, 366)
    counts[:40] = 1  # every window holds a sample
    out = twin._smooth_circular(sums, counts)
    idx = np.arange(-15, 16)
    for d in (0, 100, 365):
        sel = (d + idx) % 366
        np.testing.assert_allclose(out[d], sums[sel].sum(0) / counts[sel].sum(), rtol=1e-5)
    with pytest.raises(DataError, match="31-day window"):
        twin._smooth_circular(sums, np.zeros(366, dtype=int))


@pytest.mark.slow
def test_demo_preset_generates_a_readable_dataset(tmp_path):
    from neuralogcm_jax.data.h5format import open_dataset

    out = generate_dataset(tmp_path / "demo", "demo", seed=0, progress=False)
    info = open_dataset(out, full_nan_check=True)
    assert info.layout.n_levels == 4 and info.grid.shape == (30, 60)
    assert [f.year for f in info.split("train").files] == [1983, 1984]
    std = np.load(out / "std_s_t_ssh.npy")
    layout = info.layout
    # The currents and SST vary: a corrector has anomalies to learn.
    assert std[layout.channel("U", 0)] > 0.01 and std[layout.channel("T", 0)] > 0.1
