"""Claim: two processes of two CPU devices each, joined by jax.distributed over 127.0.0.1 with
gloo collectives, train to the same parameters as one process with four devices."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from neuralogcm_jax.grid import Grid
from neuralogcm_jax.train import checkpoint as CK
from tests.toy import write_array_dataset

REPO = Path(__file__).resolve().parents[1]


def toy_dataset(path):
    g = Grid.regular(15.0, depth=(5.0, 50.0))
    wet = g.wet.copy()
    wet[:, 3:6, 4:8] = False
    g = g.with_wet(wet)
    rng = np.random.default_rng(0)
    mask = np.concatenate([wet] * 4 + [wet[:1], np.ones((4, 12, 24), bool)])
    fields = (rng.normal(size=(20, 13, 12, 24)) * mask).astype(np.float32)
    return write_array_dataset(path, g, {"train": (fields, np.arange(20))})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(out_dir, data):
    return ["--data_root", str(data), "--model", "diffusion_toy", "--batch_size", "1",
            "--epochs", "1", "--no_progress", "--set", f"train.out_dir={out_dir}",
            "--set", "train.max_steps=3", "--set", "optim.warmup_steps=0",
            "--set", "checkpoint.save_every=1", "--set", "train.log_every=1"]


def run_all(cmds_envs, timeout=240):
    """Start every (argv, env) in its own process group; kill all groups on timeout."""
    procs = [subprocess.Popen(a, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) for a, e in cmds_envs]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.communicate()
        pytest.fail("a training process timed out")
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"process failed ({p.returncode}):\n{err[-3000:]}"
    return outs


def env_with(devices, **extra):
    return dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)


def last_params(run_dir):
    step = CK.list_steps(run_dir / "checkpoints")[-1]
    path = run_dir / "checkpoints" / str(step) / "state"
    with ocp.PyTreeCheckpointer() as c:
        # saved across two processes: read back as host numpy arrays, not onto the saving devices
        meta = c.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        tree = c.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    return step, tree["params"]


def test_two_processes_train_like_one_process_with_all_devices(tmp_path):
    data = toy_dataset(tmp_path / "toy.npz")
    py = [sys.executable, "-m", "neuralogcm_jax.cli", "train"]
    run_all([(py + train_args(tmp_path / "single", data), env_with(4))])
    port = free_port()
    multi = []
    for i in range(2):
        env = env_with(2, NEURALOGCM_COORDINATOR=f"127.0.0.1:{port}",
                       NEURALOGCM_NUM_PROCESSES="2", NEURALOGCM_PROCESS_ID=str(i))
        multi.append((py + train_args(tmp_path / "multi", data), env))
    outs = run_all(multi)
    assert "step 3" in outs[0][0]
    s1, p1 = last_params(tmp_path / "single")
    s2, p2 = last_params(tmp_path / "multi")
    assert s1 == s2 == 3
    moved = 0
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        moved += 1
    assert moved == len(jax.tree.leaves(p1)) > 0
    # only process 0 wrote the run's logs
    assert (tmp_path / "multi" / "metrics.jsonl").read_text().count('"train"') == 3


@pytest.mark.slow
def test_local_launcher_runs_two_processes(tmp_path):
    data = toy_dataset(tmp_path / "toy.npz")
    env = env_with(2, PORT=str(free_port()), LOG_DIR=str(tmp_path),
                   PYTHON=sys.executable)
    run_all([(["bash", str(REPO / "launch" / "local_multiprocess.sh"), "2",
               *train_args(tmp_path / "launched", data)], env)])
    assert CK.list_steps(tmp_path / "launched" / "checkpoints")[-1] == 3
