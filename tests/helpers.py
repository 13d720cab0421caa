"""Shared claims of the tests that train: no update was skipped, and the parameters moved.

The train step skips an update whose loss or gradient is not finite; a test that trains and only
looks at the end state cannot tell "trained" from "every update skipped". Every test that trains
(except those about skipping) checks both with these helpers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from neuralogcm_jax.testing import run_in_own_group
from neuralogcm_jax.train import state as S
from neuralogcm_jax.train.optim import PHYSICS_KEY
from tests.toy import DiffusionForecaster

PHYSICS_PREFIX = f"{PHYSICS_KEY}."

# The world of the fitted-field tests (`test_tendency_correction.py`, `test_heat_offset.py`):
# two levels on a 15 deg grid with a continent, two years (2020 a leap year: day-of-year index
# 365 occurs), annual harmonics up to K = 1, a tiny corrector, and the forcing's statistics.
FITTED_LEVELS = 2
FITTED_K = 1
FITTED_YEARS = (2019, 2020)
TINY_CORRECTOR = ("model.corrector.hid_channels=8", "model.corrector.num_heads=2",
                  "model.corrector.n_attention_blocks=1", "model.corrector.norm_groups=4")
FORCING_STD = np.array([3.0, 3.0, 10.0, 500.0], np.float32)  # u10, v10, t2m, msl


def assert_fitted_field_frozen(model, key: str, a, f, coefficient: str | None = None) -> None:
    """The fitted field `key` of the hybrid `model` (fitted before training, never trained):
    the gradient of a one-day loss from anomalies `a` under forcing `f` is exactly zero there
    and nonzero for the physics coefficients (for `coefficient`, when given); the optimizer labels it "fitted", and a step
    with a nonzero gradient there (as if one leaked) leaves it unchanged while it moves every
    coefficient."""
    import jax.numpy as jnp
    import optax

    from neuralogcm_jax.train.config import OptimConfig
    from neuralogcm_jax.train.optim import make_optimizer, param_labels

    graphdef, params, rngs, consts = S.split_model(model)

    def loss(p):
        m = S.merge_model(graphdef, p, rngs, consts)
        return jnp.sum(m.step(a, f, jnp.array([10])) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    assert float(jnp.abs(grads[key]).max()) == 0.0
    assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(grads[PHYSICS_KEY]))
    if coefficient is not None:
        assert float(jnp.abs(grads[PHYSICS_KEY][coefficient]).max()) > 0
    assert param_labels(params)[key] == "fitted"
    tx = make_optimizer(OptimConfig(warmup_steps=0), 10)
    leak = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(leak, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(np.asarray(new[key]), np.asarray(params[key]))
    moved = jax.tree.map(lambda x, y: bool(jnp.any(x != y)), new[PHYSICS_KEY],
                         params[PHYSICS_KEY])
    assert all(jax.tree.leaves(moved))


def train_and_refit(cfg, key: str):
    """Train `cfg` (a hybrid with the fitted field `key`): the run takes its steps with none
    skipped and moves the coefficients and the corrector; its last checkpoint holds the field
    bit for bit as a refit of a fresh model gives it (the fit is deterministic), and
    `load_model` restores it. Returns ``(run, field)``."""
    from neuralogcm_jax.model import build_model
    from neuralogcm_jax.rollout import load_model
    from neuralogcm_jax.train.fitted import apply_fitted_fields
    from neuralogcm_jax.train.loop import train
    from neuralogcm_jax.train.preflight import resolve_model_config
    from neuralogcm_jax.train.traindata import open_data

    run = train(cfg, progress=False)
    assert_trained(run, cfg)  # no skipped step; coefficients and corrector moved
    _, params = checkpoint_params(cfg.checkpoint_dir)
    fitted = params[key]
    data = open_data(cfg)
    fresh = build_model(resolve_model_config(cfg.model, data, "train"), data.grid, data.stats,
                        seed=0)
    np.testing.assert_array_equal(np.asarray(getattr(fresh, key)[...]), 0.0)
    apply_fitted_fields(fresh, data, "train")
    np.testing.assert_array_equal(fitted, np.asarray(getattr(fresh, key)[...]))
    np.testing.assert_array_equal(np.asarray(getattr(load_model(cfg.checkpoint_dir), key)[...]),
                                  fitted)
    return run, fitted


def fitted_world():
    """``(layout, grid)`` of the fitted-field tests."""
    from neuralogcm_jax.grid import Grid
    from neuralogcm_jax.layout import ChannelLayout

    lay = ChannelLayout.with_levels(FITTED_LEVELS)
    g = Grid.regular(15.0, depth=lay.depths_m)
    wet = np.ones((FITTED_LEVELS,) + g.shape, bool)
    wet[:, 3:6, 4:8] = False  # a continent
    return lay, g.with_wet(wet)


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def group_leaves(params) -> dict[str, list[np.ndarray]]:
    """``group -> [leaves]`` with the grouping of the train step (`state.param_group`)."""
    out: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(host(params)):
        out.setdefault(S.param_group(path), []).append(leaf)
    return out


def changed_groups(before, after) -> set[str]:
    """The parameter groups in which at least one entry differs between two params pytrees."""
    b, a = group_leaves(before), group_leaves(after)
    assert b.keys() == a.keys(), (sorted(b), sorted(a))
    return {g for g in b if any(not np.array_equal(x, y) for x, y in zip(b[g], a[g]))}


def assert_params_moved(before, after, *, physics: bool = True, networks: bool = True) -> None:
    """Training moved every physics coefficient (`physics`: they were trainable) and at least
    one network group (`networks`: there is a network and it was trainable)."""
    groups = set(group_leaves(before))
    moved = changed_groups(before, after)
    phys = {g for g in groups if g.startswith(PHYSICS_PREFIX)}
    nets = groups - phys
    if physics:
        assert phys, f"no physics coefficients among the parameter groups {sorted(groups)}"
        assert phys <= moved, f"physics coefficients that did not move: {sorted(phys - moved)}"
    if networks:
        assert nets, f"no network among the parameter groups {sorted(groups)}"
        assert nets & moved, f"no network parameter moved; groups {sorted(nets)}"


def assert_no_step_skipped(run) -> None:
    """`run`: a `loop.RunResult`, or a train state of `state.make_train_step`."""
    ts = run if isinstance(run, dict) else run.train_state
    if not isinstance(run, dict):
        assert run.skipped == 0, f"{run.skipped} skipped steps: {run.skipped_by_group}"
        assert set(run.skipped_by_group) == set(S.param_groups(ts["params"]))
        assert not any(run.skipped_by_group.values()), run.skipped_by_group
    assert int(jax.device_get(ts["skipped"])) == 0, "the train state counts skipped steps"
    assert int(jax.device_get(ts["nonfinite"])) == 0


def initial_params(cfg):
    """The parameters a run of `cfg` starts from (the model rebuilt from its seed)."""
    from neuralogcm_jax.train.loop import model_config_for_run, open_data

    data = open_data(cfg)
    model = S.build_forecaster(model_config_for_run(cfg), data.grid, data.stats,
                               seed=cfg.train.seed)
    return host(S.split_model(model)[1])


def assert_trained(run, cfg, **moved_kw) -> None:
    """A `loop.train(cfg)` result: no step skipped, parameters moved from their start."""
    assert_no_step_skipped(run)
    assert_params_moved(initial_params(cfg), run.train_state["params"], **moved_kw)


def train_records(run_dir) -> list[dict]:
    """The ``kind: train`` records of a run's metrics.jsonl."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    return [r for r in recs if r.get("kind") == "train"]


