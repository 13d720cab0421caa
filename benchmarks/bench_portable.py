"""Portable models and runs (issue 14): the model's constants, the memory of a sharded training
step, and a resumed run's first step with and without JAX's persistent compilation cache.

Rows:

* ``constants``: bytes of NeuralOGCM's constants (every variable that is neither an `nnx.Param`
  nor RNG state: ``nnx.split(model, nnx.Param, nnx.RngState, ...)[-1]``, what a train state
  carries as ``consts`` and replicates on every device) at 1.5 deg x 23 levels on the embedded
  world, with the largest entries; the climatology is the compact harmonic fit ``[2 K + 1,
  n_ocean, H, W]`` (K = 4, `neuralogcm_jax.data.normalize`). ``constants before`` is the same
  total with the former 366-day table ``[366, n_ocean, H, W]`` float32 in place of the harmonics,
  computed from the shapes (the old code is not run);
* ``train step memory``: XLA's memory analysis per device (temporaries + arguments + outputs -
  donated aliases) of NeuralOGCM's compiled training step (K = 1) at 1.5 deg, on 1 device
  (batch 2) and on 8 simulated CPU devices, mesh data 2 x longitude 4 (batch 1 per device), as
  `bench_train`'s ``1 dev`` and ``8 dev 2x4``; compiled only, not run; beside it the child
  process's peak resident memory (``ru_maxrss``). Each in its own child process (the device
  count is fixed when JAX starts);
* ``resume first step``: `neuralogcm train` on a tiny twin (12 deg x 2 levels, one training year;
  the default NeuralOGCM with one downsampling instead of two, which 30 longitudes require)
  killed after the checkpoint of step 2 of 3 (a preempted job), then resumed with the identical
  command twice: without the compilation cache and with the cache the first run filled. Timed
  from launching the resumed process to its first metrics record of step 3 appearing in
  ``metrics.jsonl`` (polled every 50 ms), and inside the loop (the record's own
  ``samples_per_s``: loop start to the first step's metrics on the host, the step's compile or
  cache load included). Cache hits are read from JAX's debug log of ``jax._src.compiler``.

Quick mode: 6 deg for the constants and the memory, the twin's model shrunk (a smoke run).
Run alone: ``python benchmarks/bench_portable.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from neuralogcm_jax.testing import run_in_own_group

ROOT = Path(__file__).resolve().parent.parent
N_LEVELS = 23
GiB = 2**30
MB = 1e6

CONSTS_CHILD = r"""
import json, os, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, sys.argv[2])
import numpy as np
import jax
from flax import nnx
from neuralogcm_jax.data.world import load_world
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.train import config as C, state as S
from neuralogcm_jax.train.export import identity_stats

res = float(sys.argv[1])
grid = load_world(res, int(sys.argv[3])).grid
layout = ChannelLayout(tuple(grid.depth))
stats = identity_stats(grid, layout)
cfg = C.load_config(None, ["model.name=neuralogcm"])
model = S.build_forecaster(cfg.model, grid, stats, seed=0)
_, params, rngs, consts = nnx.split(model, nnx.Param, nnx.RngState, ...)
entries = []
for path, x in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(consts)):
    a = np.asarray(x)
    entries.append(("/".join(str(getattr(k, "key", k)) for k in path), list(a.shape),
                    str(a.dtype), int(a.nbytes)))
entries.sort(key=lambda e: -e[3])
n_params = sum(int(np.size(x)) for x in jax.tree.leaves(nnx.to_pure_dict(params)))
print("RESULT" + json.dumps({"entries": entries, "H": grid.shape[0], "W": grid.shape[1],
                             "n_ocean": layout.n_ocean, "K": stats.n_harmonics,
                             "harmonics_shape": list(np.shape(stats.harmonics)),
                             "n_params": n_params}))
"""

MEM_CHILD = r"""
import json, os, resource, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, sys.argv[5])
import jax
from benchmarks._trainstep import setup

