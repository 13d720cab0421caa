"""Rollout and evaluation speed of the models (`python -m benchmarks.run rollout`).

* hybrid rollout speed at 1.5 deg x 23 levels (default sizes): simulated years per day of wall
  time, from a timed 5-day `rollout` after compilation (quick: 6 deg x 4 levels);
* evaluation throughput: initial dates x lead days per second, a batch of 8 initial dates rolled
  out together as `neuralogcm evaluate` does, on the 6 deg x 4-level demo grid, per model.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.data.world import load_world
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import MODEL_NAMES, ModelConfig, build_model
from neuralogcm_jax.rollout import rollout


def _world_model(name: str, res: float, levels: int, extra: dict | None = None):
    world = load_world(res, levels)
    g = world.grid
    lay = ChannelLayout(tuple(g.depth))
    n = lay.n_ocean
    clim = np.zeros((366, n) + g.shape, np.float32)
    clim[:, lay.var_slice("T")] = world.T_clim
    clim[:, lay.var_slice("S")] = world.S_clim
    std = np.ones(lay.n_channels, np.float32)
    std[lay.var_slice("U")] = std[lay.var_slice("V")] = 0.1
    stats = Stats.build(np.zeros(lay.n_channels), std, clim, g.wet, lay)
    cfg = ModelConfig(name=name, **(extra or {}))
    return build_model(cfg, g, stats), stats


def _time_rollout(model, stats, batch: int, days: int) -> tuple[float, float]:
    g = model.grid
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, stats.layout.n_ocean) + g.shape) * 0.1 * stats.wet,
                    jnp.float32)
    f = jnp.asarray(rng.normal(size=(batch, days, 4) + g.shape), jnp.float32)
    t0 = time.perf_counter()
    jax.block_until_ready(rollout(model, x, f, days, doy0=0))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(rollout(model, x * 0.5, f, days, doy0=5))
    return compile_s, time.perf_counter() - t0


def run(quick: bool) -> list[dict]:
    rows = []
    res, levels = (6.0, 4) if quick else (1.5, 23)
    days = 5
    m, st = _world_model("neuralogcm", res, levels)
    c, t = _time_rollout(m, st, 1, days)
    rows.append({"name": "hybrid_rollout_day", "value": t / days, "unit": "s/day",
                 "notes": f"{res} deg x {levels} levels, batch 1, {days}-day rollout after compile "
                          f"({m.physics.n_substeps} physics substeps/day); target: a year < 180 s"})
    rows.append({"name": "hybrid_rollout_years_per_day", "value": 86400 / (365 * t / days),
                 "unit": "sim years / wall day", "notes": f"{res} deg x {levels} levels"})
    rows.append({"name": "hybrid_rollout_compile", "value": c, "unit": "s", "notes": ""})
    for name in MODEL_NAMES:
        extra = None
        if name == "unet":
            from neuralogcm_jax.nn.baselines.unet import UNetConfig

            extra = {"unet": UNetConfig(channel_mults=(1, 2, 4))}  # 60 longitudes: stride 4
        m, st = _world_model(name, 6.0, 4, extra)
        _, t = _time_rollout(m, st, 8, 10)
        rows.append({"name": f"eval_throughput_{name}", "value": 8 * 10 / t,
                     "unit": "init x lead days/s",
                     "notes": "6 deg x 4 levels (the demo grid), 8 initial dates x 10 days"})
    return rows
