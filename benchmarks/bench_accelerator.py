"""Speed, memory and MFU on an accelerator (GPU/TPU) at 1.5 deg x 23 levels (97 channels).

Runs only when JAX's default backend is not the CPU (on a CPU it returns no rows and the harness
leaves the section as it is; ``BENCH_ALLOW_CPU=1`` runs it anyway, for a smoke test with
``--quick``: 3 deg, NeuralOGCM and FourCastNet only). Parts, in order (``BENCH_PARTS``, comma-separated, selects some):

* ``physics``: one simulated day of the paper-mode physics core (float32, realistic coastlines),
  median of 10 days after compilation;
* ``rollout``: the hybrid NeuralOGCM `rollout` (default sizes), simulated years per wall day, at
  batch 1 and batch 8;
* ``train``: the sharded train step (`neuralogcm train`'s) of every model, K = 1, batch 2, float32
  parameters; rows: step time, samples/s, XLA's FLOPs per step, achieved TFLOP/s, MFU (achieved
  FLOP/s over the chip's dense peak for the compute precision: TF32 for fp32, BF16 for bf16),
  XLA's memory of the step and the device's peak bytes in use;
* ``kstep``: NeuralOGCM train step through K = 1, 4, 8 daily steps (nested remat): compile time,
  XLA memory, step time;
* ``bf16``: the train steps again with the networks in bfloat16 (``model.dtype=bfloat16``;
  physics, loss and parameters stay float32);
* ``batch16``: the fp32 and bf16 train steps at batch 16, where the GPU is less starved;
* ``primitive``: 5 days of the primitive-mode core on the embedded world (January forcing).

FLOPs come from XLA's cost analysis of the lowered (not yet optimised) step; where the backend
gives none before compilation (GPU), the same step is lowered on the CPU backend in a child
process (compiled GPU programs hand convolutions to library calls that the analysis leaves
out, which under-counts the convolutional models about 100-fold). A loop body counts once, so for
NeuralOGCM the physics substeps (a `lax.scan`) are under-counted; its physics is
bandwidth-bound elementwise work in any case.

Every row is also printed as soon as it is measured and appended to the JSON-lines file named
by ``BENCH_ROWS_JSONL`` (if set), so a run cut short keeps what it measured.
Run alone: ``python benchmarks/bench_accelerator.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

MODELS = ("neuralogcm", "unet", "convlstm", "simvp", "fourcastnet")
PARTS = ("physics", "rollout", "train", "kstep", "bf16", "batch16", "primitive")


def _emit(rows: list[dict], row: dict) -> None:
    rows.append(row)
    print(f"  {row['name']:<44} {row['value']:>12.4g} {row['unit']:<14} {row['notes']}", flush=True)
    path = os.environ.get("BENCH_ROWS_JSONL")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _peak_bytes() -> float:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return float(stats.get("peak_bytes_in_use", float("nan")))


def _time_days(day_step, coeffs, state, forcing, n: int) -> tuple[float, float]:
    """(median wall seconds of one jitted `day_step` over `n` days after a warm-up day,
    compile seconds); the state is carried from day to day."""
    import jax

    t0 = time.perf_counter()
    day = jax.jit(day_step).lower(coeffs, state, forcing).compile()
    compile_s = time.perf_counter() - t0
    state = jax.block_until_ready(day(coeffs, state, forcing))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        state = jax.block_until_ready(day(coeffs, state, forcing))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def _physics(rows: list[dict], res: float) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.grid import GLORYS23_DEPTHS_M
    from neuralogcm_jax.physics import PhysicsConfig, make_physics
    from neuralogcm_jax.testing import realistic_grid, smooth_state

    grid = realistic_grid(res, GLORYS23_DEPTHS_M)
    physics = make_physics(grid, PhysicsConfig())
    coeffs = {"nu_m": jnp.float32(5e4), "nu_t": jnp.float32(1e3)}
    state = jax.tree.map(jnp.asarray, smooth_state(grid, max_speed_m_s=1.5))
    per_day, compile_s = _time_days(physics.day_step, coeffs, state, None, 10)
    _emit(rows, {"name": "physics_day", "value": per_day, "unit": "s/day",
                 "notes": f"paper mode, {res:g} deg x 23 levels, float32, {physics.n_substeps} substeps; "
                          f"median of 10; compile {compile_s:.1f} s"})
    _emit(rows, {"name": "physics_year", "value": 365 * per_day, "unit": "s/sim year",
                 "notes": "paper mode, from physics_day"})


def _primitive(rows: list[dict], res: float) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.physics import PhysicsConfig, make_physics

    world = load_world(res, 23)
    prim = make_physics(world.grid, PhysicsConfig(mode="primitive"))
    c = {k: jnp.float32(spec.default) for k, spec in prim.specs.items()}
    s0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), world.initial_state(np.float32))
    f0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), world.monthly_forcing(0))
    per_day, pcompile = _time_days(prim.day_step, c, s0, f0, 5)
    _emit(rows, {"name": "primitive_day", "value": per_day, "unit": "s/day",
                 "notes": f"primitive mode, {res:g} deg x 23 levels, embedded world, January forcing, "
                          f"{prim.n_substeps} substeps; median of 5; compile {pcompile:.1f} s"})


def _rollout(rows: list[dict], res: float) -> None:
    from benchmarks.bench_rollout import _time_rollout, _world_model

    m, st = _world_model("neuralogcm", res, 23)
    for batch in (1, 8):
        days = 10
        c, t = _time_rollout(m, st, batch, days)
        _emit(rows, {"name": f"hybrid_rollout_day_b{batch}", "value": t / days, "unit": "s/day",
                     "notes": f"NeuralOGCM {res:g} deg x 23, batch {batch}, {days}-day rollout, "
                              f"compile {c:.1f} s"})
        _emit(rows, {"name": f"hybrid_rollout_years_per_day_b{batch}",
                     "value": 86400 / (365 * t / days) * batch, "unit": "sim years / wall day",
                     "notes": f"batch {batch} (member-years)"})


def _cpu_flops(res: float, model: str, per_device: int, k: int, precision: str) -> float:
    """FLOPs of the same train step counted on the CPU backend (lowering only, in a child
    process): its cost analysis of the lowered program counts every convolution, which the
    GPU's compiled analysis leaves to library calls. NaN if the child fails."""
    import subprocess

    code = ("import json; from benchmarks._trainstep import setup; "
            f"st = setup({res}, {model!r}, per_device={per_device}, k_steps={k}, "
            f"precision={precision!r}, compile=False); print('FLOPS', st.flops())")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=600).stdout
        return float(out.split("FLOPS")[-1])
    except (subprocess.SubprocessError, ValueError):
        return float("nan")