res, nd, nx, per_dev = sys.argv[1:5]
st = setup(float(res), "neuralogcm", n_data=int(nd), n_x=int(nx), per_device=int(per_dev))
m = st.compiled.memory_analysis()
print("RESULT" + json.dumps({
    "devices": len(jax.devices()), "batch": st.global_batch, "compile_s": st.compile_s,
    "total": st.memory_bytes(), "temp": m.temp_size_in_bytes, "args": m.argument_size_in_bytes,
    "out": m.output_size_in_bytes, "alias": m.alias_size_in_bytes,
    "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

TWIN_CHILD = r"""
import os, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, sys.argv[2])
from neuralogcm_jax.data.twin import DatasetSpec, TruthSpec, generate_dataset
spec = DatasetSpec(resolution_deg=12.0, n_levels=2, train_years=(1983,), valid_years=(1984,),
                   test_years=(), spinup_days=0, truth=TruthSpec(mode="paper", substep_s=21600.0))
print(generate_dataset(sys.argv[1], spec, seed=0, overwrite=True, progress=False))
"""

# the 12 deg twin's 30 longitudes allow one downsampling of the corrector (the default two need a
# multiple of 4); the full run keeps the default config otherwise
TWIN_NEURALOGCM = ["--set", "model.corrector.n_down=1"]
# the test suite's small NeuralOGCM (tests/test_multiprocess.py), for quick mode
SMALL_NEURALOGCM = [
    "--set", "model.corrector.hid_channels=8", "--set", "model.corrector.n_conv_blocks=2",
    "--set", "model.corrector.n_down=1", "--set", "model.corrector.n_attention_blocks=1",
    "--set", "model.corrector.num_heads=2",
]


def _env(devices: int = 1, **extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
                   os.pathsep))
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.update(extra)
    return env


def _why(p: subprocess.CompletedProcess | subprocess.Popen, err: str) -> str:
    if p.returncode == -signal.SIGKILL:
        return ("the child was killed by SIGKILL (-9), most likely by the out-of-memory killer")
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return f"failed (exit {p.returncode}): {last}"


def _child(script: str, args: list, devices: int, timeout: float):
    """Run `script` in a child process; (result dict or None, why, wall seconds)."""
    t0 = time.perf_counter()
    try:
        p = run_in_own_group([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                             env=_env(devices), timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
    wall = time.perf_counter() - t0
    out, err = p.stdout, p.stderr
    if p.returncode != 0 or "RESULT" not in out:
        return None, _why(p, err), wall
    return json.loads(out.split("RESULT")[-1]), "", wall


def _load() -> str:
    return "load average " + "/".join(f"{x:.1f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- 1: constants
def constants_rows(res: float) -> list[dict]:
    r, why, _ = _child(CONSTS_CHILD, [res, ROOT, N_LEVELS], 1, 1800)
    grid = f"{res:g} deg x {N_LEVELS} levels (embedded world)"
    if r is None:
        return [{"name": "constants", "value": float("nan"), "unit": "MB",
                 "notes": f"NeuralOGCM at {grid}: {why}"}]
    total = sum(e[3] for e in r["entries"])
    H, W, n_ocean, K = r["H"], r["W"], r["n_ocean"], r["K"]
    harm = [e for e in r["entries"] if list(e[1]) == r["harmonics_shape"]]
    harm_bytes = sum(e[3] for e in harm)
    table = 366 * n_ocean * H * W * 4
    top = "; ".join(f"{name} {shape} {dtype} {nb / MB:.1f} MB" for name, shape, dtype, nb
                    in r["entries"][:6])
    rows = [
        {"name": "constants", "value": total / MB, "unit": "MB",
         "notes": f"NeuralOGCM at {grid}, {r['n_params']:,} params: {len(r['entries'])} constant "
                  f"arrays (non-Param, non-RNG variables), summed nbytes; climatology = K={K} "
                  f"harmonics [{2 * K + 1}, {n_ocean}, {H}, {W}] float32 "
                  f"({len(harm)} entr{'y' if len(harm) == 1 else 'ies'} of that shape, "
                  f"{harm_bytes / MB:.1f} MB). Largest: {top}"},
        {"name": "constants before", "value": (total - harm_bytes + table) / MB, "unit": "MB",
         "notes": f"computed from the shapes, not measured: the same constants with the former "
                  f"366-day climatology [366, {n_ocean}, {H}, {W}] float32 "
                  f"({table / MB:.0f} MB) in place of the harmonics "
                  f"(x{(total - harm_bytes + table) / total:.0f})"},
    ]
    return rows


# --------------------------------------------------------------------------- 2: memory
MESHES = {  # name -> (devices, mesh data, mesh x, batch per device), as bench_train's CONFIGS
    "1 dev": (1, 1, 1, 2),
    "8 dev 2x4": (8, 2, 4, 1),
}


def memory_rows(res: float, timeout: float) -> list[dict]:
    rows = []
    grid = f"{res:g} deg x {N_LEVELS} levels (embedded world), NeuralOGCM, K=1"
    for name, (devices, nd, nx, per_dev) in MESHES.items():
        r, why, wall = _child(MEM_CHILD, [res, nd, nx, per_dev, ROOT], devices, timeout)
        if r is None:
            rows.append({"name": f"train step memory {name}", "value": float("nan"),
                         "unit": "GiB", "notes": f"{grid}: {why} (after {wall:.0f} s); "
                                                 f"{_load()}"})
            continue
        before = ("" if devices == 1 else
                  "; before (366-day climatology): bench_train's 1.5 deg '8 dev 2x4' children were"
                  " all SIGKILLed, most likely out of memory on this 24 GiB machine (not"
                  " re-measured)")
        rows.append({
            "name": f"train step memory {name}", "value": r["total"] / GiB, "unit": "GiB/device",
            "notes": f"{grid}, global batch {r['batch']}, mesh {nd}x{nx}; XLA memory analysis "
                     f"per device of the compiled step: temp {r['temp'] / GiB:.2f} + args "
                     f"{r['args'] / GiB:.2f} + out {r['out'] / GiB:.2f} - donated "
                     f"{r['alias'] / GiB:.2f} GiB; compiled only (compile {r['compile_s']:.0f} "
                     f"s); {_load()}{before}"})
        rows.append({
            "name": f"peak RSS {name}", "value": r["maxrss"] / GiB, "unit": "GiB",
            "notes": f"ru_maxrss of the child process ({devices} simulated CPU device"
                     f"{'s' if devices > 1 else ''} in one process): model build, placement, "
                     f"random batch, lowering and compilation; the step is not run, so XLA's "
                     f"temporaries are not allocated{before}"})
    return rows


# --------------------------------------------------------------------------- 3: resume
def _train_args(data: Path, out: Path, quick: bool, cache: Path | None) -> list[str]:
    args = [
        "--model", "neuralogcm", *(SMALL_NEURALOGCM if quick else TWIN_NEURALOGCM),
        "--data_root", str(data), "--batch_size", "1", "--epochs", "1", "--no_progress",
        "--set", f"train.out_dir={out}", "--set", "train.steps_per_epoch=3",
        "--set", "train.curriculum=[[0, 1]]", "--set", "train.precision=fp32",
        "--set", "train.log_every=1", "--set", "optim.warmup_steps=1",
        "--set", "checkpoint.save_every=2", "--set", "checkpoint.async_save=false",
        "--set", "data.val_max_batches=1", "--set", "data.read_threads=1",
    ]
    if cache is not None:
        args += ["--set", f"train.compilation_cache_dir={cache}"]
    return args


def _first_record(metrics: Path, after_step: int) -> dict | None:
    if not metrics.exists():
        return None
    for line in metrics.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if rec.get("kind") == "train" and rec.get("step", 0) > after_step:
            return rec
    return None


def _train(args: list[str], out: Path, *, pause_after: int | None, after_step: int,
           timeout: float) -> dict:
    """Launch `neuralogcm train`; wall seconds to the first train record past `after_step`, the
    record, the process's wall time and its compiler log. With `pause_after`, the run blocks
    after that step's checkpoint and is killed (SIGKILL) there."""
    extra = {"JAX_DEBUG_LOG_MODULES": "jax._src.compiler"}
    if pause_after:
        extra["NEURALOGCM_PAUSE_AFTER_STEP"] = str(pause_after)
    log = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "neuralogcm_jax.cli", "train", *args],
                             env=_env(1, **extra), stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    first_s, rec = None, None
    try:
        while True:
            if rec is None:
                rec = _first_record(out / "metrics.jsonl", after_step)
                if rec is not None:
                    first_s = time.perf_counter() - t0
            if pause_after and f"PAUSED at step {pause_after}" in log.read_text():
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                break
            if p.poll() is not None:
                break
            if time.perf_counter() - t0 > timeout:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise RuntimeError(f"timed out after {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    wall = time.perf_counter() - t0
    text = log.read_text()
    if rec is None:
        rec = _first_record(out / "metrics.jsonl", after_step)
    if not pause_after and p.returncode != 0:
        tail = " / ".join(text.strip().splitlines()[-3:])
        raise RuntimeError(f"exit {p.returncode}: {tail}")
    return {"first_s": first_s, "rec": rec, "wall": wall, "log": text}


def _cache_log(text: str) -> tuple[list[str], list[str], list[str]]:
    """Module names of the persistent cache's hits, writes, and entries skipped as too fast."""
    hits = re.findall(r"Persistent compilation cache hit for '([^']+)'", text)
    writes = re.findall(r"'([^']+)' took at least [\d.]+ seconds to compile", text)
    fast = re.findall(r"Not writing persistent cache entry for '([^']+)' because it took <", text)
    return hits, writes, fast


def resume_rows(quick: bool, timeout: float) -> list[dict]:
    import jax

    min_s = jax.config.jax_persistent_cache_min_compile_time_secs
    env_min = os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    model = ("NeuralOGCM (the tests' small corrector)" if quick else
             "NeuralOGCM (default config but corrector n_down=1, as 30 longitudes need)")
    setting = (f"threshold jax_persistent_cache_min_compile_time_secs = {min_s:g} s (JAX's "
               f"default; the project does not change it, train.compilation_cache_dir only sets "
               f"the folder{', environment sets ' + env_min if env_min else ''})")
    base = Path(tempfile.mkdtemp(prefix="bench_portable_"))
    try:
        r, why, _ = _child(TWIN_CHILD, [base / "twin", ROOT], 1, timeout)
        data = base / "twin"
        if not (data / "spec.json").exists():
            raise RuntimeError(f"twin generation: {why or 'no spec.json'}")
        cache = base / "cache"
        first = base / "run"
        # run 1: steps 1-2 with the cache on, killed after the checkpoint of step 2
        r1 = _train(_train_args(data, first, quick, cache), first, pause_after=2, after_step=0,
                    timeout=timeout)
        if not (first / "checkpoints").exists():
            raise RuntimeError("the first run left no checkpoint: " +
                               " / ".join(r1["log"].strip().splitlines()[-3:]))
        n_cache = len(list(cache.iterdir())) if cache.exists() else 0
        runs = {}
        for name, c in (("without cache", None), ("warm cache", cache)):
            out = base / name.replace(" ", "_")
            shutil.copytree(first, out)
            runs[name] = _train(_train_args(data, out, quick, c), out, pause_after=None,
                                after_step=2, timeout=timeout)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    hits0, writes0, fast0 = _cache_log(r1["log"])
    rows = []
    for name, rr in runs.items():
        rec = rr["rec"] or {}
        loop_s = 1 / rec["samples_per_s"] if rec.get("samples_per_s") else float("nan")
        hits, _, _ = _cache_log(rr["log"])
        cache_note = (f"cache hits: {', '.join(hits) or 'none'}" if name == "warm cache" else
                      "train.compilation_cache_dir unset (cache off)")
        notes = (f"{model}, 12 deg x 2 levels twin, batch 1, killed after the checkpoint of step 2 "
                 f"of 3 and resumed with the identical command; wall from launching the resumed "
                 f"process to its step-3 record in metrics.jsonl (imports, data, model build, "
                 f"restore, compile or cache load, the step); in the loop alone "
                 f"{loop_s:.1f} s (the record's samples_per_s: loop start to the first step's "
                 f"metrics); whole process {rr['wall']:.0f} s (validation and final checkpoint "
                 f"included); {cache_note}; {_load()}")
        rows.append({"name": f"resume first step, {name}", "value": rr["first_s"], "unit": "s",
                     "notes": notes})
    rows.append({"name": "resume: cache entries written by the first run", "value": n_cache,
                 "unit": "files", "notes":
                 f"compiles stored: {', '.join(writes0) or 'none'}; "
                 f"{len(fast0)} compiles below the threshold not stored; {setting}; the first "
                 f"run's step 1 came {r1['first_s']:.0f} s after launch (cold, writing the cache)"})
    return rows


def run(quick: bool) -> list[dict]:
    res = 6.0 if quick else 1.5
    timeout = float(os.environ.get("BENCH_PORTABLE_TIMEOUT", 600 if quick else 1200))
    rows = constants_rows(res)
    rows += memory_rows(res, timeout)
    try:
        rows += resume_rows(quick, timeout)
    except RuntimeError as e:
        rows.append({"name": "resume first step", "value": float("nan"), "unit": "s",
                     "notes": f"failed: {e}"})
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row['name']:<48} {row['value']:>12.4g} {row['unit']:<10} {row['notes']}")
