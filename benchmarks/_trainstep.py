"""One sharded training step of any model, built the way `neuralogcm train` builds it, for the
benchmark modules (`bench_train`, `bench_kstep`, `bench_accelerator`).

`setup(...)` returns the compiled step (``jit(...).lower(...).compile()``, so the compile time and
XLA's cost and memory analyses are available), the placed train state and a random batch of the
real layout (97 channels: 93 ocean channels of the state and targets, 4 forcing channels), land
zeroed. The grid is the embedded world (realistic coastlines and bathymetry) at `res` degrees.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

# Dense peak FLOP/s per chip (vendor data sheets, no sparsity), by JAX `device_kind` prefix and
# compute precision. fp32 matrix products run as TF32 on these GPUs under JAX's default precision.
PEAK_FLOPS = {
    "NVIDIA H100": {"fp32": 494.7e12, "bf16": 989.4e12},  # SXM5: TF32 / BF16 tensor cores
    "NVIDIA H200": {"fp32": 494.7e12, "bf16": 989.4e12},
    "NVIDIA A100": {"fp32": 156e12, "bf16": 312e12},
}


def peak_flops(device_kind: str, precision: str) -> float:
    """The chip's dense peak FLOP/s for `precision` ("fp32" or "bf16"), NaN when unknown."""
    for prefix, peaks in PEAK_FLOPS.items():
        if device_kind.startswith(prefix):
            return peaks[precision]
    return float("nan")


@dataclasses.dataclass
class Step:
    """A compiled train step with its inputs (``ts`` is donated: keep the returned one)."""

    compiled: Any  # None when built with compile=False
    lowered: Any
    ts: Any
    batch: dict
    compile_s: float
    n_params: int
    global_batch: int
    k_steps: int

    def run(self, n: int) -> list[float]:
        """Run `n` steps; wall seconds of each (blocking on the metrics)."""
        import jax

        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.ts, met = self.compiled(self.ts, self.batch)
            jax.block_until_ready(met)
            times.append(time.perf_counter() - t0)
        self.last_loss = float(met["loss"])
        return times

    def flops(self) -> float:
        """XLA's FLOP count of one step, from the lowered (not yet optimised) program, so that
        convolutions count on every backend (after GPU compilation they become library calls
        that the compiled cost analysis leaves out). Loop bodies (the physics substeps) count
        once."""
        ca = self.lowered.cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0] if ca else {}
        return float((ca or {}).get("flops", float("nan")))

    def memory_bytes(self) -> float:
        """XLA's memory analysis: temporaries + arguments + outputs - aliased (donated) bytes."""
        from benchmarks.bench_physics import _mem_bytes

        return _mem_bytes(self.compiled)


def setup(res: float, model: str, *, n_data: int = 1, n_x: int = 1, per_device: int = 2,
          k_steps: int = 1, precision: str = "fp32", n_levels: int = 23, seed: int = 0,
          compile: bool = True) -> Step:
    """Build, place and (when `compile`) compile the train step of `model` on a
    ``n_data x n_x`` mesh."""
    import jax

    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.layout import ChannelLayout
    from neuralogcm_jax.train import config as C, loss as L, optim as O, sharding as SH
    from neuralogcm_jax.train import state as S
    from neuralogcm_jax.train.export import identity_stats

    grid = load_world(res, n_levels).grid
    layout = ChannelLayout(tuple(grid.depth))
    stats = identity_stats(grid, layout)
    overrides = [f"model.name={model}", "optim.warmup_steps=0"]
    if precision == "bf16":
        overrides.append("model.dtype=bfloat16")
    cfg = C.load_config(None, overrides)
    gd, *mv = S.split_model(S.build_forecaster(cfg.model, grid, stats, seed=seed))
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(mv[0]))
    tx = O.make_optimizer(cfg.optim, 100)
    mesh = SH.make_mesh(n_data, n_x)
    ts = S.place_train_state(tuple(mv), tx, seed, mesh)
    fn = S.make_train_step(gd, tx, L.loss_weights(grid, layout), mesh, k_steps=k_steps)
    B = per_device * n_data
    H, W = grid.shape
    rng = np.random.default_rng(seed)
    wet = layout.wet_channels(grid.wet)[: layout.n_ocean].astype(np.float32)
    host = {
        "state": (rng.normal(size=(B, layout.n_ocean, H, W)) * wet).astype(np.float32),
        "forcing": rng.normal(size=(B, k_steps, 4, H, W)).astype(np.float32),
        "target": (rng.normal(size=(B, k_steps, layout.n_ocean, H, W)) * wet).astype(np.float32),
        "doy": np.arange(B, dtype=np.int32) % 365,
    }
    batch = SH.shard_batch(host, mesh)
    jitted = fn.jitted(batch)
    t0 = time.perf_counter()
    lowered = jitted.lower(ts, batch)
    compiled = lowered.compile() if compile else None
    compile_s = time.perf_counter() - t0
    return Step(compiled, lowered, ts, batch, compile_s, n_params, B, k_steps)

