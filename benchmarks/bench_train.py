"""Train-step time and samples/s of every model, on 1 device and on 8 faked CPU devices.

One optimizer step = forward K-day rollout (K = 1), backward, AdamW update, with the sharded step
of `neuralogcm_jax.train.state` (the one `neuralogcm train` runs). Batch 2 per device, all 23
levels (97 channels). Configurations:

* ``1 dev``: one device, global batch 2;
* ``8 dev data``: 8 faked CPU devices, mesh 8 x 1, global batch 8 (1 per device);
* ``8 dev 2x4``: 8 faked CPU devices, mesh data 2 x longitude 4, global batch 2 (the same
  samples as ``1 dev``: the loss after 3 steps is compared, a correctness check).

Faked devices share the same CPU cores, so on a CPU they measure the overhead of the sharded
program (collectives, halo exchange), not a speed-up. Each configuration runs in a child process
(the device count is fixed at JAX start-up). Full mode: 1.5 deg (120 x 240), one warm-up step
then the median of 2; quick mode: 7.5 deg (24 x 48). The embedded world's grid (coastlines,
bathymetry) with random anomalies as data. GPU figures are in `bench_accelerator`.

Environment: ``BENCH_TRAIN_MODELS`` and ``BENCH_TRAIN_CONFIGS`` (comma-separated) select models
and configurations, ``BENCH_TRAIN_TIMEOUT`` the seconds allowed per configuration.
Run alone: ``python benchmarks/bench_train.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from neuralogcm_jax.testing import run_in_own_group

ROOT = Path(__file__).resolve().parent.parent

MODELS = ("neuralogcm", "unet", "convlstm", "simvp", "fourcastnet")
CONFIGS = {  # name -> (devices, mesh data, mesh x, batch per device)
    "1 dev": (1, 1, 1, 2),
    "8 dev data": (8, 8, 1, 1),
    "8 dev 2x4": (8, 2, 4, 1),
}

CHILD = r"""
import json, os, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, sys.argv[7])
from benchmarks._trainstep import setup

res, model, nd, nx, per_dev, n_steps = sys.argv[1:7]
st = setup(float(res), model, n_data=int(nd), n_x=int(nx), per_device=int(per_dev))
st.run(1)  # warm-up
times = st.run(int(n_steps))
times.sort()
print("RESULT" + json.dumps({"compile_s": st.compile_s, "step_s": times[len(times) // 2],
                             "batch": st.global_batch, "params": st.n_params,
                             "loss": st.last_loss}))
"""


def _child(res, model, cfg_name, n_steps, timeout):
    devices, nd, nx, per_dev = CONFIGS[cfg_name]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    try:
        p = run_in_own_group(
            [sys.executable, "-c", textwrap.dedent(CHILD), str(res), model, str(nd), str(nx),
             str(per_dev), str(n_steps), str(ROOT)], env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    out, err = p.stdout, p.stderr
    if p.returncode != 0 or "RESULT" not in out:
        return None, f"failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}"
    return json.loads(out.split("RESULT")[-1]), ""


def run(quick: bool) -> list[dict]:
    """Rows: step time (s) and samples/s per model and device configuration, and how far the
    sharded configurations' loss after 3 steps is from the single-device one."""
    res = 7.5 if quick else 1.5
    n_steps = 2
    timeout = int(os.environ.get("BENCH_TRAIN_TIMEOUT", 900 if quick else 1200))
    # "8 dev data" (4x the samples) only on request: BENCH_TRAIN_CONFIGS="1 dev,8 dev data"
    configs = tuple(c for c in os.environ.get("BENCH_TRAIN_CONFIGS", "1 dev,8 dev 2x4").split(",")
                    if c)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown BENCH_TRAIN_CONFIGS {unknown}; known: {list(CONFIGS)}")
    rows = []
    from tqdm import tqdm

    models = tuple(m for m in os.environ.get("BENCH_TRAIN_MODELS", ",".join(MODELS)).split(",")
                   if m)
    jobs = [(m, c) for m in models for c in configs]
    losses: dict[tuple[str, str], float] = {}
    for model, cfg_name in tqdm(jobs, desc="bench_train", unit="config"):
        r, why = _child(res, model, cfg_name, n_steps, timeout)
        tag = f"{model} {cfg_name}"
        grid = f"{res:g} deg x 23 levels (embedded world), 97 channels, K=1"
        if r is None:
            rows.append({"name": f"train step {tag}", "value": float("nan"), "unit": "s",
                         "notes": f"{grid}: {why}"})
            continue
        losses[model, cfg_name] = r["loss"]
        load = os.getloadavg()[0]
        notes = (f"{grid}, global batch {r['batch']}, {r['params']:,} params, "
                 f"compile {r['compile_s']:.0f} s, median of {n_steps}; load average {load:.1f}")
        rows.append({"name": f"train step {tag}", "value": r["step_s"], "unit": "s",
                     "notes": notes})
        rows.append({"name": f"samples/s {tag}", "value": r["batch"] / r["step_s"],
                     "unit": "samples/s", "notes": notes})
        ref = losses.get((model, "1 dev"))
        if cfg_name == "8 dev 2x4" and ref is not None:
            rows.append({"name": f"loss rel. diff {tag}", "value": abs(r["loss"] - ref) / abs(ref),
                         "unit": "", "notes": "loss after 3 steps on the same global batch "
                                              "(2 samples) vs 1 device; sharding changes "
                                              "round-off only"})
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick):
        print(f"{row['name']:<40} {row['value']:>12.4g} {row['unit']:<10} {row['notes']}")
