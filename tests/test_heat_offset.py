"""The surface heat flux's fitted target offset (`model.heat_offset_harmonics`, primitive-mode
hybrid): the trainer's fit recovers a known seasonal SST - t2m offset from the data, the physics
restores toward ``t2m + offset``, the offset is checkpointed, restored and never trained; bad
settings are refused by name."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import helpers

from neuralogcm_jax import ConfigError
from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.h5format import days_in_year
from neuralogcm_jax.data.normalize import Stats, climatology_at
from neuralogcm_jax.model import ModelConfig, PurePhysics, build_model
from neuralogcm_jax.physics import PhysicsConfig
from neuralogcm_jax.testing import smooth_state

LEVELS, K, YEARS = helpers.FITTED_LEVELS, helpers.FITTED_K, helpers.FITTED_YEARS
FORCING_MEAN = np.array([4.0, 1.0, 285.0, 101325.0], np.float32)  # u10, v10, t2m, msl
FORCING_STD = helpers.FORCING_STD
_grid = helpers.fitted_world


def known_offset(g) -> np.ndarray:
    """``[2K+1, H, W]`` (K): a sea warmer than the air by 0.5-2.5 K on average, with a seasonal
    swing of up to 1.5 K that changes sign across the equator."""
    lat = np.deg2rad(g.lat)[:, None]
    lon = np.deg2rad(g.lon)[None, :]
    o = np.stack([1.5 + np.cos(lat) * np.cos(lon), 1.5 * np.sin(lat) + 0 * lon,
                  0.4 * np.cos(lat) * np.sin(2 * lon)])
    return (o * g.wet[0]).astype(np.float32)


def write_dataset(root: Path, years=YEARS):
    """Years whose air temperature swings through the seasons over a fixed pattern and whose
    top-level T is the air temperature (degC) plus `known_offset`; the rest of the ocean is
    `smooth_state` (also its climatology). Returns the offset."""
    lay, g = _grid()
    n, C = lay.n_ocean, lay.n_channels
    wet_c = lay.wet_channels(g.wet)
    clim_state = np.asarray(lay.from_state(smooth_state(g, max_speed_m_s=0.3)), np.float32)
    std = np.concatenate([np.linspace(0.05, 0.5, n), FORCING_STD]).astype(np.float32)
    mean = np.concatenate([np.zeros(n, np.float32), FORCING_MEAN])
    clim = np.broadcast_to(np.where(wet_c[:n], clim_state, 0.0), (366, n) + g.shape)
    h5write.write_stats(root, mean, std, np.ascontiguousarray(clim, np.float32))
    o_true = known_offset(g)
    top = lay.var_slice("T").start
    lat = np.deg2rad(g.lat)[:, None]
    for y in years:
        T = days_in_year(y)
        d = np.arange(T)
        t2m = (288.0 - 20.0 * np.abs(np.sin(lat))[None]
               + 8.0 * np.sin(lat)[None] * np.cos(2 * np.pi * (d - 200) / 365.25)[:, None, None]
               + 0 * g.lon[None, None, :])
        days = np.broadcast_to(clim_state, (T, n) + g.shape).copy()
        days[:, top] = t2m - 273.15 + climatology_at(o_true[:, None], d)[:, 0]
        forcing = np.broadcast_to(FORCING_MEAN[None, :, None, None], (T, 4) + g.shape).copy()
        forcing[:, 2] = t2m
        x = np.concatenate([days, forcing], axis=1)
        x = np.where(wet_c[None], x, np.nan).astype(np.float32)
        h5write.write_year(root / "train" / f"{y}.h5", x, g.lat, g.lon, g.depth)
    return o_true


def _cfg(root, out, extra=()):
    from neuralogcm_jax.train import config as config_lib

    return config_lib.load_config(None, [
        f"data.root={root}", f"train.out_dir={out}", "model.physics.mode=primitive",
        f"model.heat_offset_harmonics={K}", "train.epochs=1", "train.steps_per_epoch=2",
        "train.log_every=1", "checkpoint.save_every=2", "data.batch_size=1", *helpers.TINY_CORRECTOR,
        *extra])


@pytest.fixture(scope="module")
def offset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("heat_offset") / "data"
    return root, write_dataset(root)


def test_training_fits_the_offset_checkpoints_it_and_never_moves_it(offset_root, tmp_path):
    """Two years whose top-level T is the air temperature plus a known seasonal offset: the
    offset fitted before the first step equals the known one to 1e-3 K (float32 round trips
    through anomalies and the HDF5 files); two training steps of the primitive-mode hybrid move
    the corrector and every coefficient but not the offset, which the checkpoint holds bit for
    bit as a refit gives it; `load_model` restores it."""
    root, o_true = offset_root
    cfg = _cfg(root, tmp_path / "run")
    run, fitted = helpers.train_and_refit(cfg, "heat_offset")
    assert run.step == 2
    np.testing.assert_allclose(fitted, o_true, atol=1e-3)


def _model(offset=None, pure=True, **physics):
    """A pure-physics primitive-mode hybrid on `_grid` whose statistics put the anomaly 0 at
    S 35 psu, T 15 degC and the forcing at `FORCING_MEAN` (std 1 in the ocean)."""
    lay, g = _grid()
    L = LEVELS
    mean = np.concatenate([np.full(L, 35.0), np.zeros(2 * L), np.full(L, 15.0), [0.0],
                           FORCING_MEAN]).astype(np.float32)
    std = np.concatenate([np.ones(lay.n_ocean), FORCING_STD]).astype(np.float32)
    wet = lay.wet_channels(np.asarray(g.wet))[: lay.n_ocean]
    stats = Stats.build(mean, std, None, wet, lay,
                        harmonics=np.zeros((3,) + wet.shape, np.float32))
    cfg = ModelConfig(physics=PhysicsConfig(mode="primitive", **physics),
                      heat_offset_harmonics=None if offset is None else K)
    model = build_model(cfg, g, stats, seed=0)
    model = PurePhysics.of(model) if pure else model
    if offset is not None:
        model.heat_offset[...] = jnp.asarray(offset)
    return lay, g, model


def test_the_physics_restores_toward_the_air_temperature_plus_the_offset():
    """The pure physics with an offset equals the pure physics without one whose forcing's
    t2m is raised by the offset of the target day (to float32 round-off), and the offset
    warms the sea against the same physics without it (so the first claim can fail)."""
    lay, g, with_o = _model(known_offset(g=_grid()[1]))
    _, _, without = _model(None)
    n = lay.n_ocean
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(2, n) + g.shape) * 0.1, jnp.float32) * with_o.wet[...]
    f = jnp.asarray(rng.normal(size=(2, 4) + g.shape), jnp.float32)
    doy, nxt = jnp.array([40, 364]), jnp.array([41, 365])
    o_next = climatology_at(jnp.asarray(known_offset(g))[:, None], nxt)[:, 0]
    raised = f.at[:, 2].add(o_next / FORCING_STD[2])  # normalised forcing
    got = with_o.step(a, f, doy, doy_next=nxt)
    want = without.step(a, raised, doy, doy_next=nxt)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)
    top = lay.var_slice("T").start
    warmer = np.asarray(got[:, top] - without.step(a, f, doy, doy_next=nxt)[:, top])
    assert warmer[:, g.wet[0]].mean() > 1e-3


def test_the_offset_gets_no_gradient_and_no_update():
    """The hybrid's loss has exactly zero gradient with respect to the offset (and a nonzero
    one for every physics coefficient), and an optimizer step with a nonzero gradient there
    (as if one leaked) leaves it unchanged while it moves the coefficients."""
    lay, g, model = _model(known_offset(g=_grid()[1]), pure=False)
    a = jnp.ones((1, lay.n_ocean) + g.shape, jnp.float32) * 0.1 * model.wet[...]
    helpers.assert_fitted_field_frozen(model, "heat_offset", a,
                                       jnp.zeros((1, 4) + g.shape, jnp.float32), "heat_restoring")


@pytest.mark.parametrize("bad", [-1, 13, 1.5, True, "2"])
def test_bad_harmonics_are_named(bad):
    with pytest.raises(ConfigError, match="heat_offset_harmonics"):
        ModelConfig(physics=PhysicsConfig(mode="primitive"), heat_offset_harmonics=bad)


def test_an_offset_without_primitive_heat_flux_is_named():
    with pytest.raises(ConfigError, match="heat_offset_harmonics.*primitive.*paper"):
        ModelConfig(heat_offset_harmonics=1)  # paper mode: no surface heat flux
    with pytest.raises(ConfigError, match="heat_offset_harmonics.*heat_flux false"):
        ModelConfig(physics=PhysicsConfig(mode="primitive", primitive={"heat_flux": False}),
                    heat_offset_harmonics=1)


def test_a_baseline_drops_the_offset_and_bad_data_is_named(offset_root, tmp_path):
    """A baseline has no heat flux: its config drops the key unread. A format that cannot be
    read day by day, and days covering a month of the year for annual harmonics: one
    ConfigError each, naming the key."""
    import dataclasses
    import itertools

    from neuralogcm_jax.train.fitted import fit_heat_offset
    from neuralogcm_jax.train.preflight import resolve_model_config
    from neuralogcm_jax.train.traindata import open_data

    root, _ = offset_root
    cfg = _cfg(root, tmp_path / "run")
    data = open_data(cfg)
    base = resolve_model_config(dataclasses.replace(cfg.model, name="unet"), data, "train")
    assert base.heat_offset_harmonics is None
    with pytest.raises(ConfigError, match="heat_offset_harmonics needs a data root"):
        resolve_model_config(cfg.model, dataclasses.replace(data, day_blocks=None), "train")
    model = build_model(cfg.model, data.grid, data.stats, seed=0)
    blocks, _ = data.day_blocks("train", 16, 0)
    with pytest.raises(ConfigError, match="heat_offset_harmonics = 1.*cover 32 days of the year"):
        fit_heat_offset(model, itertools.islice(blocks, 2))
