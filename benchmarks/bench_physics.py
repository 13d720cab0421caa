"""Paper-mode physics core: one simulated day at 1.5 deg x 23 levels (float32), compile time, and
the memory of a 10-day gradient.

Rows:
* ``physics_day`` (s/day): median wall time of one jitted `day_step` after compilation;
* ``physics_compile`` (s): lowering + compilation of `day_step`;
* ``physics_substeps``: substeps per day derived from the CFL / diffusion limits;
* ``physics_cell_updates`` (cells/s): ``L*H*W * substeps`` per second (every cell, land included,
  is computed);
* ``physics_bandwidth`` (GB/s): XLA's ``bytes accessed`` of one substep of one block of levels
  (the innermost loop body, which XLA's cost analysis counts once) times the substeps and the
  blocks, over the day's time (an estimate of the memory traffic achieved);
* ``grad10_*``: a loss after 10 days differentiated w.r.t. ``nu_m``, ``nu_t`` and the initial
  state (through `lax.scan`, substeps rematerialised): XLA's memory analysis of the compiled
  gradient (temporaries + arguments + outputs), compile time and run time; the same with
  ``remat_substeps=False`` for comparison (compile only).

Run alone: ``python benchmarks/bench_physics.py [--quick]`` (quick: 3 deg).
"""

from __future__ import annotations

import statistics
import sys
import time


def _compiled(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _mem_bytes(compiled) -> float:
    m = compiled.memory_analysis()
    if m is None:
        return float("nan")
    return float(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
                 - m.alias_size_in_bytes)


def _bytes_accessed(compiled) -> float:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return float((ca or {}).get("bytes accessed", float("nan")))


def run(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from neuralogcm_jax.grid import GLORYS23_DEPTHS_M
    from neuralogcm_jax.physics import PhysicsConfig, make_physics
    from neuralogcm_jax.testing import realistic_grid, smooth_state

    res = 3.0 if quick else 1.5
    grid = realistic_grid(res, GLORYS23_DEPTHS_M)
    L, (H, W) = grid.n_levels, grid.shape
    shape = f"{res:g} deg, {L}x{H}x{W}, float32, realistic coastlines"
    physics = make_physics(grid, PhysicsConfig())
    coeffs = {"nu_m": jnp.float32(5e4), "nu_t": jnp.float32(1e3)}
    state = jax.tree.map(jnp.asarray, smooth_state(grid, max_speed_m_s=1.5))
    from neuralogcm_jax.physics.integrators import INTEGRATORS

    method = INTEGRATORS[physics.integrator]

    def time_days(phys):
        compiled, compile_s = _compiled(jax.jit(phys.day_step), coeffs, state, None)
        out = jax.block_until_ready(compiled(coeffs, state, None))
        times, cpu = [], []
        for _ in range(3 if quick else 7):
            t0, c0 = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(compiled(coeffs, out, None))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return compiled, compile_s, out, times, cpu

    compiled, compile_s, out, times, cpu = time_days(physics)
    per_day = statistics.median(times)
    n = physics.n_substeps
    cells = L * H * W
    from neuralogcm_jax.physics.paper import resolve_level_block

    block = resolve_level_block(physics.config.level_block)
    n_blocks = 1 if block is None or block >= L else -(-L // block)
    # XLA's cost analysis counts a loop body once: one substep of one level block (plus the
    # little outside the loops)
    gbs = _bytes_accessed(compiled) * n * n_blocks / per_day / 1e9
    rows = [
        {"name": "physics_day", "value": per_day, "unit": "s/day",
         "notes": f"{shape}; median of {len(times)} days after warm-up; target < 0.5"},
        {"name": "physics_day_cpu", "value": statistics.median(cpu), "unit": "CPU s/day",
         "notes": "process CPU time of the same days (all threads); wall >> CPU/threads means "
                  "the machine was shared"},
        {"name": "physics_compile", "value": compile_s, "unit": "s", "notes": "jit(day_step)"},
        {"name": "physics_substeps", "value": n, "unit": "per day",
         "notes": f"dt = {physics.dt_substep_s:.0f} s, limited by {physics.plan.limited_by}; "
                  f"{physics.integrator} ({method.stages} tendency evaluations) + exact "
                  f"Coriolis each; levels in {n_blocks} block(s)"},
        {"name": "physics_cell_updates", "value": cells * n / per_day, "unit": "cell-substeps/s",
         "notes": f"{cells} cells x {n} substeps per day"},
        {"name": "physics_bandwidth", "value": gbs, "unit": "GB/s",
         "notes": "XLA 'bytes accessed' of one substep of one level block x substeps x "
                  "blocks / day time (estimate)"},
    ]

    # ---- the same day with the other integrator, for comparison
    other = "ssprk3" if physics.integrator != "ssprk3" else "ssprk43"
    alt = make_physics(grid, PhysicsConfig(integrator=other))
    _, _, _, alt_times, alt_cpu = time_days(alt)
    rows.append({"name": f"physics_day_{other}", "value": statistics.median(alt_times),
                 "unit": "s/day",
                 "notes": f"the same with integrator={other!r}: {alt.n_substeps} substeps of "
                          f"{alt.dt_substep_s:.0f} s, {INTEGRATORS[other].stages} evaluations "
                          f"each; {statistics.median(alt_cpu):.3f} CPU s/day"})

    # ---- a 10-day gradient: memory (and time) through lax.scan with rematerialised substeps
    days = 10
    vol = jnp.asarray(grid.cell_volume * grid.wet, jnp.float32)

    def make_loss(phys):
        def loss(c, s0):
            s = phys.integrate(c, s0, None, days)
            return jnp.sum(vol * (s.T - s0.T) ** 2) / jnp.sum(vol)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))

    grad = make_loss(physics)
    gcomp, gcompile_s = _compiled(grad, coeffs, state)
    rows.append({"name": "grad10_memory", "value": _mem_bytes(gcomp) / 2**20, "unit": "MiB",
                 "notes": f"XLA memory analysis of jit(grad) of a loss after {days} days "
                          "(temp + args + out), remat_substeps=True"})
    rows.append({"name": "grad10_compile", "value": gcompile_s, "unit": "s", "notes": ""})
    if not quick:
        t0 = time.perf_counter()
        jax.block_until_ready(gcomp(coeffs, state))
        rows.append({"name": "grad10_run", "value": time.perf_counter() - t0, "unit": "s",
                     "notes": f"forward + backward through {days} days ({days * n} substeps)"})
    no_remat = make_physics(grid, PhysicsConfig(remat_substeps=False))
    ncomp, _ = _compiled(make_loss(no_remat), coeffs, state)
    rows.append({"name": "grad10_memory_no_remat", "value": _mem_bytes(ncomp) / 2**20,
                 "unit": "MiB", "notes": "the same with remat_substeps=False (compile only)"})
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"name": "process_peak_rss", "value": rss, "unit": "MiB",
                     "notes": "getrusage of the whole benchmark process"})
    except ImportError:  # pragma: no cover - non-POSIX
        pass
    del out
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
