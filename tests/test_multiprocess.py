"""Claims: multi-process training works for the real models from start to exit.

Two processes of two CPU devices each, joined by jax.distributed over 127.0.0.1 with gloo
collectives and started by ``launch/local_multiprocess.sh``, train NeuralOGCM and the U-Net on a
twin dataset in the real layout exactly like one process with four devices (every logged loss),
validate, write their final checkpoint and exit 0; a job killed after a checkpoint resumes on one
process with one device and ends where the uninterrupted run ends; a dead or failing process ends
the job within a minute instead of hanging it.

Every child runs in its own process group with a deadline, and every group is killed when the
test ends, however it ends.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_log_has_no_skipped_step, train_records

from neuralogcm_jax.data.twin import DatasetSpec, TruthSpec, generate_dataset
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.train import checkpoint as CK
from neuralogcm_jax.train.loop import PAUSE_ENV
from tests.toy import write_array_dataset

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "launch" / "local_multiprocess.sh"

# The twin at 12 deg with two levels: one training year, one validation year, no spin-up
# (generated in a few seconds).
TWIN = DatasetSpec(
    resolution_deg=12.0, n_levels=2, train_years=(1983,), valid_years=(1984,), test_years=(),
    spinup_days=0, truth=TruthSpec(mode="paper", substep_s=21600.0),
)

# Small real models: each run compiles in well under a minute on one CPU core.
MODEL_ARGS = {
    "neuralogcm": [
        "--model", "neuralogcm",
        "--set", "model.corrector.hid_channels=8", "--set", "model.corrector.n_conv_blocks=2",
        "--set", "model.corrector.n_down=1", "--set", "model.corrector.n_attention_blocks=1",
        "--set", "model.corrector.num_heads=2",
    ],
    "unet": [
        "--model", "unet",
        "--set", "model.unet.base_channels=8", "--set", "model.unet.channel_mults=[1, 2]",
    ],
}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("mp") / "twin", TWIN, seed=0,
                            overwrite=True, progress=False)


def train_args(model, data, out_dir, *, steps=3, batch_size=1, extra=()):
    """One epoch of `steps` steps (K = 1), every step logged, 2 validation batches."""
    return [
        *MODEL_ARGS[model], "--data_root", str(data), "--batch_size", str(batch_size),
        "--epochs", "1", "--no_progress",
        "--set", f"train.out_dir={out_dir}", "--set", f"train.steps_per_epoch={steps}",
        "--set", "train.curriculum=[[0, 1]]", "--set", "train.precision=fp32",
        "--set", "train.log_every=1", "--set", "optim.warmup_steps=1",
        "--set", "data.val_max_batches=2", "--set", "data.read_threads=1", *extra,
    ]


def env_with(devices, **extra):
    # XLA_FLAGS is replaced, not extended: the child's import of the package appends the flags
    # it needs (neuralogcm_jax/_xla_flags.py) to whatever is set here.
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
                    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                **{k: str(v) for k, v in extra.items()})


class Children:
    """Child processes, each in its own process group with its output in a file; all groups
    are killed on exit."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.procs = []

    def __enter__(self):
        return self

    def start(self, name, argv, env):
        log = self.log_dir / f"{name}.log"
        with open(log, "w") as f:
            p = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=REPO)
        p.name, p.log = name, log
        self.procs.append(p)
        return p

    def wait(self, p, timeout):
        """`p`'s exit status; the test fails if it is not done within `timeout` seconds."""
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{p.name} still running after {timeout} s:\n{tail(p)}")

    def __exit__(self, *exc):
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):  # the group is already gone
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def tail(p, n=4000):
    return p.log.read_text(errors="replace")[-n:]


def single(children, name, devices, args):
    """`neuralogcm train` in one process with `devices` CPU devices."""
    return children.start(name, [sys.executable, "-m", "neuralogcm_jax.cli", "train", *args],
                          env_with(devices))


def launched(children, name, args, **env):
    """`launch/local_multiprocess.sh 2 ...`: 2 processes x 2 CPU devices (the launcher's
    output is process 0's; process 1 logs to LOG_DIR/neuralogcm_proc_1.log)."""
    log_dir = children.log_dir / name
    log_dir.mkdir()
    return children.start(name, ["bash", str(LAUNCHER), "2", *args],
                          env_with(2, PYTHON=sys.executable, LOG_DIR=log_dir, **env))


def wait_for_text(p, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in p.log.read_text(errors="replace"):
            return
        if p.poll() is not None:
            pytest.fail(f"{p.name} exited ({p.returncode}) before printing {text!r}:\n{tail(p)}")
        time.sleep(0.5)
    pytest.fail(f"{p.name}: no {text!r} within {timeout} s:\n{tail(p)}")


def losses(run_dir) -> dict[int, float]:
    """step -> loss of the run's metrics.jsonl (a resumed run's records win)."""
    return {r["step"]: r["loss"] for r in train_records(run_dir)}


def val_losses(run_dir) -> list[float]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r["val_loss"] for r in map(json.loads, lines) if r.get("kind") == "val"]


