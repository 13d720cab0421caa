"""Stops and faults of the training loop (`neuralogcm_jax.train.loop`).

SIGTERM and SIGINT stop the run after a step that every process agrees on (`StopFlag`); a
non-finite step is described (`bad_step`, `nonfinite_detail`: parameter groups, steps and the
dates of their batches) and a run of them rewinds to the last checkpoint (`rewind`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import jax
from jax._src import distributed  # the preemption service's state (no public accessor)
import numpy as np
from jax.experimental import multihost_utils

from neuralogcm_jax.errors import StateError
from neuralogcm_jax.train import sharding as sh
from neuralogcm_jax.train import state as st

PAUSE_ENV = "NEURALOGCM_PAUSE_AFTER_STEP"  # fault injection for tests: block after this step
STOPPED_EXIT_STATUS = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after a checkpoint; requeue
MAX_REWINDS = 3  # restores of the last checkpoint after non-finite runs before giving up


class StopFlag:
    """SIGTERM/SIGINT -> finish the step, checkpoint, exit `STOPPED_EXIT_STATUS`.

    One process: a Python handler sets a flag that the loop reads after every step.
    Several processes: they must all stop after the same step, or the others wait forever in
    the next step's collectives. That agreement is JAX's preemption service, the one Orbax's
    multi-host preemption check reads (`CheckpointManager.reached_preemption`): its notifier
    catches SIGTERM in any process, the coordination service tells the others in the
    background, and every process learns the same sync step (one past the furthest step any
    had reached) from a local query; no collective runs on the steps without a stop. So SIGTERM
    gets no Python handler there (one would replace the notifier's), and SIGINT is turned into a
    SIGTERM to this process. Without the service (``jax_enable_preemption_service`` off), the
    processes agree by an all-gather of their flags after every step instead.
    """

    def __init__(self, reached_preemption: Callable[[int], bool] | None = None):
        self.signum = None
        self._old = {}
        self._multi = jax.process_count() > 1
        self._service = (self._multi and reached_preemption is not None
                         and getattr(distributed.global_state, "preemption_sync_manager", None) is not None)
        self._reached = reached_preemption

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGINT,) if self._service else (signal.SIGTERM, signal.SIGINT)
            for s in signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        if self._service:
            os.kill(os.getpid(), signal.SIGTERM)  # to the preemption notifier

    def requested(self, step: int) -> bool:
        """True when every process is to stop after `step` (call it after every step)."""
        if not self._multi:
            return self.signum is not None
        if self._service:
            return bool(self._reached(step))
        mine = self.signum is not None
        return bool(np.max(multihost_utils.process_allgather(np.int32(mine))))

    def describe(self) -> str:
        """How the stop came, for the run's last line."""
        if self._service:
            return "SIGTERM or SIGINT to a process, agreed through JAX's preemption service"
        if self.signum is not None:
            return f"signal {signal.Signals(self.signum).name}"
        return "a signal to another process"

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def bad_step(step: int, met: dict, dates: list[str]) -> dict:
    """What a skipped step's metrics say: the parameter groups with non-finite gradients."""
    groups = sorted(g for g, ok in met["grad_finite"].items() if not int(ok))
    return {"step": step, "groups": groups, "loss_finite": bool(int(met["loss_finite"])),
            "dates": dates}


def nonfinite_detail(bad_run: list[dict]) -> str:
    """One line on a run of skipped steps: which gradients, which steps, which days."""
    groups = sorted({g for b in bad_run for g in b["groups"]})
    what = (f"non-finite gradients of {', '.join(groups)}" if groups
            else "every gradient finite but their norm overflowed")
    bad_loss = [str(b["step"]) for b in bad_run if not b["loss_finite"]]
    if bad_loss:
        what += f" (non-finite loss at step {', '.join(bad_loss)})"
    share = " (this process's share)" if jax.process_count() > 1 else ""
    batches = "; ".join(f"step {b['step']}: {', '.join(b['dates'])}" for b in bad_run)
    return f"{what}; first days of the batches' windows{share}: {batches}"


def rewind(ckpt, ts, cfg, mesh, nonfinite, step, detail=""):
    """Restore the last checkpoint after `nonfinite` consecutive non-finite steps (`detail`:
    `nonfinite_detail` of them, for the error when there is no checkpoint)."""
    ckpt.wait()
    if ckpt.latest_step() is None:
        raise StateError(
            f"{nonfinite} non-finite steps in a row at step {step} and no checkpoint to restore "
            f"(train.nonfinite_patience = {cfg.train.nonfinite_patience})"
            + (f"; {detail}" if detail else "")
        )
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh.replicated(mesh)), ts
    )
    restored, data_state, s = ckpt.restore(st.checkpoint_view(abstract))
    ts = {**restored, "consts": ts["consts"]}
    if jax.process_index() == 0:
        print(f"neuralogcm train: {nonfinite} non-finite steps at step {step}; restored step {s}",
              flush=True)
    return ts, dict(data_state), s
