"""The hybrid's fitted tendency correction (`model.tendency_correction_harmonics`,
`neuralogcm_jax.train.fitted`): on data made by the model's own physics plus a known seasonal
tendency, the trainer's fit recovers that tendency; it is checkpointed, restored and never
trained; bad settings are refused by name."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    FITTED_K as K,
    FITTED_LEVELS as LEVELS,
    FITTED_YEARS as YEARS,
    FORCING_STD,
    TINY_CORRECTOR,
    assert_fitted_field_frozen,
    fitted_world,
    train_and_refit,
)

from neuralogcm_jax import ConfigError
from neuralogcm_jax.data import h5format, h5write
from neuralogcm_jax.data.h5format import days_in_year
from neuralogcm_jax.data.normalize import Stats, climatology_at
from neuralogcm_jax.model import PurePhysics, ModelConfig, build_model
from neuralogcm_jax.rollout import make_step_fn
from neuralogcm_jax.testing import smooth_state

FORCING_MEAN = np.array([4.0, 1.0, 290.0, 101325.0], np.float32)  # u10, v10, t2m, msl


def _setup():
    """The layout, a 15 deg grid with a continent, per-channel wet masks, and the statistics'
    mean, std and (constant in time) climatology: `smooth_state`'s fields."""
    lay, g = fitted_world()
    n = lay.n_ocean
    wet_c = lay.wet_channels(g.wet)
    clim_state = np.asarray(lay.from_state(smooth_state(g, max_speed_m_s=0.3)), np.float32)
    std = np.concatenate([np.linspace(0.05, 0.5, n), FORCING_STD]).astype(np.float32)
    mean = np.concatenate([np.zeros(n, np.float32), FORCING_MEAN])
    clim = np.broadcast_to(np.where(wet_c[:n], clim_state, 0.0), (366, n) + g.shape)
    return lay, g, wet_c, mean, std, np.ascontiguousarray(clim, np.float32)


def known_correction(lay, g, wet_c, seed=0) -> np.ndarray:
    """``[2K+1, n_ocean, H, W]``: a smooth seasonal tendency of 1-5 % of a channel std a day."""
    rng = np.random.default_rng(seed)
    n = lay.n_ocean
    lat = np.deg2rad(g.lat)[:, None]
    lon = np.deg2rad(g.lon)[None, :]
    shapes = [np.cos(lat) * np.cos(lon), np.sin(2 * lat), np.cos(lat) * np.sin(2 * lon)]
    c = np.zeros((2 * K + 1, n) + g.shape)
    for k in range(2 * K + 1):
        for ch in range(n):
            c[k, ch] = 0.03 * rng.uniform(0.3, 1.0) * shapes[(k + ch) % 3]
    return np.where(wet_c[:n][None], c, 0.0).astype(np.float32)


def write_physics_dataset(root: Path, model_cfg: ModelConfig, noise: float = 0.0):
    """Two training years made by the model's own pure physics (its initial coefficients and
    climate damping) plus `known_correction` (plus white noise of `noise` channel std a day),
    from the climatology on 1 January 2019 under a constant forcing; returns the correction."""
    lay, g, wet_c, mean, std, clim = _setup()
    h5write.write_stats(root, mean, std, clim)
    n, C = lay.n_ocean, lay.n_channels
    stats = h5format.load_stats(root, lay, wet_c)  # as the trainer will read them
    c_true = known_correction(lay, g, wet_c)
    model = build_model(model_cfg, g, stats, seed=0)
    truth = PurePhysics.of(model)
    truth.tendency_correction[...] = jnp.asarray(c_true)
    step_fn, variables = make_step_fn(truth)
    step = jax.jit(step_fn)
    rng = np.random.default_rng(7)
    wet_n = jnp.asarray(wet_c[:n], jnp.float32)
    a = jnp.zeros((1, n) + g.shape, jnp.float32)
    forcing = jnp.zeros((1, lay.n_forcing) + g.shape, jnp.float32)  # the mean forcing
    for y in YEARS:
        T = days_in_year(y)
        days = np.zeros((T, C) + g.shape, np.float32)
        for t in range(T):
            if t > 0 or y != YEARS[0]:
                doy0 = t - 1 if t > 0 else days_in_year(y - 1) - 1
                a = step(variables, a, forcing, jnp.array([doy0], jnp.int32),
                         jnp.array([t], jnp.int32))
                a = a + noise * wet_n * jnp.asarray(rng.normal(size=a.shape), jnp.float32)
            days[t, :n] = stats.anomaly_to_physical(np.asarray(a[0]), t)
        days[:, n:] = FORCING_MEAN[:, None, None]
        days = np.where(wet_c[None], days, np.nan).astype(np.float32)
        h5write.write_year(root / "train" / f"{y}.h5", days, g.lat, g.lon, g.depth)
    assert np.all(np.isfinite(np.asarray(a))) and float(jnp.abs(a).max()) < 50.0
    return c_true


def _cfg(root, out, extra=()):
    from neuralogcm_jax.train import config as config_lib

    return config_lib.load_config(None, [
        f"data.root={root}", f"train.out_dir={out}", "model.climate_damping_days=30",
        f"model.tendency_correction_harmonics={K}", "model.corrector_sees_physics=true",
        "train.epochs=1", "train.steps_per_epoch=2", "train.log_every=1",
        "checkpoint.save_every=2", "data.batch_size=1", *TINY_CORRECTOR, *extra])


