"""What `neuralogcm train` checks and sets up before any compute (`neuralogcm_jax.train.loop`).

Value checks of the config (`check_config`), that output directories can be written
(`check_writable`), whether to resume (`resume_decision`), the model config as the run builds it
(`model_config_for_run`) and JAX's persistent compilation cache (`use_compilation_cache`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from neuralogcm_jax.errors import CheckpointError, ConfigError
from neuralogcm_jax.paths import output_path
from neuralogcm_jax.train import config as config_lib


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
        if len(item) not in (2, 3) or item[0] < 0 or item[1] < 1 or (
                len(item) == 3 and item[2] < 0):
            raise ConfigError(
                f"train.curriculum[{i}] = {item}: expected [epoch >= 0, K >= 1] or "
                f"[epoch >= 0, K >= 1, pushforward days >= 0]"
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


def resolve_model_config(m, data, split: str, *, progress: bool = False):
    """The model config with what it takes from the data resolved: the hybrid's fitted climate
    damping (``model.climate_damping_fit_lag``: initial rates from the lag regression of the
    training split, `neuralogcm_jax.model.fit_climate_damping`). The baselines have no damping,
    no tendency correction and no heat-flux offset, so their fit lag and harmonics are dropped
    unread; a hybrid's tendency correction and heat offset need a format that reads day by day
    (they are fitted after the build, `train.fitted`). Deterministic, so a resumed run resolves the same."""
    from neuralogcm_jax.model import fit_climate_damping
    from neuralogcm_jax.train.fitted import check_day_blocks

    if m.name != "neuralogcm":
        return dataclasses.replace(m, climate_damping_fit_lag=None,
                                   tendency_correction_harmonics=None,
                                   heat_offset_harmonics=None)
    if m.tendency_correction_harmonics is not None:
        check_day_blocks(data)
    if m.heat_offset_harmonics is not None:
        check_day_blocks(data, "heat_offset_harmonics")
    if m.climate_damping_fit_lag is None:
        return m
    if data.lag_sums is None:
        raise ConfigError("model.climate_damping_fit_lag needs a data root that can be read day "
                          "by day (an HDF5 data root); this data format cannot give the lag "
                          "regression: set it to null")
    num, den = data.lag_sums(split, m.climate_damping_fit_lag, progress)
    return fit_climate_damping(m, num, den, data.layout)


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
        compilation_cache.reset_cache()
