"""Child processes that start when the session starts and are read when their test runs.

The default run is mostly one busy core: the test process compiles and runs one program at a
time. The few claims that run a whole job in a child process (the skill benchmark's quick mode,
the float32 gradient check at the demo's configuration) need no state of this process, so they
start as soon as collection has selected their tests and run beside the rest of the session on
the second core; their test waits for the result. The work and the claims are those of running
the child in the test itself; only where the wall time goes changes.

A test module registers its child at import (`register`); `conftest.py` starts every child whose
tests were selected (`start_selected`) and kills what is left at the end (`stop_all`). A test
gets ``(returncode, stdout, stderr)`` from `result`, which waits at most the child's timeout
(counted from its start) and kills the child's process group when it is over.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest


@dataclasses.dataclass
class Job:
    key: str
    nodeid_prefix: str  # a test whose node id starts with this needs the child
    make: Callable[[Path], tuple[list[str], dict, str | None]]  # workdir -> (cmd, env, cwd)
    timeout: float
    workdir: Path | None = None
    proc: subprocess.Popen | None = None
    started: float = 0.0


_JOBS: dict[str, Job] = {}
_ROOT: list[Path] = []


def register(key: str, nodeid_prefix: str, make, timeout: float) -> None:
    """Declare a child: `make(workdir)` gives its command, environment and working directory."""
    _JOBS[key] = Job(key, nodeid_prefix, make, timeout)


def _root() -> Path:
    if not _ROOT:
        _ROOT.append(Path(tempfile.mkdtemp(prefix="neuralogcm-early-")))
    return _ROOT[0]


def start(key: str) -> Job:
    job = _JOBS[key]
    if job.proc is None:
        job.workdir = _root() / key
        job.workdir.mkdir(parents=True, exist_ok=True)
        cmd, env, cwd = job.make(job.workdir)
        out = (job.workdir / "stdout.txt").open("w")
        err = (job.workdir / "stderr.txt").open("w")
        job.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True,
                                    start_new_session=True)
        out.close()
        err.close()
        job.started = time.monotonic()
    return job


def start_selected(items) -> None:
    """Start each registered child that a selected test needs."""
    ids = [item.nodeid for item in items]
    for job in _JOBS.values():
        if any(i.startswith(job.nodeid_prefix) for i in ids):
            start(job.key)


def _kill(job: Job) -> None:
    if job.proc is not None and job.proc.poll() is None:
        try:
            os.killpg(job.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job.proc.wait()


def result(key: str) -> tuple[int, str, str, Path]:
    """Wait for the child `key` (started now when it was not yet); ``(returncode, stdout,
    stderr, workdir)``. Past its timeout (from its start) the group is killed and the test
    fails."""
    job = start(key)
    left = job.timeout - (time.monotonic() - job.started)
    try:
        job.proc.wait(timeout=max(left, 0.0))
    except subprocess.TimeoutExpired:
        _kill(job)
        pytest.fail(f"{key}: the child timed out after {job.timeout:.0f} s")
    read = lambda f: (job.workdir / f).read_text(errors="replace")  # noqa: E731
    return job.proc.returncode, read("stdout.txt"), read("stderr.txt"), job.workdir


def stop_all() -> None:
    """Kill every child still running and remove their directories."""
    for job in _JOBS.values():
        _kill(job)
    for r in _ROOT:
        shutil.rmtree(r, ignore_errors=True)
    _ROOT.clear()
