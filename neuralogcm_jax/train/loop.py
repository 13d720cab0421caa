"""`neuralogcm train`: the training loop (epochs, curriculum, validation, checkpoints, logs).

    neuralogcm train --config neuralogcm [--set optim.lr=1e-4 ...]

The same command starts a run or, when its checkpoint directory already holds checkpoints,
resumes the latest complete one (``train.resume: auto``, the default; ``never`` and
``required`` make either case an error), so a preempted job is simply started again.

Order of work:

1. everything that can be checked without compute is checked first: the config, the data root and
   its splits, the mesh against the devices, the batch against the mesh, that the checkpoint
   directory is writable and (when resuming) that its checkpoint belongs to this model, layout
   and grid;
2. the model is built, split into plain pytrees, and the train state is created or restored onto
   the current mesh (any device count);
3. epochs run with the curriculum's rollout length K; each epoch ends with a validation pass and
   a checkpoint; metrics go to ``metrics.jsonl`` (and TensorBoard when `tensorboardX` or
   `tensorflow` is importable), a tqdm bar shows rate and ETA. Only process 0 writes logs.

SIGTERM and SIGINT finish the current step, save a checkpoint and exit with status
`STOPPED_EXIT_STATUS` (75), which job scripts take as "requeue me". A step whose loss or gradient
is not finite is skipped (no update); the log counts skipped steps per parameter group
(``skipped_by_group``) and `RunResult` reports them. A run of ``nonfinite_patience`` consecutive
non-finite steps is rewound to the last checkpoint; without one, or after `MAX_REWINDS` rewinds,
training stops with a `StateError` naming the parameter groups whose gradients were not finite,
the steps and the dates of their batches.

Data come from an HDF5 data root (`neuralogcm_jax.data.pipeline`) or from a format registered
with `register_data_format` (the tests register an in-memory ``.npz`` format).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from neuralogcm_jax.calendar import iso_date
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import CheckpointError, ConfigError, DataError, StateError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.paths import check_local, output_path
from neuralogcm_jax.train import checkpoint as ckpt_lib
from neuralogcm_jax.train import config as config_lib
from neuralogcm_jax.train import sharding as sh
from neuralogcm_jax.train import state as st
from neuralogcm_jax.train.loss import loss_weights
from neuralogcm_jax.train.optim import lr_schedule, make_optimizer

PAUSE_ENV = "NEURALOGCM_PAUSE_AFTER_STEP"  # fault injection for tests: block after this step
STOPPED_EXIT_STATUS = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after a checkpoint; requeue
MAX_REWINDS = 3  # restores of the last checkpoint after non-finite runs before giving up


@dataclasses.dataclass
class TrainData:
    """What the loop needs from a dataset: grid, layout, stats, and loaders per split and K."""

    grid: Grid
    layout: ChannelLayout
    stats: Stats
    make: Any  # (split, k_steps, batch_size_per_process, seed, shuffle) -> loader
    splits: tuple[str, ...]
    day_names: Any = None  # (split, time [B], doy [B]) -> names of the windows' first days

    def loader(self, split, k_steps, batch_size, seed, shuffle):
        return self.make(split, k_steps, batch_size, seed, shuffle)

    def batch_dates(self, split: str, batch: dict) -> list[str]:
        """The first day of each window of a loader batch, as YYYY-MM-DD where the data have a
        calendar (else the day index and day of year)."""
        time = np.asarray(batch.get("time", []), np.int64).ravel()
        doy = np.asarray(batch.get("doy", np.zeros_like(time)), np.int64).ravel()
        if self.day_names is None:
            return [f"day {int(t)} (day of year {int(d) + 1})" for t, d in zip(time, doy)]
        return self.day_names(split, time, doy)


# Data formats registered from outside the package: data.root's file suffix -> opener.
_DATA_FORMATS: dict[str, Callable[[config_lib.Config], TrainData]] = {}


def register_data_format(suffix: str, opener: Callable[[config_lib.Config], TrainData]) -> None:
    """Make `open_data` open a ``data.root`` ending in `suffix` (e.g. ``".npz"``) with
    ``opener(cfg) -> TrainData`` instead of reading it as an HDF5 data root."""
    _DATA_FORMATS[suffix] = opener


def iterator_state(it) -> str:
    s = it.get_state()
    return s.decode() if isinstance(s, bytes) else str(s)


def open_data(cfg: config_lib.Config) -> TrainData:
    """Open and validate ``cfg.data.root`` (an HDF5 root, or a registered format)."""
    check_local(cfg.data.root, "data.root")
    root = Path(cfg.data.root)
    pi, pc = jax.process_index(), jax.process_count()
    opener = _DATA_FORMATS.get(root.suffix)
    if opener is not None:
        return opener(cfg)
    from neuralogcm_jax.data import h5format, pipeline

    wanted = [cfg.data.train_split]
    if (root / cfg.data.val_split).is_dir():
        wanted.append(cfg.data.val_split)
    droot = h5format.open_dataset(root, splits=wanted)
    stats = droot.load_stats()

    def make(split, k, bs, seed, shuffle):
        return pipeline.make_loader(
            droot, split, k_steps=k, batch_size=bs, seed=seed % 2**32, shuffle=shuffle,
            num_epochs=1, shard_index=pi, shard_count=pc, worker_count=cfg.data.worker_count,
            read_threads=cfg.data.read_threads,
            prefetch=cfg.data.prefetch * bs if cfg.data.prefetch else None,
        )

    def h5_day_names(split, time, doy):
        info = droot.split(split)
        offsets, years = info.day_offsets, info.years
        files = np.searchsorted(offsets, time, side="right") - 1
        return [iso_date(years[f], t - offsets[f]) for f, t in zip(files, time)]

    return TrainData(droot.grid, droot.layout, stats, make, tuple(wanted), h5_day_names)


# ================================================================================ checks
def check_writable(directory, what: str) -> None:
    """`ConfigError` unless `directory` (a local path or a URL) can be created and written
    (tested with a small file, removed again)."""
    directory = output_path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(directory, Path):
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_test_"):
                pass
        else:
            probe = directory / f".write_test_{os.getpid()}"
            probe.write_text("")
            probe.unlink()
    except Exception as e:  # OSError locally; the store's own errors for URLs
        raise ConfigError(f"{what} {str(directory)!r} is not writable: {e}") from e


def check_config(cfg: config_lib.Config) -> None:
    """Value checks the type system cannot express."""
    t, d = cfg.train, cfg.data
    for key, v in (("train.epochs", t.epochs), ("data.batch_size", d.batch_size),
                   ("train.log_every", t.log_every), ("train.val_every", t.val_every),
                   ("train.nonfinite_patience", t.nonfinite_patience),
                   ("checkpoint.save_every", cfg.checkpoint.save_every),
                   ("checkpoint.keep", cfg.checkpoint.keep), ("data.k_steps", d.k_steps)):
        if v < 1:
            raise ConfigError(f"{key} = {v}: must be >= 1")
    for i, item in enumerate(t.curriculum):
        if len(item) != 2 or item[0] < 0 or item[1] < 1:
            raise ConfigError(
                f"train.curriculum[{i}] = {item}: expected [epoch >= 0, K >= 1]"
            )
    for key, v in (("train.steps_per_epoch", t.steps_per_epoch), ("train.max_steps", t.max_steps),
                   ("data.val_max_batches", d.val_max_batches)):
        if v is not None and v < 1:
            raise ConfigError(f"{key} = {v}: must be >= 1 or null")
    for key, v, lo in (("data.read_threads", d.read_threads, 1),
                       ("data.worker_count", d.worker_count, 0), ("data.prefetch", d.prefetch, 0),
                       ("optim.warmup_steps", cfg.optim.warmup_steps, 0)):
        if v < lo:
            raise ConfigError(f"{key} = {v}: must be >= {lo}")


def model_config_for_run(cfg: config_lib.Config):
    """The model config with the run's precision applied (bf16 -> networks in bfloat16)."""
    m = cfg.model
    if cfg.train.precision == "bf16":
        m = dataclasses.replace(m, dtype="bfloat16")
    return m