def _root(tmp_path_factory, noise):
    root = tmp_path_factory.mktemp("tendency") / "data"
    c_true = write_physics_dataset(root, _cfg(root, root.parent / "unused").model, noise)
    return root, c_true


@pytest.fixture(scope="module")
def exact_root(tmp_path_factory):
    return _root(tmp_path_factory, 0.0)


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory):
    return _root(tmp_path_factory, 0.02)


def test_the_fit_recovers_the_known_tendency_of_data_made_by_the_physics(exact_root, tmp_path):
    """Two years of the model's own physics plus a known seasonal tendency (1-3 % of a channel
    std a day): the correction fitted before the first step (`apply_fitted_fields`, as `train`
    runs it) equals the known one to 1e-3 of its largest value (float32 round trips through
    physical units and the HDF5 files)."""
    from neuralogcm_jax.train.fitted import apply_fitted_fields
    from neuralogcm_jax.train.preflight import resolve_model_config
    from neuralogcm_jax.train.traindata import open_data

    root, c_true = exact_root
    cfg = _cfg(root, tmp_path / "run")
    data = open_data(cfg)
    model = build_model(resolve_model_config(cfg.model, data, "train"), data.grid, data.stats,
                        seed=0)
    np.testing.assert_array_equal(np.asarray(model.tendency_correction[...]), 0.0)
    apply_fitted_fields(model, data, "train")
    scale = float(np.abs(c_true).max())
    np.testing.assert_allclose(np.asarray(model.tendency_correction[...]), c_true,
                               atol=1e-3 * scale)


def test_training_keeps_the_fitted_correction_and_checkpoints_it(noisy_root, tmp_path):
    """The same data with day-to-day noise (so the loss has something to learn): two training
    steps move the corrector and every coefficient but not the correction, which the
    checkpoint holds as fitted (the fit is deterministic: a refit equals it bit for bit);
    `load_model` restores it, and the restored pure physics adds it to the physics' day."""
    from neuralogcm_jax.rollout import load_model

    root, c_true = noisy_root
    cfg = _cfg(root, tmp_path / "run")
    run, fitted = train_and_refit(cfg, "tendency_correction")
    assert run.step == 2
    scale = float(np.abs(c_true).max())
    np.testing.assert_allclose(fitted, c_true, atol=0.2 * scale)  # noise 0.02 a day

    model = load_model(cfg.checkpoint_dir)
    phys = PurePhysics.of(model)
    zero = PurePhysics.of(model)
    zero.tendency_correction[...] = jnp.zeros_like(zero.tendency_correction[...])
    lay, g, *_ = _setup()
    a = jnp.asarray(np.random.default_rng(1).normal(size=(2, lay.n_ocean) + g.shape) * 0.1,
                    jnp.float32) * model.wet[...]
    f = jnp.zeros((2, 4) + g.shape, jnp.float32)
    doy, nxt = jnp.array([40, 364]), jnp.array([41, 365])
    diff = phys.step(a, f, doy, doy_next=nxt) - zero.step(a, f, doy, doy_next=nxt)
    want = climatology_at(jnp.asarray(fitted), nxt) * model.wet[...]
    np.testing.assert_allclose(np.asarray(diff), np.asarray(want), atol=1e-6)


def test_the_correction_gets_no_gradient_and_no_update():
    """The loss's gradient with respect to the correction is exactly zero, and an optimizer
    step with a nonzero gradient there (as if one leaked) leaves it unchanged."""
    lay, g, *_ = _setup()
    stats = Stats.identity(np.asarray(g.wet), lay)
    cfg = ModelConfig(climate_damping_days=30.0, tendency_correction_harmonics=K)
    model = build_model(cfg, g, stats, seed=0)
    model.tendency_correction[...] = jnp.full_like(model.tendency_correction[...], 0.01)
    a = jnp.ones((1, lay.n_ocean) + g.shape, jnp.float32) * 0.1
    assert_fitted_field_frozen(model, "tendency_correction", a,
                               jnp.zeros((1, 4) + g.shape, jnp.float32))


def test_bad_settings_and_formats_are_refused_by_name(exact_root, tmp_path):
    from neuralogcm_jax.train.fitted import fit_tendency_correction
    from neuralogcm_jax.train.preflight import resolve_model_config
    from neuralogcm_jax.train.traindata import open_data

    for bad in (-1, 13, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="tendency_correction_harmonics"):
            ModelConfig(tendency_correction_harmonics=bad)
    root, _ = exact_root
    cfg = _cfg(root, tmp_path / "run")
    data = open_data(cfg)
    with pytest.raises(ConfigError, match="tendency_correction_harmonics"):
        resolve_model_config(cfg.model, dataclasses.replace(data, day_blocks=None), "train")
    base = resolve_model_config(dataclasses.replace(cfg.model, name="unet"), data, "train")
    assert base.tendency_correction_harmonics is None
    # less than a year for annual harmonics: named, not an ill-conditioned fit
    model = build_model(cfg.model, data.grid, data.stats, seed=0)
    blocks, _ = data.day_blocks("train", 16, 1)
    with pytest.raises(ConfigError, match="cover 16 days of the year"):
        fit_tendency_correction(model, [next(iter(blocks))])
