"""Claims about pushforward training (``train.curriculum`` items ``[epoch, K, P]``): the K trained
days start from the model's own P-day forecast, no gradient flows through the P days, the
training loop runs such stages and moves the parameters, and bad stages are named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import assert_trained, train_records

from neuralogcm_jax import ConfigError
from neuralogcm_jax.rollout import rollout_scan
from neuralogcm_jax.train import config as C
from neuralogcm_jax.train import state as S
from neuralogcm_jax.train.loss import loss_weights
from neuralogcm_jax.train.preflight import check_config
from tests.test_train_loop import toy_dataset, toy_grid
from tests.toy import DiffusionForecaster

P, K, B = 3, 2, 2


def _setup():
    from neuralogcm_jax.layout import ChannelLayout

    grid = toy_grid()
    layout = ChannelLayout(tuple(grid.depth))
    model = DiffusionForecaster(grid, layout, physics_coefficients={"nu_m": 8e4, "nu_t": 3e3},
                                rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    wet = layout.wet_channels(grid.wet)
    n = layout.n_ocean
    days = (rng.normal(size=(B, P + K + 1, layout.n_channels) + grid.shape) * wet)
    days = days.astype(np.float32)
    doy0 = np.array([40, 200], np.int32)
    batch = {"state": jnp.asarray(days[:, 0, :n]), "forcing": jnp.asarray(days[:, 1:, n:]),
             "target": jnp.asarray(days[:, 1:, :n]), "doy": jnp.asarray(doy0),
             "target_doy": jnp.asarray(doy0[:, None] + np.arange(1, P + K + 1)[None])}
    graphdef, params, rngs, consts = S.split_model(model)
    w = jnp.asarray(loss_weights(grid, layout), jnp.float32)
    return graphdef, params, rngs, consts, batch, w


def test_pushforward_loss_is_the_k_day_loss_from_the_models_own_forecast_without_its_gradient():
    graphdef, params, rngs, consts, batch, w = _setup()
    doys = S.day_of_year_sequence(batch, P + K)

    def pushed(p):
        return S._rollout_loss(graphdef, p, rngs, consts, batch, w, K, True, False,
                               pushforward=P)[0]

    def forecast(p):  # the model's own P-day forecast from the window's first day
        traj, _ = rollout_scan(graphdef, (p, consts), batch["state"], batch["forcing"][:, :P],
                               doys[:, : P + 1], rngs=rngs)
        return traj[-1]

    def from_start(p, start):  # the plain K-day loss of a window starting at `start`, day P
        b = {"state": start, "forcing": batch["forcing"][:, P:], "target": batch["target"][:, P:],
             "doy": doys[:, P], "target_doy": batch["target_doy"][:, P:]}
        return S._rollout_loss(graphdef, p, rngs, consts, b, w, K, True, False)[0]

    loss, grads = jax.value_and_grad(pushed)(params)
    start = jax.lax.stop_gradient(forecast(params))
    ref, ref_grads = jax.value_and_grad(lambda p: from_start(p, start))(params)
    # the loss is the K-day loss from the P-day forecast against days P+1..P+K
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    assert float(loss) != pytest.approx(
        float(S._rollout_loss(graphdef, params, rngs, consts, batch, w, K, True, False)[0]),
        rel=1e-3)
    # ... and its gradient is that of the K trained days alone (the start held constant) ...
    flat, flat_ref = jax.tree.leaves(grads), jax.tree.leaves(ref_grads)
    for g, r in zip(flat, flat_ref, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-9)
    # ... which differs from the gradient through all P + K days (so the comparison can fail)
    _, full = jax.value_and_grad(lambda p: from_start(p, forecast(p)))(params)
    diff = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
               for a, b in zip(jax.tree.leaves(full), flat, strict=True))
    assert diff > 1e-3, diff


def test_training_runs_a_pushforward_stage_and_moves_every_parameter(tmp_path):
    from neuralogcm_jax.train.loop import train

    data = toy_dataset(tmp_path / "toy.npz")
    cfg = C.load_config(None, [
        "model.name=diffusion_toy", f"data.root={data}", "data.batch_size=1",
        f"train.out_dir={tmp_path / 'run'}", "train.epochs=2", "train.steps_per_epoch=3",
        "train.curriculum=[[0, 1], [1, 2, 4]]", "optim.warmup_steps=1", "train.log_every=1",
        "checkpoint.async_save=false"])
    run = train(cfg, progress=False)
    assert_trained(run, cfg)
    recs = train_records(tmp_path / "run")
    assert int(run.step) == 6
    stages = {(r["epoch"], r["k_steps"], r["pushforward_days"]) for r in recs}
    assert stages == {(0, 1, 0), (1, 2, 4)}, stages
    assert all(np.isfinite(r["loss"]) for r in recs)


@pytest.mark.parametrize("item", ["[[0, 2, -1]]", "[[0, 2, 3, 4]]", "[[0, 0, 3]]", "[[0]]"])
def test_a_bad_curriculum_stage_is_named(item):
    cfg = C.load_config(None, [f"train.curriculum={item}"])
    with pytest.raises(ConfigError, match=r"train\.curriculum\[0\]"):
        check_config(cfg)


def test_a_stage_longer_than_the_split_is_named_before_any_step(tmp_path):
    from neuralogcm_jax.train.loop import train

    data = toy_dataset(tmp_path / "toy.npz")  # 30 training days
    cfg = C.load_config(None, [
        "model.name=diffusion_toy", f"data.root={data}", "data.batch_size=2",
        f"train.out_dir={tmp_path / 'run'}", "train.epochs=2",
        "train.curriculum=[[0, 1], [1, 2, 28]]"])
    with pytest.raises(ConfigError, match=r"train\.curriculum at epoch 1: K = 2 .* 28 pushforward"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir())


def test_stages_of_the_curriculum():
    cfg = C.load_config(None, ["train.curriculum=[[0, 1], [2, 4], [3, 8, 16]]"])
    assert [cfg.stage_at_epoch(e) for e in range(5)] == [(1, 0), (1, 0), (4, 0), (8, 16), (8, 16)]
    assert [cfg.k_at_epoch(e) for e in range(5)] == [1, 1, 4, 8, 8]
    assert [cfg.pushforward_at_epoch(e) for e in range(5)] == [0, 0, 0, 16, 16]