def assert_same_losses(a: dict, b: dict, steps):
    assert sorted(a) == sorted(b) == list(steps), (sorted(a), sorted(b))
    for s in steps:
        assert np.isfinite(a[s]), (s, a[s])
        np.testing.assert_allclose(b[s], a[s], rtol=1e-4, err_msg=f"loss of step {s}")


# --------------------------------------------------------------------------- a: train, exit 0
@pytest.mark.parametrize("model", ["neuralogcm", pytest.param("unet", marks=pytest.mark.slow)])
def test_two_processes_train_like_one_process_and_exit_with_a_checkpoint(tmp_path, twin, model):
    with Children(tmp_path) as ch:
        # both jobs at once: the two cores compile in parallel
        ref = single(ch, "one_by_four", 4, train_args(model, twin, tmp_path / "ref"))
        job = launched(ch, "two_by_two", train_args(model, twin, tmp_path / "mp"))
        assert ch.wait(job, 420) == 0, tail(job)
        assert ch.wait(ref, 420) == 0, tail(ref)
    assert "neuralogcm train: step 3" in job.log.read_text()
    assert_same_losses(losses(tmp_path / "ref"), losses(tmp_path / "mp"), range(1, 4))
    # validated at the end of the epoch (every process takes part) ...
    (v_ref,), (v_mp,) = val_losses(tmp_path / "ref"), val_losses(tmp_path / "mp")
    np.testing.assert_allclose(v_mp, v_ref, rtol=1e-4)
    # ... applied every update and wrote the final checkpoint
    assert_log_has_no_skipped_step(tmp_path / "mp")
    assert CK.list_steps(tmp_path / "mp" / "checkpoints") == [3]


# --------------------------------------------------------------------------- b: kill, resume
@pytest.mark.slow
def test_killed_two_process_job_resumes_on_one_device_at_the_uninterrupted_loss(tmp_path, twin):
    """NeuralOGCM (its corrector's drop-path draws from the model's RNG streams, typed PRNG
    keys): 2 x 2 killed with SIGKILL after the checkpoint of step 2, resumed by one process
    with one device (same global batch of 4), ends like a straight 1 x 4 run."""
    args = dict(steps=4, extra=["--set", "checkpoint.save_every=2"])
    with Children(tmp_path) as ch:
        ref = single(ch, "straight", 4, train_args("neuralogcm", twin, tmp_path / "ref", **args))
        job = launched(ch, "killed", train_args("neuralogcm", twin, tmp_path / "run", **args),
                       **{PAUSE_ENV: 2})
        wait_for_text(job, "PAUSED at step 2", 420)  # after the step-2 checkpoint is on disk
        os.killpg(job.pid, signal.SIGKILL)  # the launcher and both training processes
        assert ch.wait(job, 60) == -signal.SIGKILL
        assert CK.list_steps(tmp_path / "run" / "checkpoints") == [2]
        resumed = single(ch, "resumed", 1, train_args(
            "neuralogcm", twin, tmp_path / "run", steps=4, batch_size=4,
            extra=[*args["extra"], "--resume"]))
        assert ch.wait(resumed, 420) == 0, tail(resumed)
        assert ch.wait(ref, 420) == 0, tail(ref)
    got, want = losses(tmp_path / "run"), losses(tmp_path / "ref")
    assert_same_losses(want, got, range(1, 5))
    np.testing.assert_allclose(val_losses(tmp_path / "run"), val_losses(tmp_path / "ref"),
                               rtol=1e-4)
    assert CK.list_steps(tmp_path / "run" / "checkpoints")[-1] == 4
    assert_log_has_no_skipped_step(tmp_path / "run")


# --------------------------------------------------------------------------- c: a dead process
@pytest.mark.slow
@pytest.mark.parametrize("how", ["launcher", "heartbeat"])
def test_a_killed_process_ends_the_job_within_a_minute(tmp_path, twin, how):
    """SIGKILL one training process mid-run; the other must exit with an error within 60 s
    instead of waiting forever in its next collective.

    `launcher`: under launch/local_multiprocess.sh, which stops the others as soon as one fails
    (SIGTERM, then SIGKILL after KILL_GRACE_S = 10 s). `heartbeat`: the two processes started
    by hand, no launcher: a survivor whose collective fails on the lost connection exits at
    once (`loop._exit_now`); one blocked where gloo does not notice is ended by JAX's
    coordination service once the dead process has missed its heartbeats for
    NEURALOGCM_HEARTBEAT_TIMEOUT_S = 30 s."""
    args = train_args("unet", twin, tmp_path / "run", steps=200)
    with Children(tmp_path) as ch:
        if how == "launcher":
            job = launched(ch, "job", args)
            victim = pid_of_child(job.pid, process_id=1)
            survivors = [job]
        else:
            port = free_port()
            procs = [
                ch.start(f"proc{i}", [sys.executable, "-m", "neuralogcm_jax.cli", "train", *args],
                         env_with(2, NEURALOGCM_COORDINATOR=f"127.0.0.1:{port}",
                                  NEURALOGCM_NUM_PROCESSES=2, NEURALOGCM_PROCESS_ID=i,
                                  NEURALOGCM_HEARTBEAT_TIMEOUT_S=30))
                for i in range(2)
            ]
            victim, survivors = procs[1].pid, [procs[0]]
        wait_until(lambda: len(train_records_or_none(tmp_path / "run")) >= 2, 420)
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        for p in survivors:
            rc = ch.wait(p, 60)
            assert rc != 0, tail(p)
        assert time.monotonic() - t0 < 60
    if how == "launcher":
        assert "stopping the others" in job.log.read_text()
    else:
        # either its collective failed (gloo: connection reset by the dead peer) and it exited
        # at once, or the heartbeat check terminated it where it waited
        log = tail(survivors[0], 20000)
        assert "without waiting for the others" in log or "detected fatal errors" in log, log


