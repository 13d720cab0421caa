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
2. the model is built (a new run of the hybrid fits its tendency correction to the training
   split first, `fitted`), split into plain pytrees, and the train state is created or restored
   onto the current mesh (any device count);
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

This module is the driver, `train`; around it: `traindata` (opening the data, epoch iterators at
a saved position), `preflight` (checks and setup before compute), `metrics_log` (metrics.jsonl,
TensorBoard, the progress bar), `faults` (signals, non-finite steps, rewinds) and `fitted`
(fields fitted to the data before the first step). Their public
names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import numpy as np

from neuralogcm_jax.errors import ConfigError, DataError, StateError
from neuralogcm_jax.train import checkpoint as ckpt_lib
from neuralogcm_jax.train import config as config_lib
from neuralogcm_jax.train import sharding as sh
from neuralogcm_jax.train import state as st
from neuralogcm_jax.train.fitted import apply_fitted_fields
from neuralogcm_jax.train.faults import (  # noqa: F401  (public names re-exported)
    MAX_REWINDS,
    PAUSE_ENV,
    STOPPED_EXIT_STATUS,
    StopFlag,
    bad_step,
    nonfinite_detail,
    rewind,
)
from neuralogcm_jax.train.loss import loss_weights
from neuralogcm_jax.train.metrics_log import MetricsLog, progress_bar
from neuralogcm_jax.train.optim import lr_schedule, make_optimizer
from neuralogcm_jax.train.preflight import (  # noqa: F401  (public names re-exported)
    check_config,
    check_writable,
    model_config_for_run,
    resolve_model_config,
    resume_decision,
    use_compilation_cache,
)
from neuralogcm_jax.train.traindata import (  # noqa: F401  (public names re-exported)
    TrainData,
    epoch_iterator,
    iterator_state,
    open_data,
    register_data_format,
)


@dataclasses.dataclass
class RunResult:
    """What `train` returns: last step, final train state, and the last metrics.

    `skipped`: steps of this call whose update was skipped (non-finite loss or gradient),
    rewound ones included; `skipped_by_group`: for every parameter group (`state.param_group`),
    how many of them had a non-finite gradient in that group; `physics_start`: the learnable
    physics coefficients (SI) when this call began (empty for a model without them)."""

    step: int
    train_state: Any
    graphdef: Any
    metrics: dict
    stopped_by_signal: bool = False
    skipped: int = 0
    skipped_by_group: dict = dataclasses.field(default_factory=dict)
    physics_start: dict = dataclasses.field(default_factory=dict)


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
    model_cfg = resolve_model_config(model_config_for_run(cfg), data, cfg.data.train_split,
                                     progress=progress and main)
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

    def window(epoch):  # days after each sample's first day: pushforward + trained days
        k, p = cfg.stage_at_epoch(epoch)
        return k + p

    def epoch_steps(epoch):
        try:
            n = loader(window(epoch)).batches_per_epoch
        except (ConfigError, DataError) as e:
            k, p = cfg.stage_at_epoch(epoch)
            raise ConfigError(
                f"train.curriculum at epoch {epoch}: K = {k} trained days after {p} pushforward "
                f"days need windows of {k + p + 1} days of {cfg.data.train_split!r}: {e}"
            ) from None
        return min(n, cfg.train.steps_per_epoch or n)

    total = sum(epoch_steps(e) for e in range(cfg.train.epochs))
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    tx = make_optimizer(cfg.optim, total)

    # ---------------------------------------------------------------- model and state
    model = st.build_forecaster(model_cfg, data.grid, data.stats, seed=cfg.train.seed)
    if not resume:  # a resumed run restores the fitted fields with the parameters
        apply_fitted_fields(model, data, cfg.data.train_split, progress=progress and main)
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
    physics_start = st.physics_si(graphdef, ts)
    if main:
        config_lib.write_config(cfg, out_dir)
    log = MetricsLog(out_dir, main)
    net_lr = lr_schedule(cfg.optim.lr, cfg.optim, total)
    phys_lr = lr_schedule(cfg.optim.physics_lr, cfg.optim, total)

    train_steps: dict = {}
    eval_steps: dict = {}

    def train_step(k, p):
        if (k, p) not in train_steps:
            train_steps[k, p] = st.make_train_step(
                graphdef, tx, weights, mesh, k_steps=k, pushforward=p,
                deterministic=cfg.train.deterministic, remat=cfg.train.remat,
            )
        return train_steps[k, p]

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
    with StopFlag(ckpt.manager.reached_preemption) as stop:
        while position["epoch"] < cfg.train.epochs:
            epoch = int(position["epoch"])
            k, pf = cfg.stage_at_epoch(epoch)
            n = epoch_steps(epoch)
            # a new permutation every epoch, reproducible from (seed, epoch)
            ld = data.loader(cfg.data.train_split, k + pf, per_process, epoch_seed(epoch),
                             cfg.data.shuffle)
            it, b = epoch_iterator(ld, position, gb)
            fn = train_step(k, pf)
            bar = progress_bar(total=n, initial=b, epoch=epoch, k=k,
                               enabled=progress and main, pushforward=pf)
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
                    bad = bad_step(step, jax.device_get(met),
                                    data.batch_dates(cfg.data.train_split, batch))
                    bad_run = [*bad_run, bad][-nonfinite:]
                    skipped_here += 1
                    for g in bad["groups"]:
                        skipped_by_group[g] += 1
                else:
                    bad_run = []
                if nonfinite >= cfg.train.nonfinite_patience:
                    detail = nonfinite_detail(bad_run)
                    rewinds += 1
                    if rewinds > MAX_REWINDS:
                        ckpt.close()
                        raise StateError(
                            f"{nonfinite} non-finite losses or gradients in a row at step {step}, "
                            f"again after restoring the last checkpoint {MAX_REWINDS} times; "
                            f"{detail}; check the data of these days or lower optim.lr"
                        )
                    ts, position, step = rewind(ckpt, ts, cfg, mesh, nonfinite, step, detail)
                    bad_run = []
                    rewound = True
                    break
                if step % cfg.train.log_every == 0 or b == n or step == cfg.train.max_steps:
                    m = jax.device_get(met)
                    dt = time.perf_counter() - t_log
                    rec = {
                        "kind": "train", "step": step, "epoch": epoch, "k_steps": k,
                        "pushforward_days": pf,
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
                    # A test kills or signals the process here. (With several processes only
                    # SIGKILL ends the pause: a SIGTERM's sync step is one past this one.)
                    while not stop.requested(step):
                        time.sleep(0.1)
                if stop.requested(step):
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
        print(f"neuralogcm train: stopped by {stop.describe()}; checkpoint at step {step}",
              flush=True)
    return RunResult(step, ts, graphdef, last, stopped, skipped=skipped_here,
                     skipped_by_group=dict(skipped_by_group), physics_start=physics_start)