def assert_log_has_no_skipped_step(run_dir) -> list[dict]:
    """Every train record of the run's log counts zero skipped steps, in every group."""
    recs = train_records(run_dir)
    assert recs, f"no train record in {run_dir}/metrics.jsonl"
    for r in recs:
        assert r["skipped_total"] == 0 and r["skipped_steps"] == 0, r
        assert r["skipped_by_group"] and not any(r["skipped_by_group"].values()), r
    return recs


def checkpoint_params(ckpt_dir, step: int | None = None):
    """``(step, params)`` of a checkpoint (latest if `step` is None), read back as numpy."""
    import orbax.checkpoint as ocp

    from neuralogcm_jax.train import checkpoint as CK

    ckpt_dir = Path(ckpt_dir)
    if step is None:
        step = CK.list_steps(ckpt_dir)[-1]
    path = (ckpt_dir / str(step) / "state").absolute()
    with ocp.PyTreeCheckpointer() as c:
        # as host numpy arrays, not onto the saving devices (which a checkpoint written by
        # several processes names but this process does not have)
        meta = c.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        tree = c.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    return step, host(tree["params"])


def assert_run_dir_trained(run_dir, **moved_kw) -> None:
    """A finished run directory (e.g. of a child process): its log counts no skipped step and
    its latest checkpoint's parameters differ from those the run started from."""
    from neuralogcm_jax.train import config as C

    run_dir = Path(run_dir)
    assert_log_has_no_skipped_step(run_dir)
    cfg = C.load_config(run_dir / "config.yaml")
    _, params = checkpoint_params(cfg.checkpoint_dir)
    assert_params_moved(initial_params(cfg), params, **moved_kw)


# ------------------------------------------------------------------ a NaN in one gradient
@jax.custom_vjp
def nan_gradient_if(x, flag):
    """A scalar 0 whose gradient with respect to `x` is NaN where `flag` (else 0)."""
    return jax.numpy.zeros((), x.dtype)


def _nan_fwd(x, flag):
    return jax.numpy.zeros((), x.dtype), (x, flag)


def _nan_bwd(res, g):
    x, flag = res
    jnp = jax.numpy
    return (jnp.where(flag, jnp.nan, 0.0).astype(x.dtype) * g * jnp.ones_like(x), None)


nan_gradient_if.defvjp(_nan_fwd, _nan_bwd)


class NaNGradientForecaster(DiffusionForecaster):
    """The toy model, with a finite loss, whose gradient with respect to the raw coefficient
    `poisoned` is NaN on every batch holding a sample with day of year >= `from_doy` (and exactly
    the toy's gradient otherwise)."""

    def __init__(self, *args, poisoned: str = "nu_m", from_doy: int = 0, **kw):
        super().__init__(*args, **kw)
        self.poisoned = poisoned
        self.from_doy = from_doy

    def step(self, state, forcing_next, doy, *, doy_next=None, deterministic: bool = True):
        out = super().step(state, forcing_next, doy, doy_next=doy_next,
                           deterministic=deterministic)
        raw = self.physics_params[self.poisoned].get_value()
        return out + nan_gradient_if(raw, jax.numpy.any(doy >= self.from_doy)).astype(out.dtype)


def run_child(cmd, *, env, cwd=None, timeout: float, what: str) -> tuple[int, str, str]:
    """Run `cmd` in its own process group (`testing.run_in_own_group`); on timeout the group is
    killed and the test fails naming `what`. Returns ``(returncode, stdout, stderr)``."""
    try:
        p = run_in_own_group(cmd, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} timed out after {timeout} s")
    return p.returncode, p.stdout, p.stderr
