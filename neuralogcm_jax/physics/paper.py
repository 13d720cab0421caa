"""Paper mode assembled: the configured `PaperEquation` stepped through one day.

`make_paper_physics` picks the integrator and substep (`planning.choose_integrator`) and
builds the day step: the hydrostatic pressure gradient from the state at the start of the day
(balanced paper mode), then ``n`` Strang-split substeps (`integrators.repeat_strang`) of the
exact Coriolis-pressure step and the SSP Runge-Kutta step of the explicit terms, for blocks of
levels in turn on a CPU (`PhysicsConfig.level_block`). The equations: `equations`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics.eos import make_eos
from neuralogcm_jax.physics.equations import (
    PaperEquation,
    level_coefficient,
    pressure_gradient_acceleration,
    stack_prognostic,
    unstack_prognostic,
)
from neuralogcm_jax.physics.integrators import INTEGRATORS, repeat_strang
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import paper_coefficients
from neuralogcm_jax.physics.planning import choose_integrator
from neuralogcm_jax.physics.stepping import Physics, PhysicsConfig

Array = Any

__all__ = ["PaperPhysics", "make_paper_physics", "resolve_level_block"]


def resolve_level_block(level_block: int | str | None) -> int | None:
    """`PhysicsConfig.level_block` with ``"auto"`` resolved for the default JAX backend."""
    if level_block == "auto":
        return 8 if jax.default_backend() == "cpu" else None
    return None if level_block is None else int(level_block)


def _map_level_blocks(
    fn: Callable[[PaperEquation, Array], Array],
    eq: PaperEquation,
    q: Array,
    n_blocks: int,
    size: int,
) -> Array:
    """``fn(eq_block, q_block)`` on `n_blocks` blocks of `size` levels in one `lax.map`.

    `q` is ``[..., 4, L, H, W]``. The levels are padded to ``n_blocks * size`` with land (all
    masks zero, so the padding stays zero and costs only its share of the work); the level
    fields of the operators (`Operators.LEVEL_FIELDS`) and per-level coefficients are cut
    the same way.
    """
    n_levels = q.shape[-3]
    extra = n_blocks * size - n_levels

    def blocks(x, axis):  # [.., L, ..] -> [n_blocks, .., size, ..]
        x = jnp.moveaxis(x, axis, 0)
        x = jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1))
        x = x.reshape((n_blocks, size) + x.shape[1:])
        return jnp.moveaxis(x, 1, axis + 1 if axis >= 0 else x.ndim + axis)

    level_fields = {k: blocks(getattr(eq.ops, k), 0) for k in Operators.LEVEL_FIELDS}
    coeffs = {k: getattr(eq, k) for k in ("nu_m", "nu_t")}
    per_level = {k: blocks(v, 0) for k, v in coeffs.items() if jnp.ndim(v) > 0}
    if eq.pg is not None:  # [..., 2, L, H, W]; padded with zero force on the land levels
        per_level["pg"] = blocks(eq.pg, -3)

    def one(xs):
        q_block, fields, nus = xs
        ops = dataclasses.replace(eq.ops, **fields)
        return fn(dataclasses.replace(eq, ops=ops, **nus), q_block)

    out = jax.lax.map(one, (blocks(q, -3), level_fields, per_level))  # [n_blocks, ..., size, H, W]
    out = jnp.moveaxis(out, 0, -4)  # [..., 4, n_blocks, size, H, W]
    out = out.reshape(out.shape[:-4] + (n_blocks * size,) + out.shape[-2:])
    return out[..., :n_levels, :, :]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PaperPhysics(Physics):
    """Paper-mode `Physics`: each day the configured `PaperEquation`, with the pressure gradient
    of the state at its start (balanced paper mode), stepped through `n_substeps` Strang-split
    substeps of the method `integrator` (`integrators.INTEGRATORS`)."""

    _cache: dict[Any, Operators] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def operators(self, dtype: Any) -> Operators:
        dtype = jnp.dtype(dtype)
        if dtype not in self._cache:
            config = self.config
            self._cache[dtype] = Operators.from_grid(
                self.grid, dtype, config.polar_filter_lat_deg,
                joint_filter=config.polar_filter_transfer == "joint")
        return self._cache[dtype]

    def day_step(self, coeffs_si: dict[str, Array], state: OceanState,
                 forcing: Forcing | None = None) -> OceanState:
        """One day of paper-mode physics; fields ``[L, H, W]`` in SI units, land kept as given."""
        del forcing  # paper mode has no surface forcing
        config, grid = self.config, self.grid
        method = INTEGRATORS[self.integrator]
        dt, n = self.dt_substep_s, self.n_substeps
        dtype = jnp.result_type(state.T)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.float32
        ops = self.operators(dtype)
        wet = ops.wet > 0
        q_in = stack_prognostic(state).astype(dtype)
        # Land may hold NaN (raw data); it must never reach a flux, so it is zeroed here and the
        # original land values are put back at the end.
        q = jnp.where(wet, q_in, jnp.zeros((), dtype))
        pg = None
        if config.pressure_gradient == "hydrostatic":
            # Evaluated once, from the state at the start of the day, and held fixed over the
            # substeps: SSH is not prognostic here (no continuity), and the density changes by
            # horizontal advection and diffusion only, slowly against a day (no gravity waves:
            # nothing in paper mode turns divergence into pressure). Held fixed, it leaves the
            # levels independent within the day (the level blocks below), costs one equation of
            # state a day instead of one per substep, and makes the exact step exact.
            ssh = jnp.where(wet[0], jnp.asarray(state.ssh).astype(dtype), jnp.zeros((), dtype))
            eos = make_eos(config.eos)

            def pressure(T, S, eta):
                return pressure_gradient_acceleration(ops, T, S, eta, grid.depth, eos)

            if config.remat_substeps:
                # Recomputed in the backward pass: otherwise a rollout keeps every day's
                # intermediates of the 75-term TEOS-10 polynomial, which doubled the memory of a
                # 10-day gradient at 1.5 deg x 23 levels (1.5 -> 3.0 GB).
                pressure = jax.checkpoint(pressure)
            pg = pressure(q[2], q[3], ssh)
        if config.imbalance == "held":
            # The start state's residual r0 = (f v0 + gx, -f u0 + gy) is held at the fraction
            # 1 - a over the day: the constant force becomes pg - (1 - a) r0, so the fixed point
            # of the exact Coriolis-pressure step moves from the geostrophic velocity toward the
            # start velocity (reached at a = 0).
            a = level_coefficient(coeffs_si["imbalance_release"], self.specs["imbalance_release"],
                                  dtype, q.shape[-3])
            f = ops.coriolis
            gx, gy = (0.0, 0.0) if pg is None else (pg[0], pg[1])
            pg = jnp.stack([a * gx - (1 - a) * f * q[1], a * gy + (1 - a) * f * q[0]]) * ops.wet
        eq = PaperEquation.from_coefficients(
            ops, coeffs_si, self.specs, advective_tracers=config.tracer_advection == "advective",
            advective_momentum=config.momentum_advection == "advective", pg=pg,
        )

        def integrate_levels(eq_block: PaperEquation, q_block: Array) -> Array:
            return repeat_strang(eq_block.exact_step, method.make_step(eq_block.explicit_terms, dt),
                                 dt, n, config.remat_substeps,
                                 mean=config.output == "day_mean")(q_block)

        n_levels = q.shape[-3]
        block = resolve_level_block(config.level_block)
        size = n_levels if block is None else min(block, n_levels)
        if size == n_levels:
            q = integrate_levels(eq, q)
        else:
            n_blocks = -(-n_levels // size)
            size = -(-n_levels // n_blocks)  # as even as possible: 23 levels by 8 -> 3 x 8
            q = _map_level_blocks(integrate_levels, eq, q, n_blocks, size)
        return unstack_prognostic(jnp.where(wet, q, q_in), state.ssh)


def make_paper_physics(grid: Grid, config: PhysicsConfig = PhysicsConfig()) -> PaperPhysics:
    """The paper-mode physics of `grid` (see `neuralogcm_jax.physics.equations`): the integrator
    and substep of `planning.choose_integrator`."""
    specs = paper_coefficients(config)
    method, plan = choose_integrator(grid, config, specs)
    return PaperPhysics(specs=specs, n_substeps=plan.n_substeps, dt_substep_s=plan.dt_s,
                        config=config, grid=grid, plan=plan, integrator=method.name)
