"""Primitive-equation mode: one simulated day at 1.5 deg x 23 levels (float32) on the embedded
world, and the memory of a 5-day gradient.

Rows:
* ``primitive_day`` (s/day): median wall time of one jitted `day_step` after compilation, with
  climatological January forcing (target < 2 s);
* ``primitive_day_cpu`` (CPU-s/day): process CPU time (all threads) of the same days, the
  number to compare when other work shares the machine;
* ``primitive_compile`` (s): lowering + compilation of `day_step`;
* ``primitive_substeps`` / ``primitive_barotropic_steps``: baroclinic substeps per day and
  barotropic steps per substep;
* ``primitive_day_sea_floor`` (s/day) and ``primitive_barotropic_steps_sea_floor``: the same
  day with the barotropic mode over the real sea floor (`PrimitiveTerms.barotropic_depth`
  "sea_floor": faster gravity waves, more short steps), timed alternately with the default;
* ``grad5_peak_memory`` (GiB): XLA's memory analysis of the compiled gradient of a 5-day loss
  w.r.t. every learnable coefficient (temporaries + arguments + outputs), substeps
  rematerialised; ``grad5_compile`` (s) and ``grad5_run`` (s).

Run alone: ``python -m benchmarks.bench_primitive [--quick]`` (quick: 3 deg).
"""

from __future__ import annotations

import statistics
import sys
import time


from benchmarks.bench_physics import _mem_bytes


def run(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.physics import PhysicsConfig, make_physics
    from neuralogcm_jax.physics.params import default_raw, to_si
    from neuralogcm_jax.physics.primitive import PrimitiveTerms

    res = 3.0 if quick else 1.5
    world = load_world(res, 23)
    grid = world.grid
    L, (H, W) = grid.n_levels, grid.shape
    shape = f"{res:g} deg, {L}x{H}x{W}, float32, embedded world, TEOS-10"
    physics = make_physics(grid, PhysicsConfig(mode="primitive", primitive=PrimitiveTerms()))
    raw = {k: jnp.asarray(v) for k, v in default_raw(physics.specs).items()}
    coeffs = to_si(raw, physics.specs)
    state = jax.tree.map(jnp.asarray, world.initial_state(jnp.float32))
    forcing = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), world.monthly_forcing(0))

    # The coefficients are constants of the forward run (as in a rollout with fixed physics).
    day = jax.jit(lambda s, f: physics.day_step(coeffs, s, f))
    t0 = time.perf_counter()
    compiled = day.lower(state, forcing).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(state, forcing))
    times, cpu = [], []
    for _ in range(2 if quick else 3):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(compiled(out, forcing))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    per_day = statistics.median(times)
    rows = [
        {"name": "primitive_day", "value": per_day, "unit": "s/day",
         "notes": f"{shape}; median of {len(times)} days after warm-up; target < 2"},
        {"name": "primitive_day_cpu", "value": statistics.median(cpu), "unit": "CPU-s/day",
         "notes": f"{shape}; process CPU time, all threads, median of {len(cpu)} days"},
        {"name": "primitive_compile", "value": compile_s, "unit": "s", "notes": shape},
        {"name": "primitive_substeps", "value": physics.n_substeps, "unit": "per day",
         "notes": f"dt = {physics.dt_substep_s:.0f} s"},
        {"name": "primitive_barotropic_steps", "value": physics.n_barotropic, "unit": "per substep",
         "notes": f"dt_bt = {physics.dt_barotropic_s:.1f} s ("
                  + ("polar-filtered: dx of the cutoff latitude"
                     if PrimitiveTerms().barotropic_polar_filter
                     else "unfiltered, smallest wet cell") + ")"},
    ]

    # The sea-floor option, timed alternately with the default (the machine's load drifts).
    deep = make_physics(grid, PhysicsConfig(
        mode="primitive", primitive=PrimitiveTerms(barotropic_depth="sea_floor")))
    deep_day = jax.jit(lambda s, f: deep.day_step(coeffs, s, f)).lower(state, forcing).compile()
    out_d = jax.block_until_ready(deep_day(state, forcing))
    t_def, t_deep = [], []
    for _ in range(2 if quick else 3):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(out, forcing))
        t_def.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_d = jax.block_until_ready(deep_day(out_d, forcing))
        t_deep.append(time.perf_counter() - t0)
    rows += [
        {"name": "primitive_day_sea_floor", "value": statistics.median(t_deep), "unit": "s/day",
         "notes": f"{shape}; barotropic_depth sea_floor; median of {len(t_deep)} days, "
                  f"alternated with the default's: {statistics.median(t_def):.3f} s/day"},
        {"name": "primitive_barotropic_steps_sea_floor", "value": deep.n_barotropic,
         "unit": "per substep", "notes": f"dt_bt = {deep.dt_barotropic_s:.1f} s; deepest "
                                         f"sea floor {float(grid.sea_floor_m.max()):.0f} m"},
    ]

    forcings = jax.tree.map(lambda x: jnp.broadcast_to(x, (5,) + x.shape), forcing)

    def loss(raw):
        final = physics.integrate(to_si(raw, physics.specs), state, forcings, 5)
        return jnp.mean(final.T**2) + jnp.mean(final.u**2 + final.v**2)

    grad = jax.jit(jax.grad(loss))
    t0 = time.perf_counter()
    gcomp = grad.lower(raw).compile()
    gcompile_s = time.perf_counter() - t0
    rows.append({"name": "grad5_peak_memory", "value": _mem_bytes(gcomp) / 2**30, "unit": "GiB",
                 "notes": f"{shape}; XLA memory analysis of the 5-day gradient w.r.t. all "
                          f"{len(raw)} coefficients, substeps rematerialised"})
    rows.append({"name": "grad5_compile", "value": gcompile_s, "unit": "s", "notes": shape})
    t0, c0 = time.perf_counter(), time.process_time()
    g = jax.block_until_ready(gcomp(raw))
    rows.append({"name": "grad5_run", "value": time.perf_counter() - t0, "unit": "s",
                 "notes": f"{shape}; one gradient evaluation, "
                          f"{time.process_time() - c0:.0f} CPU-s; all gradients finite: "
                          f"{all(bool(jnp.isfinite(v)) for v in g.values())}"})
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv[1:]):
        print(f"{row['name']:28s} {row['value']:12.4g} {row['unit']:12s} {row['notes']}")
