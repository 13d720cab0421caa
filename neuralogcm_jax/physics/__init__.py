"""neuralogcm_jax.physics: the differentiable physics core (pure JAX, no Flax).

Public entry point::

    physics = make_physics(grid, PhysicsConfig())          # paper mode by default
    state = physics.day_step(coeffs_si, state, forcing)    # one day, [L, H, W] fields, SI units
    final = physics.integrate(coeffs_si, state, forcings, n_days)

Modules: `operators` (finite-volume operators, polar filter), `equations` (paper-mode
tendencies, `PaperEquation`), `integrators` (SSP Runge-Kutta steppers, Strang splitting),
`planning` (substep counts), `stepping` (`PhysicsConfig`, the `Physics` interface,
`check_state`), `paper` (paper mode assembled), `primitive` (primitive mode, `PrimitiveEquation`),
`vertical` (column operators), `eos` (equations of state), `params` (learnable coefficients).
"""

from __future__ import annotations

from neuralogcm_jax.grid import Grid
from neuralogcm_jax.physics.paper import make_paper_physics
from neuralogcm_jax.physics.planning import SubstepPlan, plan_substeps
from neuralogcm_jax.physics.primitive import make_primitive_physics
from neuralogcm_jax.physics.stepping import Physics, PhysicsConfig, check_state

__all__ = [
    "Physics",
    "PhysicsConfig",
    "SubstepPlan",
    "check_state",
    "make_physics",
    "plan_substeps",
]


def make_physics(grid: Grid, config: PhysicsConfig = PhysicsConfig()) -> Physics:
    """The physics core for `grid`: paper mode, or primitive mode when ``config.mode`` says so."""
    if config.mode == "primitive":
        return make_primitive_physics(grid, config)
    return make_paper_physics(grid, config)
