"""Time integration of the physics: explicit SSP Runge-Kutta steppers and Strang splitting.

One model step is one day (see `docs/design.md`). Inside it the physics is sub-stepped:

    substep(q) = C(dt/2) . RK(dt) . C(dt/2) (q)        (Strang splitting, `strang_split`)

where ``C`` is the exact part (in paper mode the exact Coriolis rotation, in balanced paper mode
the exact solution of Coriolis plus the day's fixed pressure-gradient acceleration: a rotation
about the geostrophic velocity, `equations.coriolis_pressure_step`) and ``RK`` an explicit
strong-stability-preserving Runge-Kutta method on the explicit terms (advection, metric terms,
diffusion), one of `INTEGRATORS` (`PhysicsConfig.integrator`): SSP-RK(4,3) (`ssp_rk43_step`:
four stages, third order, SSP coefficient 2: every stage is a forward Euler step of ``dt/2``), or
the three-stage Shu-Osher SSP-RK3 (`ssp_rk3_step`, SSP coefficient 1). The splitting is second
order; both methods are third order and keep the total-variation bound of a forward Euler step
of ``dt / c`` (``c`` the SSP coefficient). On the imaginary axis, the margin that covers the
metric terms (a rotation at rate ``u tan(phi)/R``), SSP-RK3 reaches ``+-1.73 i`` and SSP-RK(4,3)
``+-2.16 i``; on the negative real axis, where diffusion lives, their extents
(`real_axis_stability_extent`) are 2.5127 and 5.1494 (forward Euler: 2). How these numbers set
the substep: `planning`.

The half steps of the exact part of consecutive substeps are merged (`repeat_strang`): a day is
``C(dt/2) . (RK(dt) . C(dt)) ^ n . C(-dt/2)``, equal to ``substep ^ n`` up to round-off (``C`` is
the exact flow of a linear equation with constant forcing, so ``C(a) C(b) = C(a + b)``).
Primitive mode has its own split-explicit substep (`primitive.PrimitiveEquation`) and repeats
it with `repeat`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any

__all__ = [
    "INTEGRATORS",
    "Integrator",
    "real_axis_stability_extent",
    "repeat",
    "repeat_strang",
    "ssp_rk3_step",
    "ssp_rk43_step",
    "strang_split",
]


def real_axis_stability_extent(coefficients: tuple[float, ...]) -> float:
    """``x > 0`` where the stability polynomial ``R(z) = sum_k c_k z^k`` of an explicit
    Runge-Kutta method first leaves ``|R| <= 1`` on the negative real axis (forward Euler
    ``(1, 1)``: 2, where ``R(-2) = -1``; SSP-RK3 ``(1, 1, 1/2, 1/6)``: 2.5127, also at ``R = -1``;
    SSP-RK(4,3) ``(1, 1, 1/2, 1/6, 1/48)``: 5.1494, where ``R`` comes back to ``+1``)."""
    c = np.asarray(coefficients, dtype=np.float64)
    candidates = []
    for target in (-1.0, 1.0):  # |R(-x)| = 1 at a root of R(z) - target
        shifted = c.copy()
        shifted[0] -= target
        candidates += [-r.real for r in np.roots(shifted[::-1])
                       if abs(r.imag) < 1e-9 and r.real < -1e-12]
    for x in sorted(candidates):
        # the first crossing where |R| really exceeds 1 just beyond (not a tangency)
        z = -x * (1.0 + 1e-6)
        if abs(np.polyval(c[::-1], z)) > 1.0:
            return float(x)
    raise ValueError(f"stability polynomial {tuple(coefficients)} is stable on the whole real axis")


def ssp_rk3_step(explicit_fn: Callable[[Array], Array], dt: float) -> Callable[[Array], Array]:
    """One SSP-RK3 (Shu-Osher) step of ``dq/dt = explicit_fn(q)`` over `dt` seconds."""

    def step(q):
        q1 = q + dt * explicit_fn(q)
        q2 = 0.75 * q + 0.25 * (q1 + dt * explicit_fn(q1))
        return q / 3.0 + (2.0 / 3.0) * (q2 + dt * explicit_fn(q2))

    return step


def ssp_rk43_step(explicit_fn: Callable[[Array], Array], dt: float) -> Callable[[Array], Array]:
    """One SSP-RK(4,3) step (four stages, third order, SSP coefficient 2; Kraaijevanger 1991,
    Spiteri & Ruuth 2002) of ``dq/dt = explicit_fn(q)`` over `dt` seconds: each stage is a forward
    Euler step of ``dt/2``, so a step of twice the forward-Euler limit keeps its bounds."""
    h = 0.5 * dt

    def step(q):
        q1 = q + h * explicit_fn(q)
        q2 = q1 + h * explicit_fn(q1)
        q3 = (2.0 / 3.0) * q + (1.0 / 3.0) * (q2 + h * explicit_fn(q2))
        return q3 + h * explicit_fn(q3)

    return step


@dataclasses.dataclass(frozen=True)
class Integrator:
    """An explicit SSP Runge-Kutta method as the substep planner sees it.

    Attributes:
      name: the `PhysicsConfig.integrator` key.
      stages: tendency evaluations per step (the cost).
      ssp_coefficient: a step of ``ssp_coefficient`` x the forward-Euler limit keeps the
        forward-Euler step's stability and monotonicity (the advective limit scales with it).
      stability_polynomial: ``R(z)`` coefficients; its real-axis extent sets the diffusive limit.
      make_step: ``make_step(explicit_fn, dt) -> step``.
    """

    name: str
    stages: int
    ssp_coefficient: float
    stability_polynomial: tuple[float, ...]
    make_step: Callable[[Callable[[Array], Array], float], Callable[[Array], Array]]

    @property
    def diffusive_gain(self) -> float:
        """The diffusive substep relative to forward Euler's (real-axis extent / 2)."""
        return real_axis_stability_extent(self.stability_polynomial) / 2.0


