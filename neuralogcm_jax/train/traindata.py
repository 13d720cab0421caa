"""The training data: a data root opened for the loop, and an epoch's iterator at a saved position.

`open_data` opens ``cfg.data.root``, an HDF5 data root (`neuralogcm_jax.data.pipeline`) or a format
registered with `register_data_format` (the tests register an in-memory ``.npz`` format), as a
`TrainData`; `epoch_iterator` resumes an epoch where a checkpoint's data position left it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from neuralogcm_jax.calendar import iso_date
from neuralogcm_jax.data import h5format, persistence, pipeline
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.data.pipeline import iterator_state  # noqa: F401  (the loop saves it)
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.paths import check_local
from neuralogcm_jax.train import config as config_lib


@dataclasses.dataclass
class TrainData:
    """What the loop needs from a dataset: grid, layout, stats, and loaders per split and K."""

    grid: Grid
    layout: ChannelLayout
    stats: Stats
    make: Any  # (split, k_steps, batch_size_per_process, seed, shuffle) -> loader
    splits: tuple[str, ...]
    day_names: Any = None  # (split, time [B], doy [B]) -> names of the windows' first days
    # (split, lag, progress) -> per-channel lag sums (`data.persistence.lag_sums`), where the
    # format can give them (the fitted climate damping needs them)
    lag_sums: Any = None
    # (split, block_days, overlap) -> (iterator of (anomalies, forcing, doy) blocks of
    # consecutive days, number of day pairs `overlap` apart) (`data.persistence.day_blocks`),
    # where the format can give them (the hybrid's fitted tendency correction needs them)
    day_blocks: Any = None

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


def open_data(cfg: config_lib.Config) -> TrainData:
    """Open and validate ``cfg.data.root`` (an HDF5 root, or a registered format)."""
    check_local(cfg.data.root, "data.root")
    root = Path(cfg.data.root)
    pi, pc = jax.process_index(), jax.process_count()
    opener = _DATA_FORMATS.get(root.suffix)
    if opener is not None:
        return opener(cfg)
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

    def h5_lag_sums(split, lag, progress):
        return persistence.lag_sums(droot, split, lag, stats, progress=progress)

    def h5_day_blocks(split, block_days, overlap):
        n_pairs = persistence.pair_count(droot, split, overlap)
        return (persistence.day_blocks(droot, split, stats, block_days, overlap, forcing=True),
                n_pairs)

    return TrainData(droot.grid, droot.layout, stats, make, tuple(wanted), h5_day_names,
                     h5_lag_sums, h5_day_blocks)


def epoch_iterator(ld, position: dict, gb: int):
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
