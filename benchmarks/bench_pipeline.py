"""Input-pipeline throughput at the NeuralOGCM resolution: 97 channels x 120 x 240 (1.5 deg), K = 1.

A year file (365 days, 4.1 GB) and a full day-of-year climatology (3.9 GB) are written once to
``$NEURALOGCM_BENCH_DIR`` (default: the system temp folder) and reused by later runs. The quick
mode uses a 3 deg grid (60 x 120, 2 GB in all) so it stays light on a laptop. Throughput is
measured through `make_loader` (global shuffle, batch 2, in-process read threads) from a cold page
cache (the files' pages are evicted with ``posix_fadvise(POSIX_FADV_DONTNEED)``; dropping the whole
cache needs root) and from a warm one (the same samples read a second time).

Run alone: ``python benchmarks/bench_pipeline.py [--quick]``.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

YEAR = 2019
K = 1
BATCH = 2


def _bench_root(res: float) -> Path:
    base = Path(os.environ.get("NEURALOGCM_BENCH_DIR", tempfile.gettempdir()))
    return base / f"neuralogcm_bench_pipeline_v1_{res:g}deg"


def _build(root: Path, res: float) -> None:
    """Write the benchmark data root (skipped when a complete one is already there)."""
    from tqdm import tqdm

    from neuralogcm_jax.data import h5format as hf

    from neuralogcm_jax.data import h5write
    from neuralogcm_jax.grid import Grid
    from neuralogcm_jax.layout import ChannelLayout

    layout = ChannelLayout()
    done = root / "COMPLETE"
    if done.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    grid = Grid.regular(res)
    H, W = grid.shape
    rng = np.random.default_rng(0)
    lat = grid.lat[:, None]
    lon = grid.lon[None, :]
    # A crude continent pattern: about 30 % land, growing with depth (enough for realistic masks).
    land2d = (np.sin(np.deg2rad(2 * lon)) * np.cos(np.deg2rad(lat)) > 0.55) | (lat < -78)
    wet = np.stack([~land2d & ~((k >= 18) & (np.abs(lat) > 70)) for k in range(23)])
    wet_ch = layout.wet_channels(wet)
    base = rng.normal(size=(layout.n_channels, H, W)).astype(np.float32)
    base[~wet_ch] = np.nan
    with h5write.YearWriter(root / "train" / f"{YEAR}.h5", 365, layout.n_channels, (H, W), grid.lat, grid.lon,
                       layout.depths_m) as w:
        for t in tqdm(range(365), desc="bench data year"):
            w.write_day(t, base + np.float32(0.01 * t))
    clim_path = root / hf.CLIM_FILE
    clim = np.lib.format.open_memmap(clim_path, mode="w+", dtype=np.float32, shape=(366, layout.n_ocean, H, W))
    for d in tqdm(range(366), desc="bench climatology"):
        clim[d] = base[: layout.n_ocean] + np.float32(0.01 * d)
    clim.flush()
    del clim
    np.save(root / hf.MEAN_FILE, np.zeros(layout.n_channels, np.float32))
    np.save(root / hf.STD_FILE, np.ones(layout.n_channels, np.float32))
    h5write.write_land_mask(root, wet_ch, grid.lat, grid.lon)
    done.write_text("ok\n")


def _evict(root: Path) -> None:
    """Drop the data files' pages from the page cache (clean pages, not mapped anywhere)."""
    gc.collect()
    for p in list(root.rglob("*.h5")) + list(root.glob("*.npy")):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _measure(root: Path, n_batches: int, read_threads: int, seed: int) -> float:
    from neuralogcm_jax.data.pipeline import make_loader

    loader = make_loader(root, "train", k_steps=K, batch_size=BATCH, seed=seed, shard_index=0,
                         shard_count=1, read_threads=read_threads, nan_check_days=0)
    it = iter(loader)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    dt = time.perf_counter() - t0
    del it
    loader.source.close()
    del loader
    gc.collect()
    return n_batches * BATCH / dt


def run(quick: bool) -> list[dict]:
    """Rows: name, value, unit, notes."""
    res = 3.0 if quick else 1.5
    H, W = int(180 / res), int(360 / res)
    need = (365 + 366) * 97 * H * W * 4
    root = _bench_root(res)
    root.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root.parent).free
    if not (root / "COMPLETE").exists() and free < 1.5 * need:
        return [{"name": "pipeline_samples_per_s", "value": float("nan"), "unit": "samples/s",
                 "notes": f"skipped: needs {need / 1e9:.1f} GB free in {root.parent}, have {free / 1e9:.1f} GB"}]
    t0 = time.perf_counter()
    _build(root, res)
    build_s = time.perf_counter() - t0
    n_batches = 32 if quick else 128
    sample_mb = (93 + K * (93 + 4)) * H * W * 4 / 1e6
    shape = f"{res:g} deg 97x{H}x{W}, K={K}, batch {BATCH}, {n_batches * BATCH} shuffled samples"
    rows = []
    for threads in ((2,) if quick else (1, 2)):
        _evict(root)
        cold = _measure(root, n_batches, threads, seed=threads)
        warm = _measure(root, n_batches, threads, seed=threads)  # the same samples again
        note = f"{shape}, {threads} read thread(s), {sample_mb:.1f} MB per sample out"
        rows.append({"name": f"pipeline_cold_t{threads}", "value": round(cold, 2), "unit": "samples/s",
                     "notes": note + "; page cache evicted with posix_fadvise"})
        rows.append({"name": f"pipeline_warm_t{threads}", "value": round(warm, 2), "unit": "samples/s",
                     "notes": note + "; same samples re-read"})
    rows.append({"name": "pipeline_bench_data_build", "value": round(build_s, 1), "unit": "s",
                 "notes": f"0 when reused from {root}"})
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    for row in run(ap.parse_args().quick):
        print(f"{row['name']:32s} {row['value']:>10} {row['unit']:10s} {row['notes']}")