# ================================================================================ logging
class MetricsLog:
    """metrics.jsonl (+ TensorBoard if available), written by process 0 only."""

    def __init__(self, out_dir, enabled: bool):
        self.enabled = enabled
        out_dir = output_path(out_dir)
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if isinstance(self.path, Path):
            self.file = open(self.path, "a")
        else:  # object stores cannot append: the lines are kept and the file rewritten
            self.file = _RewrittenFile(self.path)
        with contextlib.suppress(Exception):
            if not isinstance(out_dir, Path):
                raise ImportError("tensorboardX writes gs:// only through TensorFlow")
            from tensorboardX import SummaryWriter

            self.tb = ("tbx", SummaryWriter(str(out_dir / "tensorboard")))
        if self.tb is None:
            with contextlib.suppress(Exception):
                import tensorflow as tf  # noqa: F401

                self.tb = ("tf", tf.summary.create_file_writer(str(out_dir / "tensorboard")))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = int(record.get("step", 0))
            kind, w = self.tb
            scalars = []
            for k, v in record.items():
                if k in ("step", "epoch", "kind"):
                    continue
                if isinstance(v, dict):  # e.g. skipped_by_group: one scalar per entry
                    scalars += [(f"{k}/{kk}", vv) for kk, vv in v.items()
                                if isinstance(vv, (int, float))]
                elif isinstance(v, (int, float)):
                    scalars.append((k, v))
            for k, v in scalars:
                if kind == "tbx":
                    w.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)
                else:
                    import tensorflow as tf

                    with w.as_default():
                        tf.summary.scalar(f"{record.get('kind', 'train')}/{k}", v, step=step)

    def close(self):
        if self.enabled:
            self.file.close()
            if self.tb is not None and self.tb[0] == "tbx":
                self.tb[1].close()


