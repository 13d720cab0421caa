"""Claims about the input pipeline: shards split an epoch, the shuffle is global and seeded, and a
saved iterator resumes with the very same batches."""

from __future__ import annotations

import numpy as np
import pytest
from test_h5 import LAYOUT, H, W, make_root

from neuralogcm_jax.data.pipeline import (
    GlobalShuffleSampler,
    iterator_state,
    make_loader,
    set_iterator_state,
)
from neuralogcm_jax.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # 2019 + 2020: 731 days, 730 one-step samples (even, so two shards split it exactly)
    return make_root(tmp_path_factory.mktemp("pipe"), {"train": [2019, 2020], "valid": [2021]})


def epoch_times(loader) -> np.ndarray:
    return np.concatenate([b["time"] for b in loader])


def test_batches_have_a_leading_batch_axis(root):
    loader = make_loader(root, "valid", k_steps=2, batch_size=3, seed=0, num_epochs=1)
    b = next(iter(loader))
    n = LAYOUT.n_ocean
    assert b["state"].shape == (3, n, H, W) and b["state"].dtype == np.float32
    assert b["target"].shape == (3, 2, n, H, W) and b["forcing"].shape == (3, 2, 4, H, W)
    assert b["doy"].shape == (3,) and b["doy"].dtype == np.int32
    assert b["time"].dtype == np.int64 and b["target_doy"].shape == (3, 2)
    # 363 samples, batches of 3, remainder dropped
    assert sum(1 for _ in loader) == loader.batches_per_epoch == 121
    # evaluation can keep the last partial batch: 364 samples in batches of 5 -> 72 of 5 and one of 4
    loader = make_loader(root, "valid", batch_size=5, seed=0, num_epochs=1, shuffle=False, drop_remainder=False)
    sizes = [b["time"].shape[0] for b in loader]
    assert sizes == [5] * 72 + [4] and loader.batches_per_epoch == 73


def test_two_shards_are_disjoint_and_cover_the_epoch(root):
    shards = [
        epoch_times(make_loader(root, "train", batch_size=5, seed=7, num_epochs=1, shard_index=p, shard_count=2))
        for p in (0, 1)
    ]
    a, b = (set(s.tolist()) for s in shards)
    assert len(a) == len(shards[0]) == 365 and len(b) == 365
    assert not a & b
    assert a | b == set(range(730))
    # the shuffle is global: each process sees days from both years, not one contiguous block
    for s in shards:
        assert s.min() < 100 and s.max() > 630


def test_shuffle_is_seeded_and_changes_each_epoch(root):
    def first(seed, n):
        it = iter(make_loader(root, "train", batch_size=10, seed=seed, shard_index=0, shard_count=1))
        return np.concatenate([next(it)["time"] for _ in range(n)])

    a = first(1, 146)  # two epochs of 730 samples
    np.testing.assert_array_equal(a, first(1, 146))
    assert not np.array_equal(a[:730], first(2, 73))
    assert sorted(a[:730]) == list(range(730)) and sorted(a[730:]) == list(range(730))
    assert not np.array_equal(a[:730], a[730:])
    ordered = epoch_times(make_loader(root, "train", batch_size=10, seed=0, shuffle=False, num_epochs=1))
    np.testing.assert_array_equal(ordered, np.arange(730))


@pytest.mark.parametrize("taken", [3, 72])  # mid-epoch, and across the end of epoch 1 (73 batches)
def test_restored_iterator_resumes_with_identical_batches(root, taken):
    kw = dict(batch_size=10, seed=11, shard_index=1, shard_count=2, k_steps=1)
    it = iter(make_loader(root, "train", **kw))
    for _ in range(taken):
        next(it)
    state = iterator_state(it)
    assert isinstance(state, str)
    expected = [next(it) for _ in range(4)]

    resumed = make_loader(root, "train", **kw).restore(state)
    for want in expected:
        got = next(resumed)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_a_state_from_another_pipeline_is_refused(root):
    it = iter(make_loader(root, "train", batch_size=4, seed=1, shard_index=0, shard_count=1))
    next(it)
    state = iterator_state(it)
    other = iter(make_loader(root, "train", batch_size=4, seed=2, shard_index=0, shard_count=1))
    with pytest.raises(CheckpointError, match="seed=1"):
        set_iterator_state(other, state)
    other = iter(make_loader(root, "train", batch_size=4, seed=1, k_steps=2, shard_index=0, shard_count=1))
    with pytest.raises(CheckpointError, match="num_records=730"):
        set_iterator_state(other, state)


def test_default_shard_is_this_jax_process(root):
    loader = make_loader(root, "valid", batch_size=2, seed=0)
    assert (loader.shard_index, loader.shard_count) == (0, 1)


def test_bad_settings_are_refused(root):
    with pytest.raises(ConfigError, match="shard_index 2 outside 0 .. 1"):
        make_loader(root, "valid", batch_size=2, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ConfigError, match="cannot fill one batch of 400"):
        make_loader(root, "valid", batch_size=400, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        GlobalShuffleSampler(10, shuffle=True, seed=-1, num_epochs=None)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(root):
    kw = dict(batch_size=4, seed=5, shard_index=0, shard_count=1, num_epochs=1)
    want = [b for _, b in zip(range(5), make_loader(root, "train", **kw))]
    got = [b for _, b in zip(range(5), make_loader(root, "train", worker_count=1, **kw))]
    for g, w in zip(got, want):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k])
