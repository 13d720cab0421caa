"""The training input pipeline on grain: global shuffle, per-process shards, batches, prefetch,
and an iterator state that a checkpoint can hold.

``make_loader(root, "train", k_steps=1, batch_size=2, seed=0)`` reads the windows of
`H5WindowSource` and yields dicts of numpy arrays with a leading batch axis::

    state    [B, n_ocean, H, W]      forcing  [B, K, F, H, W]     target [B, K, n_ocean, H, W]
    doy      [B] int32               target_doy [B, K] int32      time   [B] int64

Shuffling is global: each epoch is one permutation of all samples of the split (a new one per
epoch, from the seed and the epoch number), and process ``p`` of ``P`` takes positions
``p, p + P, p + 2P, ...`` of it. So the processes' shares of an epoch are disjoint and together
cover it, and every process sees days from the whole record (grain's `IndexSampler` would give each
process one contiguous block of days, i.e. a few years of the record each).

Reads run in this process on ``read_threads`` threads by default (``worker_count=0``: a 2-core host
gains nothing from worker processes, and the source reads with ``os.preadv``, which releases the
GIL). ``worker_count > 0`` starts grain worker processes; the source pickles without open files,
and the program that starts them must guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys

import grain.python as grain
import jax
import numpy as np

from neuralogcm_jax.data import h5format
from neuralogcm_jax.data.h5format import DataRoot
from neuralogcm_jax.data.h5source import H5WindowSource
from neuralogcm_jax.errors import CheckpointError, ConfigError, NeuralOGCMError


class GlobalShuffleSampler:
    """grain sampler: epoch ``e`` visits the samples in permutation ``perm(seed, e)`` (or in order
    without shuffling); `num_epochs` None repeats forever. Sharding is left to the DataLoader,
    which gives shard ``p`` of ``P`` the sampler positions ``p, p + P, ...``."""

    def __init__(self, num_records: int, *, shuffle: bool, seed: int, num_epochs: int | None):
        if num_records <= 0:
            raise ConfigError(f"a sampler needs at least one record, got {num_records}")
        if num_epochs is not None and num_epochs <= 0:
            raise ConfigError(f"num_epochs must be positive or None, got {num_epochs}")
        if not 0 <= int(seed) < 2**32:
            raise ConfigError(f"seed must be a 32-bit unsigned integer, got {seed}")
        self.num_records = int(num_records)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_epochs = num_epochs

    @functools.lru_cache(maxsize=4)  # noqa: B019 (a handful of epochs, the sampler lives with its loader)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_records)

    def record_key(self, index: int) -> int:
        """The sample read at sampler position `index`."""
        epoch, pos = divmod(int(index), self.num_records)
        return int(self._permutation(epoch)[pos]) if self.shuffle else pos

    def __len__(self) -> int:
        return sys.maxsize if self.num_epochs is None else self.num_epochs * self.num_records

    def __getitem__(self, index: int):
        if index < 0 or index >= len(self):
            raise IndexError(f"sampler position {index} outside 0 .. {len(self) - 1}")
        return grain.RecordMetadata(index=index, record_key=self.record_key(index), rng=None)

    def __repr__(self) -> str:
        # Part of the checkpointed iterator state: a restore with another sampler is refused.
        return (
            f"GlobalShuffleSampler(num_records={self.num_records}, shuffle={self.shuffle}, "
            f"seed={self.seed}, num_epochs={self.num_epochs})"
        )


@dataclasses.dataclass
class Loader:
    """A grain DataLoader with what a training loop needs to know about it.

    Iterate it for batches; ``iterator_state(it)`` / ``loader.restore(state)`` save and resume an
    iterator mid-epoch (the state is a JSON string, so it fits an Orbax JSON item)."""

    data_loader: object
    source: H5WindowSource
    sampler: GlobalShuffleSampler
    batch_size: int
    shard_index: int
    shard_count: int
    drop_remainder: bool = True

    @property
    def batches_per_epoch(self) -> int:
        """Batches this process gets per epoch (its share is ``n_samples // shard_count``)."""
        share = len(self.source) // self.shard_count
        return share // self.batch_size if self.drop_remainder else -(-share // self.batch_size)

    def __iter__(self):
        return iter(self.data_loader)

    def restore(self, state: str | bytes):
        """A fresh iterator positioned where the one whose `iterator_state` was taken stood.

        Only for the iterator of this very shard: a state holds the last sampler position its
        own process read, so another shard restored from it would re-read a sample (and a
        checkpoint of a multi-process run stores process 0's). See `iterator_after`."""
        it = iter(self.data_loader)
        set_iterator_state(it, state)
        return it

    def iterator_after(self, batches: int):
        """A fresh iterator past the first `batches` batches of this shard, for any shard.

        When every shard has taken `batches` batches, the sampler positions below
        ``batches * batch_size * shard_count`` have been read, whatever process read them; so
        this position depends only on the number of samples used, not on which process's
        iterator state a checkpoint holds, and a run can resume on another number of
        processes. Without worker processes grain's state is set to it directly; with workers
        (whose state is per worker) the batches are read and dropped."""
        it = iter(self.data_loader)
        if batches <= 0:
            return it
        state = json.loads(iterator_state(it))
        if int(state.get("worker_count", 0)) == 0:
            records = batches * self.batch_size  # of this shard
            # grain sets the shard's next record to (last_seen + P - p) // P
            state["last_seen_indices"] = {
                "0": (records - 1) * self.shard_count + self.shard_index
            }
            set_iterator_state(it, json.dumps(state))
            return it
        for _ in range(batches):
            next(it)
        return it


def iterator_state(iterator) -> str:
    """The position of a loader iterator as a JSON string (grain's DataLoaderIterator state)."""
    state = iterator.get_state()
    return state.decode() if isinstance(state, bytes) else str(state)


def set_iterator_state(iterator, state: str | bytes) -> None:
    """Move a loader iterator to a position saved by `iterator_state`.

    A state from another pipeline (other sampler, seed, split, window length or worker count)
    raises `CheckpointError` naming the difference."""
    try:
        iterator.set_state(state.encode() if isinstance(state, str) else state)
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, NeuralOGCMError):
            raise
        raise CheckpointError(f"data iterator state does not fit this loader: {e}") from None


