"""Every time integrator of the physics on closed-form problems, checked at its order.

The matrix: each explicit method of `INTEGRATORS` on linear decay and on the harmonic oscillator
(third order for both SSP methods), and each of them inside the Strang splitting with the exact
Coriolis rotation on a problem whose explicit part does not commute with the rotation (second
order, the splitting's), both as the plain split substep and as the merged half steps that the
physics uses (`repeat_strang`). Float64 (the suite runs with x64 on), so round-off stays far below
the smallest error measured.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from neuralogcm_jax.physics.equations import coriolis_rotation
from neuralogcm_jax.physics.integrators import INTEGRATORS, repeat, repeat_strang, strang_split

METHODS = sorted(INTEGRATORS)
ORDER = {"ssprk3": 3, "ssprk43": 3}  # both SSP methods are third order
T_END = 2.0


def observed_order(errors: list[float], refinement: float = 2.0) -> list[float]:
    return [float(np.log(a / b) / np.log(refinement)) for a, b in zip(errors, errors[1:])]


def explicit_solve(method: str, matrix: np.ndarray, q0: np.ndarray, n: int) -> np.ndarray:
    """`n` steps of `method` over `T_END` for dq/dt = matrix q."""
    m = jnp.asarray(matrix)
    step = INTEGRATORS[method].make_step(lambda q: m @ q, T_END / n)
    return np.asarray(jax.jit(repeat(step, n, remat=False))(jnp.asarray(q0)))


PROBLEMS = {
    # name: (matrix, initial state)
    "linear decay": (np.array([[-1.3]]), np.array([1.0])),
    "harmonic oscillator": (np.array([[0.0, 2.0], [-2.0, 0.0]]), np.array([1.0, 0.5])),
    "damped oscillator": (np.array([[-0.4, 1.5], [-1.5, -0.1]]), np.array([0.3, -1.0])),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_each_explicit_method_converges_at_its_order(method, problem):
    assert set(ORDER) == set(INTEGRATORS), "a new integrator needs its order here"
    matrix, q0 = PROBLEMS[problem]
    exact = expm(matrix * T_END) @ q0
    ns = [8, 16, 32, 64]
    errors = [float(np.abs(explicit_solve(method, matrix, q0, n) - exact).max()) for n in ns]
    order = ORDER[method]
    got = observed_order(errors)
    assert all(g > order - 0.25 for g in got[1:]), (method, problem, errors, got)
    assert errors[-1] < 1e-4


def coriolis_split_problem():
    """dq/dt = A q + f J q for q = (u, v): J the Coriolis rotation (du/dt = f v, dv/dt = -f u),
    A a shear-and-decay that does not commute with it."""
    f = 1.7
    a = np.array([[-0.3, 0.8], [0.0, -0.5]])
    coriolis = f * np.array([[0.0, 1.0], [-1.0, 0.0]])
    return f, a, coriolis


def split_solve(method: str, n: int, merged: bool) -> np.ndarray:
    f, a, _ = coriolis_split_problem()
    dt = T_END / n
    m = jnp.asarray(a)
    fcol = jnp.full((1, 1), f)

    def exact_part(q, tau):  # q [2, 1, 1] = (u, v): the physics' exact rotation
        u, v = coriolis_rotation(q[0], q[1], fcol, tau)
        return jnp.stack([u, v])

    def explicit_fn(q):
        return jnp.einsum("ij,j...->i...", m, q)

    step = INTEGRATORS[method].make_step(explicit_fn, dt)
    if merged:
        run = repeat_strang(exact_part, step, dt, n, remat=False)
    else:
        run = repeat(strang_split(exact_part, step, dt), n, remat=False)
    q0 = jnp.asarray([1.0, -0.4]).reshape(2, 1, 1)
    return np.asarray(jax.jit(run)(q0)).reshape(2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("merged", [False, True], ids=["split substeps", "merged half steps"])
def test_strang_splitting_with_exact_coriolis_converges_at_second_order(method, merged):
    _, a, coriolis = coriolis_split_problem()
    exact = expm((a + coriolis) * T_END) @ np.array([1.0, -0.4])
    ns = [8, 16, 32, 64]
    errors = [float(np.abs(split_solve(method, n, merged) - exact).max()) for n in ns]
    got = observed_order(errors)
    assert all(1.75 < g < 2.6 for g in got[1:]), (method, merged, errors, got)


@pytest.mark.parametrize("method", METHODS)
def test_merged_half_steps_equal_the_split_substeps_on_the_closed_form_problem(method):
    np.testing.assert_allclose(split_solve(method, 16, True), split_solve(method, 16, False),
                               rtol=0, atol=1e-13)


def test_the_exact_coriolis_part_keeps_kinetic_energy_and_the_inertial_period():
    f = 1.0e-4
    u, v = jnp.asarray(0.3), jnp.asarray(-0.2)
    period = 2 * np.pi / f
    uu, vv = coriolis_rotation(u, v, jnp.asarray(f), period)
    np.testing.assert_allclose([float(uu), float(vv)], [0.3, -0.2], atol=1e-12)
    uq, vq = coriolis_rotation(u, v, jnp.asarray(f), period / 4)
    np.testing.assert_allclose(float(uq**2 + vq**2), 0.13, rtol=1e-12)
    # a quarter period turns (u, v) clockwise by 90 degrees: (u, v) -> (v, -u)
    np.testing.assert_allclose([float(uq), float(vq)], [-0.2, -0.3], atol=1e-12)
