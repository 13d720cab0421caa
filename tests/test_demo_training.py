"""The demo's own training configuration applies every update.

`make demo` once trained with every update skipped: the float32 gradients of nu_m and nu_t were
NaN on the CPU (an XLA fusion bug, see `neuralogcm_jax._xla_flags`), the guard of the train step
skipped each update, and the run died after ``train.nonfinite_patience`` steps. The fault showed
only in float32 with x64 disabled, as the demo runs; this test process enables x64, so the
dataset and the training run in child processes through the command line, as `make demo` does.

Slow (about 4 minutes, most of it the dataset). CI runs `make demo` after `make test`: the demo
trains this configuration for 240 steps on the full demo dataset and fails (exit 2) when any
update was skipped or a learnable physics coefficient never moved (`demo.check_trained`, tested
in tests/test_demo.py). The default set keeps the float32 gradient check at the demo's grid
(tests/test_gradients.py::test_hybrid_gradients_at_the_demo_configuration).

``DEMO_TEST_XLA_FLAGS`` sets the children's XLA_FLAGS (default: none, one CPU device, like
`make demo`); ``--xla_cpu_experimental_ynn_fusion_type=+reduce`` restores the faulty XLA default
and makes this test fail.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from helpers import (
    assert_log_has_no_skipped_step,
    assert_run_dir_trained,
    checkpoint_params,
    run_child,
)

from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS
from neuralogcm_jax.train.config import CONFIG_DIR

STEPS = 20
SMALL_CORRECTOR = ["model.corrector.hid_channels=16", "model.corrector.num_heads=2",
                   "model.corrector.n_attention_blocks=1", "model.corrector.norm_groups=4"]


def child_env() -> dict:
    """The children's environment: x64 off, `DEMO_TEST_XLA_FLAGS`, the CPU."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env.update(XLA_FLAGS=os.environ.get("DEMO_TEST_XLA_FLAGS", ""), JAX_PLATFORMS="cpu")
    return env


def child(args, timeout):
    """``python -m neuralogcm_jax.cli ARGS`` with x64 off; its process group killed on timeout."""
    return run_child([sys.executable, "-m", "neuralogcm_jax.cli", *args], env=child_env(),
                     timeout=timeout, what=f"neuralogcm {args[0]}")


# The demo preset's grid, levels, world and truth with less time: one training year after a
# 10-day spin-up, no validation or test year (the preset has two training years, a validation
# and a test year and a 90-day spin-up: 1551 simulated days against 375 here). The 20 steps of
# one epoch end before the first validation (`train.val_every=2`), so no validation year is read.
REDUCED_DEMO = ("import dataclasses, sys; from neuralogcm_jax.data.twin import PRESETS, "
                "generate_dataset; generate_dataset(sys.argv[1], dataclasses.replace("
                "PRESETS['demo'], train_years=(1983,), valid_years=(), test_years=(), "
                "spinup_days=10), seed=0, progress=False)")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A reduced demo twin dataset (`REDUCED_DEMO`), generated in a child as `make demo` does."""
    root = tmp_path_factory.mktemp("demo") / "data"
    rc, _, err = run_child([sys.executable, "-c", REDUCED_DEMO, str(root)], env=child_env(),
                           timeout=600, what="the reduced demo twin")
    assert rc == 0, err[-3000:]
    return root


@pytest.mark.slow  # ~4 min; CI's `make demo` makes the same claim at full scale (below)
def test_demo_configuration_applies_every_update_and_moves_nu_m_and_nu_t(demo_data, tmp_path):
    """configs/demo.yaml (6 deg x 23 levels, batch 1, float32, NeuralOGCM; a smaller corrector)
    for 20 steps: no update skipped, and from step 2 on (step 1 runs at the warmup's zero
    learning rate) every update moves both nu_m and nu_t."""
    run = tmp_path / "run"
    sets = [f"train.out_dir={run}", "train.epochs=1", f"train.steps_per_epoch={STEPS}",
            "train.log_every=1", "train.val_every=2", *SMALL_CORRECTOR]
    rc, out, err = child(["train", "--config", str(CONFIG_DIR / "demo.yaml"), "--data_root",
                          str(demo_data), "--no_progress",
                          *[x for s in sets for x in ("--set", s)]], 900)
    assert rc == 0, err[-3000:]
    assert f"neuralogcm train: step {STEPS}, " in out and ", 0 skipped steps;" in out, out

    recs = assert_log_has_no_skipped_step(run)
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in recs)
    for a, b in zip(recs, recs[1:]):
        for k in ("nu_m_m2_s", "nu_t_m2_s"):
            assert b[k] != a[k], f"{k} did not move at step {b['step']}: {a[k]}"

    step, params = checkpoint_params(run / "checkpoints")
    assert step == STEPS
    for k in ("nu_m", "nu_t"):
        si = float(PAPER_COEFFICIENTS[k].to_si(params["physics_params"][k]))
        assert si == pytest.approx(recs[-1][f"{k}_m2_s"], rel=1e-6)
        start = PAPER_COEFFICIENTS[k].default
        assert abs(si / start - 1) > 0.01, f"{k}: {si} m^2/s after {STEPS} steps, from {start}"
    assert_run_dir_trained(run)