@pytest.mark.slow
def test_a_process_that_fails_ends_the_job_within_a_minute(tmp_path):
    """Process 1 stops with a configuration error (its output directory cannot be written)
    while process 0 goes on to its first collective. Before, process 1's exit waited in JAX's
    distributed shutdown barrier for process 0 (up to 5 min) while process 0 waited in the
    collective for process 1. Now the failing process exits at once (status 2) and process 0
    is ended by the heartbeat check (machinery only: the toy model)."""
    data = toy_dataset(tmp_path / "toy.npz")
    port = free_port()
    with Children(tmp_path) as ch:
        procs = []
        for i, out in enumerate([tmp_path / "run", Path("/proc/neuralogcm_not_writable")]):
            args = ["--data_root", str(data), "--model", "diffusion_toy", "--batch_size", "1",
                    "--epochs", "1", "--no_progress", "--set", f"train.out_dir={out}"]
            procs.append(ch.start(
                f"proc{i}", [sys.executable, "-m", "neuralogcm_jax.cli", "train", *args],
                env_with(2, NEURALOGCM_COORDINATOR=f"127.0.0.1:{port}",
                         NEURALOGCM_NUM_PROCESSES=2, NEURALOGCM_PROCESS_ID=i,
                         NEURALOGCM_HEARTBEAT_TIMEOUT_S=30)))
        assert ch.wait(procs[1], 120) == 2, tail(procs[1])
        assert "is not writable" in tail(procs[1])
        t0 = time.monotonic()
        assert ch.wait(procs[0], 60) != 0, tail(procs[0])
        assert time.monotonic() - t0 < 60


# --------------------------------------------------------------------------- d: preemption
@pytest.mark.slow
def test_sigterm_to_one_process_stops_every_process_after_the_same_step(tmp_path):
    """SIGTERM to process 1 only (a pre-empted host): JAX's preemption service tells process 0,
    both stop after the same step without a collective per step, the checkpoint of that step is
    written, and the job exits 75 (requeue). Machinery only: the toy model."""
    data = toy_dataset(tmp_path / "toy.npz", n_days=1500)  # ~1500 steps: it is stopped early
    args = ["--data_root", str(data), "--model", "diffusion_toy", "--batch_size", "1",
            "--epochs", "1", "--no_progress", "--set", f"train.out_dir={tmp_path / 'run'}",
            "--set", "train.steps_per_epoch=100000", "--set", "train.log_every=1",
            "--set", "checkpoint.save_every=100000"]
    with Children(tmp_path) as ch:
        job = launched(ch, "job", args)
        victim = pid_of_child(job.pid, process_id=1)
        wait_until(lambda: len(train_records_or_none(tmp_path / "run")) >= 3, 300)
        os.kill(victim, signal.SIGTERM)
        assert ch.wait(job, 120) == 75, tail(job)
    log = job.log.read_text()
    assert "agreed through JAX's preemption service" in log, log[-3000:]
    stop_step = int(log.rsplit("checkpoint at step ", 1)[1].split()[0])
    assert 3 <= stop_step < 1000
    assert CK.list_steps(tmp_path / "run" / "checkpoints") == [stop_step]
    assert max(r["step"] for r in train_records(tmp_path / "run")) <= stop_step


# --------------------------------------------------------------------------- helpers
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.5)


def train_records_or_none(run_dir):
    return train_records(run_dir) if (Path(run_dir) / "metrics.jsonl").exists() else []


def pid_of_child(launcher_pid, process_id):
    """The pid of the launcher's training process `process_id` (from its environment)."""
    for _ in range(100):
        for child in Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                if f"NEURALOGCM_PROCESS_ID={process_id}".encode() in env:
                    return int(child)
        time.sleep(0.1)
    pytest.fail(f"no training process {process_id} under the launcher")


def toy_dataset(path, n_days=20):
    g = Grid.regular(15.0, depth=(5.0, 50.0))
    rng = np.random.default_rng(0)
    mask = np.concatenate([g.wet] * 4 + [g.wet[:1], np.ones((4, 12, 24), bool)])
    fields = (rng.normal(size=(n_days, 13, 12, 24)) * mask).astype(np.float32)
    return write_array_dataset(path, g, {"train": (fields, np.arange(n_days))})

