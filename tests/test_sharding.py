"""Claims about the sharded train step, the loss and the optimizer on 8 faked CPU devices."""

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import NaNGradientForecaster, assert_no_step_skipped, assert_params_moved
from jax.sharding import PartitionSpec as P

from neuralogcm_jax import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.train import config as C
from neuralogcm_jax.train import sharding as SH
from neuralogcm_jax.train import state as S
from neuralogcm_jax.train.loss import loss_weights, weighted_mse
from neuralogcm_jax.train.optim import make_optimizer, param_labels
from tests.toy import DiffusionForecaster


def toy_grid():
    g = Grid.regular(15.0, depth=(5.0, 50.0))  # 12 x 24, 2 levels
    wet = g.wet.copy()
    wet[:, 3:6, 4:8] = False  # a continent
    wet[1, 8, :5] = False  # a shelf: the deep level is drier
    return g.with_wet(wet)


def toy_batch(layout, grid, B=8, K=2, seed=0):
    rng = np.random.default_rng(seed)
    H, W = grid.shape
    wet = layout.wet_channels(grid.wet)[: layout.n_ocean]
    return {
        "state": (rng.normal(size=(B, layout.n_ocean, H, W)) * wet).astype(np.float32),
        "forcing": rng.normal(size=(B, K, 4, H, W)).astype(np.float32),
        "target": (rng.normal(size=(B, K, layout.n_ocean, H, W)) * wet).astype(np.float32),
        "doy": np.arange(B, dtype=np.int32) * 40,
    }


def one_step(mesh_shape, optim_overrides=(), batch=None, K=2, model=None):
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    if model is None:
        model = DiffusionForecaster(grid, layout, rngs=nnx.Rngs(0))
    graphdef, *mv = S.split_model(model)
    cfg = C.load_config(None, ["model.name=diffusion_toy", "optim.warmup_steps=0",
                               "optim.schedule=constant", *optim_overrides])
    tx = make_optimizer(cfg.optim, 10)
    n = mesh_shape[0] * mesh_shape[1]
    mesh = SH.make_mesh(*mesh_shape, devices=jax.devices()[:n])
    ts = S.place_train_state(tuple(mv), tx, 0, mesh)
    step = S.make_train_step(graphdef, tx, loss_weights(grid, layout), mesh, k_steps=K)
    batch = toy_batch(layout, grid, K=K) if batch is None else batch
    ts, met = step(ts, SH.shard_batch(batch, mesh))
    return jax.device_get(ts), jax.device_get(met), mesh


@pytest.fixture(scope="module")
def single_device_step():
    return one_step((1, 1))