def _train(rows: list[dict], res: float, models, precision: str, k_values=(1,),
           per_device: int = 2) -> None:
    import gc

    import jax

    from benchmarks._trainstep import peak_flops, setup

    kind = jax.local_devices()[0].device_kind
    peak = peak_flops(kind, precision)
    for model in models:
        for k in k_values:
            tag = f"{model} {precision}" + (f" K={k}" if len(k_values) > 1 else "") + (
                f" b{per_device}" if per_device != 2 else "")
            try:
                st = setup(res, model, per_device=per_device, k_steps=k, precision=precision)
                st.run(2)  # warm-up
                times = st.run(5)
            except Exception as e:  # noqa: BLE001 - one model's failure must not lose the rest
                _emit(rows, {"name": f"train_step {tag}", "value": float("nan"), "unit": "s",
                             "notes": f"failed: {type(e).__name__}: {str(e)[:200]}"})
                continue
            step = statistics.median(times)
            flops = st.flops()
            if flops != flops:  # the GPU backend gives no cost analysis before compilation
                flops = _cpu_flops(res, model, per_device, k, precision)
            where = f"{res:g} deg x 23, batch {st.global_batch}, K={k}, {st.n_params:,} params"
            _emit(rows, {"name": f"train_step {tag}", "value": step, "unit": "s",
                         "notes": f"{where}; median of 5; compile {st.compile_s:.1f} s"})
            _emit(rows, {"name": f"samples/s {tag}", "value": st.global_batch / step,
                         "unit": "samples/s", "notes": where})
            _emit(rows, {"name": f"TFLOP/s {tag}", "value": flops / step / 1e12, "unit": "TFLOP/s",
                         "notes": f"XLA cost analysis of the lowered step: {flops / 1e9:.1f} "
                                  "GFLOP/step"})
            _emit(rows, {"name": f"MFU {tag}", "value": 100 * flops / step / peak, "unit": "%",
                         "notes": f"of {peak / 1e12:.0f} TFLOP/s dense {'TF32' if precision == 'fp32' else 'BF16'} ({kind})"})
            _emit(rows, {"name": f"memory {tag}", "value": st.memory_bytes() / 2**30, "unit": "GiB",
                         "notes": f"XLA memory analysis of the step; device peak so far "
                                  f"{_peak_bytes() / 2**30:.1f} GiB"})
            del st
            gc.collect()
            jax.clear_caches()


def run(quick: bool) -> list[dict]:
    import jax

    backend = jax.default_backend()
    if backend == "cpu" and not os.environ.get("BENCH_ALLOW_CPU"):
        print("bench_accelerator: no accelerator (JAX backend is the CPU); nothing measured")
        return []
    parts = [p for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p]
    # quick: 3 deg (the default U-Net needs a longitude count divisible by 16: left out)
    res, models = (3.0, ("neuralogcm", "fourcastnet")) if quick else (1.5, MODELS)
    rows: list[dict] = []
    print(f"bench_accelerator on {jax.local_devices()[0].device_kind}: parts {parts}", flush=True)
    for part in parts:
        t0 = time.perf_counter()
        if part == "physics":
            _physics(rows, res)
        elif part == "primitive":
            _primitive(rows, res)
        elif part == "rollout":
            _rollout(rows, res)
        elif part == "train":
            _train(rows, res, models, "fp32")
        elif part == "kstep":
            _train(rows, res, ("neuralogcm",), "fp32", k_values=(1, 4, 8))
        elif part == "bf16":
            _train(rows, res, models, "bf16")
        elif part == "batch16":
            for precision in ("fp32", "bf16"):
                _train(rows, res, models, precision, per_device=16)
        else:
            raise SystemExit(f"unknown BENCH_PARTS entry {part!r}; known: {PARTS}")
        print(f"[{part}] {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv)
