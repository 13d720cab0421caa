"""Train-step time and samples/s of every model, on 1 device and on 8 faked CPU devices.

One optimizer step = forward K-day rollout (K = 1), backward, AdamW update, with the sharded step
of `neuralogcm_jax.train.state` (the one `neuralogcm train` runs). Batch 2 per device, all 23
levels (97 channels). Configurations:

* ``1 dev``: one device, global batch 2;
* ``8 dev data``: 8 faked CPU devices, mesh 8 x 1, global batch 16 (2 per device);
* ``8 dev 2x4``: 8 faked CPU devices, mesh data 2 x longitude 4, global batch 2.

Faked devices share the same CPU cores, so on a CPU they measure the overhead of the sharded
program (collectives, halo exchange), not a speed-up. Each configuration runs in a child process
(the device count is fixed at JAX start-up). The grid is 1.5 deg where feasible: the full mode
uses 3 deg (60 x 120) and the quick mode 7.5 deg (24 x 48), because compiling and stepping the
1.5 deg models on a 2-core CPU takes many minutes per configuration.

Run alone: ``python benchmarks/bench_train.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

MODELS = ("neuralogcm", "unet", "convlstm", "simvp", "fourcastnet")
CONFIGS = {  # name -> (devices, mesh data, mesh x, batch per device)
    "1 dev": (1, 1, 1, 2),
    "8 dev data": (8, 8, 1, 2),
    "8 dev 2x4": (8, 2, 4, 1),
}

CHILD = r"""
import json, sys, time
import jax, numpy as np
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.train import config as C, loss as L, optim as O, sharding as SH, state as S
from neuralogcm_jax.train.export import identity_stats

res, model, nd, nx, per_dev, n_steps = sys.argv[1:7]
res, nd, nx, per_dev, n_steps = float(res), int(nd), int(nx), int(per_dev), int(n_steps)
grid = Grid.regular(res)
layout = ChannelLayout(tuple(grid.depth))
stats = identity_stats(grid, layout)
cfg = C.load_config(None, [f"model.name={model}", "optim.warmup_steps=0"])
gd, *mv = S.split_model(S.build_forecaster(cfg.model, grid, stats, seed=0))
n_params = sum(int(np.size(x)) for x in jax.tree.leaves(mv[0]))
tx = O.make_optimizer(cfg.optim, 100)
mesh = SH.make_mesh(nd, nx)
ts = S.place_train_state(tuple(mv), tx, 0, mesh)
fn = S.make_train_step(gd, tx, L.loss_weights(grid, layout), mesh, k_steps=1)
B = per_dev * nd
H, W = grid.shape
rng = np.random.default_rng(0)
wet = layout.wet_channels(grid.wet)[: layout.n_ocean]
batch = SH.shard_batch({
    "state": (rng.normal(size=(B, layout.n_ocean, H, W)) * wet).astype(np.float32),
    "forcing": rng.normal(size=(B, 1, 4, H, W)).astype(np.float32),
    "target": (rng.normal(size=(B, 1, layout.n_ocean, H, W)) * wet).astype(np.float32),
    "doy": np.arange(B, dtype=np.int32),
}, mesh)
t0 = time.perf_counter()
ts, met = fn(ts, batch)
jax.block_until_ready(met)
compile_s = time.perf_counter() - t0
times = []
for _ in range(n_steps):
    t0 = time.perf_counter()
    ts, met = fn(ts, batch)
    jax.block_until_ready(met)
    times.append(time.perf_counter() - t0)
step_s = float(np.median(times))
print("RESULT" + json.dumps({"compile_s": compile_s, "step_s": step_s, "batch": B,
                             "params": n_params, "loss": float(met["loss"])}))
"""


def _child(res, model, cfg_name, n_steps, timeout):
    devices, nd, nx, per_dev = CONFIGS[cfg_name]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(res), model, str(nd), str(nx),
         str(per_dev), str(n_steps)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return None, f"timed out after {timeout} s"
    if p.returncode != 0 or "RESULT" not in out:
        return None, f"failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}"
    return json.loads(out.split("RESULT")[-1]), ""


def run(quick: bool) -> list[dict]:
    """Rows: step time (s) and samples/s per model and device configuration."""
    res = 7.5 if quick else 3.0
    n_steps = 2 if quick else 5
    timeout = 900 if quick else 3600
    configs = ("1 dev", "8 dev 2x4") if quick else tuple(CONFIGS)
    rows = []
    from tqdm import tqdm

    jobs = [(m, c) for m in MODELS for c in configs]
    for model, cfg_name in tqdm(jobs, desc="bench_train", unit="config"):
        r, why = _child(res, model, cfg_name, n_steps, timeout)
        tag = f"{model} {cfg_name}"
        grid = f"{res:g} deg grid, 97 channels, K=1"
        if r is None:
            rows.append({"name": f"train step {tag}", "value": float("nan"), "unit": "s",
                         "notes": f"{grid}: {why}"})
            continue
        notes = (f"{grid}, global batch {r['batch']}, {r['params']:,} params, "
                 f"compile {r['compile_s']:.0f} s, median of {n_steps}")
        rows.append({"name": f"train step {tag}", "value": r["step_s"], "unit": "s",
                     "notes": notes})
        rows.append({"name": f"samples/s {tag}", "value": r["batch"] / r["step_s"],
                     "unit": "samples/s", "notes": notes})
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick):
        print(f"{row['name']:<40} {row['value']:>12.4g} {row['unit']:<10} {row['notes']}")