INTEGRATORS: dict[str, Integrator] = {
    "ssprk3": Integrator("ssprk3", 3, 1.0, (1.0, 1.0, 0.5, 1.0 / 6.0), ssp_rk3_step),
    "ssprk43": Integrator("ssprk43", 4, 2.0, (1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 48.0), ssp_rk43_step),
}


# ---------------------------------------------------------------------- repetition and splitting
def strang_split(
    exact_fn: Callable[[Array, float], Array], explicit_step: Callable[[Array], Array], dt: float
) -> Callable[[Array], Array]:
    """``exact(dt/2) . explicit_step . exact(dt/2)``: second-order splitting of one substep."""

    def step(q):
        return exact_fn(explicit_step(exact_fn(q, 0.5 * dt)), 0.5 * dt)

    return step


def repeat_strang(
    exact_fn: Callable[[Array, float], Array],
    explicit_step: Callable[[Array], Array],
    dt: float,
    n: int,
    remat: bool = True,
    mean: bool = False,
) -> Callable[[Array], Array]:
    """`n` substeps of `strang_split` in one `lax.scan`, with the half steps of neighbouring
    substeps merged: ``S^n = E(dt/2) . (R . E(dt))^(n-1) . R . E(dt/2)`` with ``S = E(dt/2) . R .
    E(dt/2)``, written as ``E(dt/2) . (R . E(dt))^n . E(-dt/2)`` (``E`` exact, ``R`` explicit).

    Equal to ``repeat(strang_split(...), n)`` up to round-off when ``E(a) . E(b) = E(a + b)``
    (true of the exact Coriolis rotation). The exact part is applied to the loop carry, before
    the explicit step, so it fuses into the step's first reads instead of being evaluated on the
    last explicit stage, whose result it would otherwise recompute for every channel it mixes.

    With `mean`, returns the mean of the states after each of the `n` substeps instead of the
    last: the carry after substep ``i`` is ``E(-dt/2)`` of that state, and ``E`` is affine (a
    rotation plus a constant kick), so the mean of the states is ``E(dt/2)`` of the carries' mean.
    """
    body_fn = (lambda q: explicit_step(exact_fn(q, dt)))
    body_fn = jax.checkpoint(body_fn) if remat else body_fn

    def run(q):
        q = exact_fn(q, -0.5 * dt)
        if not mean:
            q, _ = jax.lax.scan(lambda c, _: (body_fn(c), None), q, None, length=n)
            return exact_fn(q, 0.5 * dt)

        def summed(carry, _):  # the step, and its result added to a running sum
            q, acc = carry
            q = body_fn(q)
            return (q, acc + q), None

        (q, acc), _ = jax.lax.scan(summed, (q, jnp.zeros_like(q)), None, length=n)
        return exact_fn(acc * jnp.asarray(1.0 / n, acc.dtype), 0.5 * dt)

    return run


def repeat(step: Callable[[Array], Array], n: int, remat: bool = True) -> Callable[[Array], Array]:
    """`step` applied `n` times in one `lax.scan` (rematerialised per step when `remat`)."""
    body_fn = jax.checkpoint(step) if remat else step

    def run(q):
        q, _ = jax.lax.scan(lambda c, _: (body_fn(c), None), q, None, length=n)
        return q

    return run
