"""The hybrid's climate damping fitted to the data (`model.climate_damping_fit_lag`): the lag
regression of the training split, its rates, and the trainer's resolution of the config."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from neuralogcm_jax import ConfigError
from neuralogcm_jax.data import h5format, h5write, persistence
from neuralogcm_jax.data.h5format import days_in_year
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import (
    MAX_FITTED_DAMPING_DAYS,
    ModelConfig,
    build_model,
    fit_climate_damping,
)
from neuralogcm_jax.schema import from_dict, to_dict

LEVELS = 2
# Daily AR(1) coefficient of each variable's anomaly in the synthetic data (one per level for
# T: the levels must come out different)
PHI = {"S": (0.90, 0.90), "U": (0.5, 0.5), "V": (0.5, 0.5), "T": (0.95, 0.99), "SSH": (0.8,)}
YEARS = (2019, 2020)  # 2020 is a leap year: the regression pairs days within each year file


def _phi_per_channel(lay: ChannelLayout) -> np.ndarray:
    phi = np.zeros(lay.n_ocean)
    for v, p in PHI.items():
        phi[lay.var_slice(v)] = p
    return phi


def write_ar1_dataset(root: Path, seed: int = 0) -> tuple[Grid, ChannelLayout]:
    """24x48 cells, 2 levels, a continent; each ocean channel an AR(1) anomaly (coefficient
    `PHI`, started stationary) around a constant climatology, of its own scale; train 2019-2020."""
    lay = ChannelLayout.with_levels(LEVELS)
    g = Grid.regular(7.5, depth=lay.depths_m)
    wet = np.ones((LEVELS,) + g.shape, bool)
    wet[:, 6:12, 8:16] = False
    g = g.with_wet(wet)
    rng = np.random.default_rng(seed)
    n, C = lay.n_ocean, lay.n_channels
    phi = _phi_per_channel(lay)[:, None, None]
    scale = np.linspace(0.1, 5.0, n)[:, None, None]  # the regression is scale-free
    wet_c = lay.wet_channels(wet)
    a = rng.normal(size=(n,) + g.shape)  # stationary: unit variance
    for y in YEARS:
        T = days_in_year(y)
        f = np.zeros((T, C) + g.shape, np.float32)
        for t in range(T):
            a = phi * a + np.sqrt(1 - phi**2) * rng.normal(size=a.shape)
            f[t, :n] = 10.0 + scale * a
        f[:, n:] = 1.0
        f = np.where(wet_c[None], f, np.nan).astype(np.float32)
        h5write.write_year(root / "train" / f"{y}.h5", f, g.lat, g.lon, g.depth)
    clim = np.zeros((366, n) + g.shape, np.float32)
    clim[:] = np.where(wet_c[:n], 10.0, 0.0)
    std = np.concatenate([scale[:, 0, 0], np.ones(C - n)]).astype(np.float32)
    h5write.write_stats(root, np.zeros(C, np.float32), std, clim)
    return g, lay


@pytest.fixture(scope="module")
def ar1_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitted_damping") / "data"
    write_ar1_dataset(root)
    return root


def test_lag_regression_recovers_the_autoregression_of_each_channel(ar1_root):
    """On AR(1) anomalies with a known daily coefficient phi, the lag regression at lag L is
    phi**L for every ocean channel (sampling error: about 2,000 independent cells a day), so
    the fitted rate is -ln(phi) per day; per variable, the levels pooled give the mean."""
    dr = h5format.open_dataset(ar1_root, splits=["train"])
    lay = dr.layout
    phi = _phi_per_channel(lay)
    for lag in (1, 5):
        num, den = persistence.lag_sums(dr, "train", lag)
        alpha = persistence.lag_regression(num, den)
        np.testing.assert_allclose(alpha, phi**lag, atol=0.02)
    # the rates the model starts from: one per level, and pooled over the levels
    per_level = fit_climate_damping(
        ModelConfig(climate_damping_days=30.0, climate_damping_per_level=True,
                    climate_damping_fit_lag=5), num, den, lay)
    assert per_level.climate_damping_fit_lag is None
    pc = per_level.physics_coefficients
    days = {k: 1.0 / (np.asarray(v) * 86400.0) for k, v in pc.items()}
    for v, p in PHI.items():
        want = -1.0 / np.log(np.asarray(p))
        got = days[f"climate_damping_{v}"]
        assert np.shape(got) == (() if v == "SSH" else (LEVELS,))
        np.testing.assert_allclose(got, want if v != "SSH" else want[0], rtol=0.15)
    assert days["climate_damping_T"][1] > 3 * days["climate_damping_T"][0]  # 99.5 d vs 19.5 d
    pooled = fit_climate_damping(
        ModelConfig(climate_damping_days=30.0, climate_damping_fit_lag=5), num, den, lay)
    t = lay.var_slice("T")
    want = -np.log(num[t].sum() / den[t].sum()) / (5 * 86400.0)
    assert pooled.physics_coefficients["climate_damping_T"] == pytest.approx(want, rel=1e-12)


def test_fitted_rates_keep_their_bounds():
    """An anomaly that does not decay (alpha >= 1) gets the slowest fitted rate, one that
    reverses (alpha <= 0) the fastest allowed (one day), a channel without variance the config's
    1 / days; the fitted values are what the model's parameters start from."""
    lay = ChannelLayout.with_levels(LEVELS)
    n = lay.n_ocean
    num, den = np.full(n, 0.5), np.ones(n)
    t, s = lay.var_slice("T"), lay.var_slice("S")
    num[t.start], num[t.start + 1] = 1.2, -0.3
    den[s.start], num[s.start] = 0.0, 0.0
    cfg = fit_climate_damping(ModelConfig(climate_damping_days=30.0, climate_damping_per_level=True,
                                          climate_damping_fit_lag=10), num, den, lay)
    T = np.asarray(cfg.physics_coefficients["climate_damping_T"]) * 86400.0
    S = np.asarray(cfg.physics_coefficients["climate_damping_S"]) * 86400.0
    assert T[0] == pytest.approx(1.0 / MAX_FITTED_DAMPING_DAYS, rel=1e-12)
    assert T[1] == pytest.approx(1.0, rel=1e-12)
    assert S[0] == pytest.approx(1.0 / 30.0, rel=1e-12)
    assert S[1] == pytest.approx(np.log(2.0) / 10.0, rel=1e-12)
    # the model starts from them (float32 raw values)
    g = Grid.regular(15.0, depth=lay.depths_m)
    from neuralogcm_jax.data.normalize import Stats

    stats = Stats.identity(np.ones((LEVELS,) + g.shape, bool), lay)
    m = build_model(cfg, g, stats, seed=0)
    si = m.physics_params.si()
    np.testing.assert_allclose(np.asarray(si["climate_damping_T"]) * 86400.0, T, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(si["climate_damping_S"]) * 86400.0, S, rtol=1e-5)