@pytest.mark.parametrize("mesh_shape", [(8, 1), (4, 2)], ids=["data8", "data4_x2"])
def test_sharded_step_equals_single_device_step(single_device_step, mesh_shape):
    ref_ts, ref_met, _ = single_device_step
    ts, met, mesh = one_step(mesh_shape)
    assert mesh.shape == {"data": mesh_shape[0], "x": mesh_shape[1]}
    np.testing.assert_allclose(met["loss"], ref_met["loss"], rtol=1e-5)
    np.testing.assert_allclose(met["grad_norm"], ref_met["grad_norm"], rtol=1e-5)
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    _, p0, _, _ = S.split_model(DiffusionForecaster(grid, layout, rngs=nnx.Rngs(0)))
    moved = 0
    for a, b, a0 in zip(jax.tree.leaves(ts["params"]), jax.tree.leaves(ref_ts["params"]),
                        jax.tree.leaves(p0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        moved += int(not np.allclose(a, a0, rtol=1e-6, atol=0))
    assert moved == len(jax.tree.leaves(p0))  # every parameter took the step
    assert int(ts["step"]) == int(ref_ts["step"]) == 1
    assert_no_step_skipped(ts)
    assert int(met["finite"]) == 1 and int(met["loss_finite"]) == 1
    assert met["grad_finite"] == {"corrector.bias": 1, "corrector.kernel": 1,
                                  "physics_params.nu_m": 1, "physics_params.nu_t": 1}


def test_batch_is_split_over_data_and_longitude_over_x():
    mesh = SH.make_mesh(4, 2)
    assert SH.batch_spec(4, mesh) == P("data", None, None, "x")
    assert SH.batch_spec(5, mesh) == P("data", None, None, None, "x")
    assert SH.batch_spec(1, mesh) == P("data")
    x = SH.shard_batch({"state": np.zeros((8, 3, 12, 24), np.float32)}, mesh)["state"]
    assert x.sharding.shard_shape(x.shape) == (2, 3, 12, 12)
    assert SH.batch_spec(4, SH.make_mesh(8, 1)) == P("data", None, None, None)


def test_mesh_and_batch_that_do_not_fit_are_config_errors():
    with pytest.raises(ConfigError, match="mesh.data"):
        SH.make_mesh(3, 1)  # 3 x 1 != 8 devices
    with pytest.raises(ConfigError, match="mesh.x = 3"):
        SH.make_mesh(-1, 3)
    mesh = SH.make_mesh(4, 2)
    with pytest.raises(ConfigError, match="global batch size 6 .* 4 devices"):
        SH.check_batch_layout(6, 24, mesh)
    with pytest.raises(ConfigError, match="25 longitudes"):
        SH.check_batch_layout(8, 25, mesh)
    SH.check_batch_layout(8, 24, mesh)


def test_loss_is_an_area_weighted_mean_over_wet_cells_only():
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    w = loss_weights(grid, layout)
    assert w.shape == (layout.n_ocean, 12, 24) and w.sum() == pytest.approx(1.0, rel=1e-6)
    wet = layout.wet_channels(grid.wet)[: layout.n_ocean]
    assert np.all(w[~wet] == 0)
    zero = np.zeros((2, layout.n_ocean, 12, 24), np.float32)
    # off by one standard deviation everywhere -> loss 1, whatever happens on land
    one = np.ones_like(zero)
    one[:, ~wet] = 1e6
    assert float(weighted_mse(one, zero, w)) == pytest.approx(1.0, rel=1e-5)
    # an error in a polar row counts as much less as its cell is smaller
    polar, equatorial = zero.copy(), zero.copy()
    polar[:, 0, 0, 10] = 1.0
    equatorial[:, 0, 6, 10] = 1.0
    ratio = float(weighted_mse(polar, zero, w)) / float(weighted_mse(equatorial, zero, w))
    assert ratio == pytest.approx(grid.area[0] / grid.area[6], rel=1e-5)
    # per-variable weights: T errors count double
    wt = loss_weights(grid, layout, {"T": 2.0})
    t_only = zero.copy()
    t_only[:, layout.var_slice("T")] = 1.0
    s_only = zero.copy()
    s_only[:, layout.var_slice("S")] = 1.0
    assert float(weighted_mse(t_only, zero, wt)) == pytest.approx(
        2 * float(weighted_mse(s_only, zero, wt)), rel=1e-5)
    with pytest.raises(ConfigError, match="train.var_weights.Q"):
        loss_weights(grid, layout, {"Q": 1.0})


def test_physics_coefficients_get_their_own_learning_rate():
    ts0 = jax.device_get(one_step((1, 1), ["optim.lr=0.0"])[0])  # only physics moves
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    _, p0, _, _ = S.split_model(DiffusionForecaster(grid, layout, rngs=nnx.Rngs(0)))
    assert_no_step_skipped(ts0)
    assert_params_moved(p0, ts0["params"], networks=False)
    labels = param_labels(p0)
    assert labels["physics_params"]["nu_m"] == "physics"
    assert labels["corrector"]["kernel"] == "network"
    np.testing.assert_array_equal(ts0["params"]["corrector"]["kernel"], p0["corrector"]["kernel"])
    # Adam's first step moves each raw coefficient by the learning rate (1e-2 by default)
    for k in ("nu_m", "nu_t"):
        d = abs(float(ts0["params"]["physics_params"][k]) - float(p0["physics_params"][k]))
        assert d == pytest.approx(1e-2, rel=1e-3)
    # trainable=network freezes the coefficients
    ts1 = jax.device_get(one_step((1, 1), ["optim.trainable=network"])[0])
    assert_no_step_skipped(ts1)
    assert_params_moved(p0, ts1["params"], physics=False)
    assert float(ts1["params"]["physics_params"]["nu_m"]) == float(p0["physics_params"]["nu_m"])
    assert not np.array_equal(ts1["params"]["corrector"]["kernel"], p0["corrector"]["kernel"])


def test_a_non_finite_loss_skips_the_update_and_is_counted():
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    batch = toy_batch(layout, grid)
    batch["target"][0, 0, 0, 6, 10] = np.nan
    ts, met, _ = one_step((8, 1), batch=batch)
    _, p0, _, _ = S.split_model(DiffusionForecaster(grid, layout, rngs=nnx.Rngs(0)))
    assert not np.isfinite(met["loss"]) and int(met["finite"]) == 0
    assert int(met["loss_finite"]) == 0
    assert int(ts["nonfinite"]) == 1 and int(ts["skipped"]) == 1 and int(ts["step"]) == 1
    for a, b in zip(jax.tree.leaves(ts["params"]), jax.tree.leaves(p0)):
        np.testing.assert_array_equal(a, b)


def test_the_step_names_the_parameter_group_whose_gradient_is_not_finite():
    """A finite loss whose gradient is NaN through nu_t alone: the update is skipped and the
    metrics flag physics_params.nu_t, and only it."""
    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    model = NaNGradientForecaster(grid, layout, poisoned="nu_t", rngs=nnx.Rngs(0))
    ts, met, _ = one_step((8, 1), model=model)
    assert np.isfinite(met["loss"]) and int(met["loss_finite"]) == 1
    assert int(met["finite"]) == 0 and int(ts["skipped"]) == 1
    assert met["grad_finite"] == {"corrector.bias": 1, "corrector.kernel": 1,
                                  "physics_params.nu_m": 1, "physics_params.nu_t": 0}
    _, p0, _, _ = S.split_model(DiffusionForecaster(grid, layout, rngs=nnx.Rngs(0)))
    for a, b in zip(jax.tree.leaves(ts["params"]), jax.tree.leaves(p0)):
        np.testing.assert_array_equal(a, b)
    # the same model on days before `from_doy` trains normally: the poison is exact
    model = NaNGradientForecaster(grid, layout, poisoned="nu_t", from_doy=400, rngs=nnx.Rngs(0))
    ts, met, _ = one_step((8, 1), model=model)
    assert_no_step_skipped(ts)
    assert_params_moved(p0, ts["params"])
