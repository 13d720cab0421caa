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
from neuralogcm_jax.physics.params import CoefficientSpec, paper_coefficients
from neuralogcm_jax.physics.planning import SubstepPlan, plan_substeps
from neuralogcm_jax.physics.primitive import make_primitive_physics
from neuralogcm_jax.physics.primitive_terms import primitive_coefficients
from neuralogcm_jax.physics.stepping import Physics, PhysicsConfig, check_state

__all__ = [
    "Physics",
    "PhysicsConfig",
    "SubstepPlan",
    "check_state",
    "coefficient_specs",
    "make_physics",
    "plan_substeps",
]


# mode -> (builder, its learnable coefficients for a config): the one place a mode is
# dispatched on
_MODES = {
    "paper": (make_paper_physics, paper_coefficients),
    "primitive": (make_primitive_physics, primitive_coefficients),
}


def make_physics(grid: Grid, config: PhysicsConfig = PhysicsConfig()) -> Physics:
    """The physics core for `grid`: paper mode, or primitive mode when ``config.mode`` says so."""
    return _MODES[config.mode][0](grid, config)


def coefficient_specs(config: PhysicsConfig = PhysicsConfig()) -> dict[str, CoefficientSpec]:
    """The learnable coefficients (`Physics.specs`) of the core `make_physics` builds for
    `config`, without a grid or a build (a configuration checks its values with them)."""
    return _MODES[config.mode][1](config)