def test_the_trainer_resolves_the_fit_into_a_config_that_rebuilds_without_the_data(ar1_root):
    """`resolve_model_config` (what `train` runs before building the model): the hybrid's rates
    fitted on the training split, the lag cleared, and the result survives the checkpoint's
    round trip through a plain dict (lists of per-level values); a baseline's fit lag is
    dropped unread; a data format that cannot give the regression is refused by name."""
    from neuralogcm_jax.train import config as config_lib
    from neuralogcm_jax.train.preflight import resolve_model_config
    from neuralogcm_jax.train.traindata import open_data

    cfg = config_lib.load_config(None, [
        f"data.root={ar1_root}", "model.climate_damping_days=30",
        "model.climate_damping_per_level=true", "model.climate_damping_fit_lag=5"])
    data = open_data(cfg)
    m = resolve_model_config(cfg.model, data, "train")
    dr = h5format.open_dataset(ar1_root, splits=["train"])
    want = fit_climate_damping(cfg.model, *persistence.lag_sums(dr, "train", 5), dr.layout)
    assert m == want and m.climate_damping_fit_lag is None
    back = from_dict(ModelConfig, to_dict(m), "model")
    assert back == m and hash(back) == hash(m)
    base = resolve_model_config(dataclasses.replace(cfg.model, name="unet"), data, "train")
    assert base.climate_damping_fit_lag is None and not base.physics_coefficients
    with pytest.raises(ConfigError, match="climate_damping_fit_lag"):
        resolve_model_config(cfg.model, dataclasses.replace(data, lag_sums=None), "train")


def test_bad_fit_settings_and_per_level_values_are_refused_by_name():
    for bad in (0, 181, 2.5, True, "30"):
        with pytest.raises(ConfigError, match="climate_damping_fit_lag"):
            ModelConfig(climate_damping_days=30.0, climate_damping_fit_lag=bad)
    with pytest.raises(ConfigError, match="climate_damping_days is null"):
        ModelConfig(climate_damping_fit_lag=30)
    with pytest.raises(ConfigError, match="not both"):
        ModelConfig(climate_damping_days=30.0, climate_damping_fit_lag=30,
                    physics_coefficients={"climate_damping_T": 1e-7})
    # a per-level list: each value in range, and as many as levels at the build
    with pytest.raises(ConfigError, match="climate_damping_T"):
        ModelConfig(climate_damping_days=30.0, climate_damping_per_level=True,
                    physics_coefficients={"climate_damping_T": [1e-7, 1.0]})
    lay = ChannelLayout.with_levels(LEVELS)
    g = Grid.regular(15.0, depth=lay.depths_m)
    from neuralogcm_jax.data.normalize import Stats

    stats = Stats.identity(np.ones((LEVELS,) + g.shape, bool), lay)
    cfg = ModelConfig(climate_damping_days=30.0, climate_damping_per_level=True,
                      physics_coefficients={"climate_damping_T": [1e-7, 2e-7, 3e-7]})
    with pytest.raises(ConfigError, match="climate_damping_T has 3 values"):
        build_model(cfg, g, stats, seed=0)
    cfg = ModelConfig(climate_damping_days=30.0, physics_coefficients={"nu_m": [5e4, 6e4]})
    with pytest.raises(ConfigError, match="nu_m has 2 values"):
        build_model(cfg, g, stats, seed=0)