class _RewrittenFile:
    """Append-only text file on a store without appends: every flush rewrites it whole."""

    def __init__(self, path):
        self.path = path
        self.text = path.read_text() if path.exists() else ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        self.path.write_text(self.text)

    def close(self) -> None:
        self.flush()


class _StopFlag:
    """SIGTERM/SIGINT -> finish the step, checkpoint, exit 0."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def requested(self) -> bool:
        """True if any process was signalled: all must stop at the same step, or the others
        would wait forever in the next step's collectives."""
        mine = self.signum is not None
        if jax.process_count() == 1:
            return mine
        from jax.experimental import multihost_utils

        return bool(np.max(multihost_utils.process_allgather(np.int32(mine))))

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


# ================================================================================ training
@dataclasses.dataclass
class RunResult:
    """What `train` returns: last step, final train state, and the last metrics.

    `skipped`: steps of this call whose update was skipped (non-finite loss or gradient),
    rewound ones included; `skipped_by_group`: for every parameter group (`state.param_group`),
    how many of them had a non-finite gradient in that group."""

    step: int
    train_state: Any
    graphdef: Any
    metrics: dict
    stopped_by_signal: bool = False
    skipped: int = 0
    skipped_by_group: dict = dataclasses.field(default_factory=dict)


def resume_decision(mode: str, existing: list[int], ckpt_dir) -> bool:
    """Whether to resume, by ``train.resume`` (`mode`) and the steps already in `ckpt_dir`."""
    if mode == "required" and not existing:
        raise CheckpointError(
            f"train.resume = required (or --resume): no checkpoint in {str(ckpt_dir)!r}"
        )
    if mode == "never" and existing:
        raise CheckpointError(
            f"checkpoint directory {str(ckpt_dir)!r} already holds steps {existing} and "
            f"train.resume = never; set train.resume=auto to continue that run, or choose "
            f"another checkpoint.dir / train.out_dir"
        )
    return bool(existing)


def use_compilation_cache(directory: str | None) -> None:
    """Point JAX's persistent compilation cache at `directory` (before the first compile)."""
    if not directory:
        return
    output_path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    with contextlib.suppress(Exception):  # re-read the setting if a compile already ran
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()