def make_loader(
    root: str | os.PathLike | DataRoot,
    split: str,
    *,
    k_steps: int = 1,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    read_threads: int = 2,
    prefetch: int | None = None,
    drop_remainder: bool = True,
    **open_kwargs,
) -> Loader:
    """The batched, shuffled, sharded input pipeline of one split.

    `batch_size`: samples per batch on this process (partial batches are dropped).
    `seed`: shuffle seed (0 .. 2^32-1). `num_epochs`: None repeats forever.
    `shard_index`, `shard_count`: this process's share; default ``jax.process_index()`` of
    ``jax.process_count()``. `read_threads`: threads reading samples in this process.
    `prefetch`: samples read ahead (default ``2 * batch_size``; one 1.5 deg sample with K = 1 is about
    22 MB, so keep it small). `drop_remainder`: drop the last partial batch (training needs equal
    batch shapes; evaluation over a whole split may keep it). `open_kwargs` go to `h5format.open_dataset` (validation options).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if read_threads < 1:
        raise ConfigError(f"read_threads must be >= 1, got {read_threads}")
    if worker_count < 0:
        raise ConfigError(f"worker_count must be >= 0, got {worker_count}")
    if shard_index is None or shard_count is None:
        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ConfigError(f"shard_index {shard_index} outside 0 .. {shard_count - 1}")

    if not isinstance(root, DataRoot):
        root = h5format.open_dataset(root, open_kwargs.pop("layout", None), splits=(split,), **open_kwargs)
    source = H5WindowSource(root, split, k_steps=k_steps)
    if len(source) // shard_count < batch_size:
        raise ConfigError(
            f"{root.root / split}: {len(source)} samples over {shard_count} shard(s) cannot fill "
            f"one batch of {batch_size}"
        )
    sampler = GlobalShuffleSampler(len(source), shuffle=shuffle, seed=seed, num_epochs=num_epochs)
    prefetch = 2 * batch_size if prefetch is None else int(prefetch)
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[grain.Batch(batch_size=batch_size, drop_remainder=drop_remainder)],
        worker_count=worker_count,
        shard_options=grain.ShardOptions(shard_index, shard_count, drop_remainder=True),
        read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch),
    )
    return Loader(loader, source, sampler, batch_size, shard_index, shard_count, drop_remainder)