def train(cfg: config_lib.Config, *, resume: bool | None = None,
          progress: bool = True) -> RunResult:
    """Run (or resume) training as configured. See the module docstring for the order of work.

    `resume`: None follows ``train.resume``; True means "required", False "never"."""
    # ---------------------------------------------------------------- checks before compute
    check_config(cfg)
    use_compilation_cache(cfg.train.compilation_cache_dir)
    data = open_data(cfg)
    mesh = sh.mesh_from_config(cfg.mesh)
    gb = sh.global_batch_size(cfg.data.batch_size, mesh)
    sh.check_batch_layout(gb, data.grid.shape[1], mesh)
    per_process = gb // jax.process_count()
    out_dir = cfg.out_dir  # a local path or a URL (gs://...)
    ckpt_dir = cfg.checkpoint_dir
    main = jax.process_index() == 0
    check_writable(out_dir, "train.out_dir")
    check_writable(ckpt_dir, "checkpoint directory")
    existing = ckpt_lib.list_steps(ckpt_dir)
    model_cfg = model_config_for_run(cfg)
    mode = cfg.train.resume if resume is None else ("required" if resume else "never")
    resume = resume_decision(mode, existing, ckpt_dir)
    weights = loss_weights(data.grid, data.layout, cfg.train.var_weights)
    ckpt = ckpt_lib.Checkpointer(
        ckpt_dir, keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save,
        keep_best=cfg.checkpoint.best_metric is not None,
        best_metric=cfg.checkpoint.best_metric or "val_loss",
    )
    if resume:
        meta = ckpt.read_metadata()
        ckpt_lib.check_compatible(
            meta, model_name=model_cfg.name, grid=data.grid, layout=data.layout,
            where=f"resuming {ckpt_dir}",
        )

    # ---------------------------------------------------------------- epoch lengths
    loaders: dict = {}

    def loader(k):
        if k not in loaders:
            loaders[k] = data.loader(cfg.data.train_split, k, per_process, cfg.train.seed,
                                     cfg.data.shuffle)
        return loaders[k]

    def epoch_seed(epoch):
        return (cfg.train.seed * 100_003 + epoch) % 2**32

    def epoch_steps(epoch):
        n = loader(cfg.k_at_epoch(epoch)).batches_per_epoch
        return min(n, cfg.train.steps_per_epoch or n)

    total = sum(epoch_steps(e) for e in range(cfg.train.epochs))
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    tx = make_optimizer(cfg.optim, total)

    # ---------------------------------------------------------------- model and state
    model = st.build_forecaster(model_cfg, data.grid, data.stats, seed=cfg.train.seed)
    graphdef, *model_vars = st.split_model(model)
    model_vars = tuple(model_vars)
    del model
    cfg_dict = config_lib.to_dict(cfg)
    if resume:
        abstract = st.abstract_train_state(model_vars, tx, cfg.train.seed, mesh)
        ts, data_state, step = ckpt.restore(st.checkpoint_view(abstract))
        ts["consts"] = sh.replicate(model_vars[2], mesh)  # rebuilt, not stored
        position = dict(data_state or {"epoch": 0, "batch": 0, "iter": None})
    else:
        ts = st.place_train_state(model_vars, tx, cfg.train.seed, mesh)
        step = 0
        position = {"epoch": 0, "batch": 0, "iter": None}
    del model_vars
    if main:
        config_lib.write_config(cfg, out_dir)
    log = MetricsLog(out_dir, main)
    net_lr = lr_schedule(cfg.optim.lr, cfg.optim, total)
    phys_lr = lr_schedule(cfg.optim.physics_lr, cfg.optim, total)

    train_steps: dict = {}
    eval_steps: dict = {}

    def train_step(k):
        if k not in train_steps:
            train_steps[k] = st.make_train_step(
                graphdef, tx, weights, mesh, k_steps=k, deterministic=cfg.train.deterministic,
                remat=cfg.train.remat,
            )
        return train_steps[k]

    model_cfg_dict = config_lib.to_dict(model_cfg)
    model_item = ckpt_lib.model_arrays(data.grid, data.stats)  # grid + stats: self-contained

    def metadata(s, metrics=None):
        return ckpt_lib.make_metadata(cfg_dict, data.grid, data.layout, step=s, metrics=metrics,
                                      model_config=model_cfg_dict)

    def save(s, ts, pos, metrics=None):
        ckpt.save(s, st.checkpoint_view(ts), pos, metadata(s, metrics), metrics=metrics,
                  model=model_item)

    def validate(k) -> float | None:
        if cfg.data.val_split not in data.splits:
            return None
        try:
            vl = data.loader(cfg.data.val_split, k, per_process, 0, False)
        except (ConfigError, DataError):
            return None
        if k not in eval_steps:
            eval_steps[k] = st.make_eval_step(graphdef, weights, mesh, k_steps=k)
        losses = []
        for i, batch in enumerate(vl):
            if cfg.data.val_max_batches is not None and i >= cfg.data.val_max_batches:
                break
            gbatch = sh.shard_batch(st.model_inputs(batch), mesh, gb)
            # Fetch each batch's loss before dispatching the next batch, as the train loop
            # does. Queuing all eval steps (each ends in a cross-process all-reduce) hung
            # 2-process CPU runs for good: in both processes at 0% CPU, the Python thread sat in
            # the next dispatch, one device's execution waited in a gloo all-reduce and the
            # client's other execute threads were blocked on queued later steps, so the
            # all-reduce's partner never ran.
            losses.append(float(jax.device_get(eval_steps[k](ts, gbatch))))
        return float(np.mean(losses)) if losses else None

    # ---------------------------------------------------------------- the loop
    run_layout = {"processes": jax.process_count(), "global_batch": gb}  # in saved positions
    pause_at = int(os.environ.get(PAUSE_ENV, "0") or 0)
    skipped_by_group = dict.fromkeys(st.param_groups(ts["params"]), 0)
    skipped_here = 0
    bad_run: list[dict] = []  # the current run of consecutive non-finite steps
    last = {}
    rewinds = 0
    stopped = False
    t_log, n_log = time.perf_counter(), 0
    with _StopFlag() as stop:
        while position["epoch"] < cfg.train.epochs:
            epoch = int(position["epoch"])
            k = cfg.k_at_epoch(epoch)
            n = epoch_steps(epoch)
            # a new permutation every epoch, reproducible from (seed, epoch)
            ld = data.loader(cfg.data.train_split, k, per_process, epoch_seed(epoch),
                             cfg.data.shuffle)
            it, b = _epoch_iterator(ld, position, gb)
            fn = train_step(k)
            bar = _progress(total=n, initial=b, epoch=epoch, k=k,
                            enabled=progress and main)
            rewound = False
            while b < n:
                if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
                    break
                try:
                    batch = next(it)
                except StopIteration:
                    break
                gbatch = sh.shard_batch(st.model_inputs(batch), mesh, gb)
                ts, met = fn(ts, gbatch)
                b += 1
                step += 1
                n_log += 1
                position = {"epoch": epoch, "batch": b, "iter": iterator_state(it), "k": k,
                            "layout": run_layout}
                nonfinite = int(met["nonfinite"])
                if nonfinite:
                    bad = _bad_step(step, jax.device_get(met),
                                    data.batch_dates(cfg.data.train_split, batch))
                    bad_run = [*bad_run, bad][-nonfinite:]
                    skipped_here += 1
                    for g in bad["groups"]:
                        skipped_by_group[g] += 1
                else:
                    bad_run = []
                if nonfinite >= cfg.train.nonfinite_patience:
                    detail = _nonfinite_detail(bad_run)
                    rewinds += 1
                    if rewinds > MAX_REWINDS:
                        ckpt.close()
                        raise StateError(
                            f"{nonfinite} non-finite losses or gradients in a row at step {step}, "
                            f"again after restoring the last checkpoint {MAX_REWINDS} times; "
                            f"{detail}; check the data of these days or lower optim.lr"
                        )
                    ts, position, step = _rewind(ckpt, ts, cfg, mesh, nonfinite, step, detail)
                    bad_run = []
                    rewound = True
                    break
                if step % cfg.train.log_every == 0 or b == n or step == cfg.train.max_steps:
                    m = jax.device_get(met)
                    dt = time.perf_counter() - t_log
                    rec = {
                        "kind": "train", "step": step, "epoch": epoch, "k_steps": k,
                        "loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]),
                        "lr": float(net_lr(step)), "physics_lr": float(phys_lr(step)),
                        "skipped_total": int(jax.device_get(ts["skipped"])),
                        "skipped_steps": skipped_here,
                        "skipped_by_group": dict(skipped_by_group),
                        "samples_per_s": n_log * gb / max(dt, 1e-9),
                    }
                    for name, v in st.physics_si(graphdef, ts).items():
                        v = np.asarray(v)
                        rec[f"{name}_m2_s" if name.startswith(("nu", "kappa")) else name] = (
                            float(v) if v.size == 1 else [float(x) for x in v.ravel()]
                        )
                    log.write(rec)
                    last = rec
                    t_log, n_log = time.perf_counter(), 0
                    bar.set_postfix(loss=f"{rec['loss']:.4g}", refresh=False)
                bar.update(1)
                if step % cfg.checkpoint.save_every == 0 and b < n:
                    save(step, ts, position)  # the epoch-end save below carries val_loss
                if pause_at and step == pause_at:
                    ckpt.wait()
                    print(f"PAUSED at step {step}", flush=True)
                    while not stop.requested():  # a test kills or signals the process here
                        time.sleep(0.1)
                if stop.requested():
                    stopped = True
                    break
            bar.close()
            if rewound:
                continue
            if stopped:
                save(step, ts, position)
                break
            if cfg.train.max_steps is not None and step >= cfg.train.max_steps and b < n:
                save(step, ts, position)
                break
            # end of epoch: validate, checkpoint with the metric
            position = {"epoch": epoch + 1, "batch": 0, "iter": None}
            val = validate(k) if (epoch + 1) % cfg.train.val_every == 0 else None
            metrics = {"val_loss": val} if val is not None else None
            if val is not None:
                log.write({"kind": "val", "step": step, "epoch": epoch, "k_steps": k,
                           "val_loss": val})
                last = {**last, "val_loss": val}
            if step not in ckpt.all_steps():
                save(step, ts, position, metrics)
            if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
                break
    ckpt.close()
    log.close()
    if stopped and main:
        print(f"neuralogcm train: stopped by signal ({stop.signum or 'on another process'}); "
              f"checkpoint at step {step}", flush=True)
    return RunResult(step, ts, graphdef, last, stopped, skipped=skipped_here,
                     skipped_by_group=dict(skipped_by_group))


def _epoch_iterator(ld, position: dict, gb: int):
    """``(iterator, batches done)`` of an epoch's loader `ld` at a saved `position`.

    A checkpoint holds process 0's iterator state. That state is exact only for the process
    that wrote it, so it is used only when a single process saved it and a single process with
    the same global batch `gb` resumes (it also covers grain worker processes). Otherwise the
    position is counted in samples: ``batch x global batch`` of the saving run were used this
    epoch, and every process starts past its share of them (`iterator_after`), which resumes a
    multi-process run, or any run on another number of processes, with the batches the
    uninterrupted run would have read. (A resume with another global batch rounds down to a
    whole new batch.)"""
    b = int(position.get("batch", 0) or 0)
    if b == 0:
        return iter(ld), 0
    saved = position.get("layout") or {}
    saved_gb = int(saved.get("global_batch", gb))
    saved_procs = int(saved.get("processes", jax.process_count()))
    if position.get("iter") and saved_gb == gb and saved_procs == 1 == jax.process_count():
        return ld.restore(position["iter"]), b
    b = b * saved_gb // gb
    return ld.iterator_after(b), b


def _bad_step(step: int, met: dict, dates: list[str]) -> dict:
    """What a skipped step's metrics say: the parameter groups with non-finite gradients."""
    groups = sorted(g for g, ok in met["grad_finite"].items() if not int(ok))
    return {"step": step, "groups": groups, "loss_finite": bool(int(met["loss_finite"])),
            "dates": dates}


def _nonfinite_detail(bad_run: list[dict]) -> str:
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


def _rewind(ckpt, ts, cfg, mesh, nonfinite, step, detail=""):
    """Restore the last checkpoint after `nonfinite` consecutive non-finite steps (`detail`:
    `_nonfinite_detail` of them, for the error when there is no checkpoint)."""
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


def _progress(total, initial, epoch, k, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch} K={k}", unit="step",
                disable=not enabled, dynamic_ncols=True, leave=False)
