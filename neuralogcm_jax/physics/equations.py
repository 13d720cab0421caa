"""Paper-mode tendencies: horizontal advection, Coriolis and Laplacian diffusion (NeuralOGCM).

The equations, per level, in SI units (``u`` east, ``v`` north, m/s; ``T`` degC; ``S`` psu):

    du/dt = -div(u U) + u v tan(phi)/R + f v + div(nu_m grad u)
    dv/dt = -div(v U) - u^2 tan(phi)/R - f u + div(nu_m grad v)
    dT/dt = -div(T U)                        + div(nu_t grad T)
    dS/dt = -div(S U)                        + div(nu_t grad S)

with ``U = (u, v)`` the cell-centred velocity, ``div`` the finite-volume divergence of
`neuralogcm_jax.physics.operators` (flux form, closed coasts) and ``f = 2 Omega sin(phi)``
(`Grid.coriolis`). The ``tan(phi)/R`` terms are the metric terms of momentum advection on the
sphere; together they rotate ``(u, v)`` at the rate ``u tan(phi)/R``. Momentum diffusion acts on
each component as on a scalar (no flux through coasts: free slip). Land cells have zero tendency.
SSH and the forcing do not enter paper mode.

Following the Dinosaur convention the equation is an object with *explicit terms* (everything but
Coriolis, stepped by an SSP Runge-Kutta method) and an *exact part*: the Coriolis terms alone, ``du/dt = f v,
dv/dt = -f u``, are solved exactly over a step ``dt`` as a rotation of ``(u, v)`` by the angle
``-f dt``. Forward Euler on Coriolis amplifies by ``sqrt(1 + (f dt)^2)`` per step and is never
stable; the rotation keeps kinetic energy and the inertial period exact.

The prognostic fields travel as one stacked array ``q [..., 4, L, H, W]`` in the order of
`PROGNOSTIC` so that the four fields share one pass of each operator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.layout import OceanState
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, CoefficientSpec

Array = Any

PROGNOSTIC = ("u", "v", "T", "S")

__all__ = [
    "PROGNOSTIC",
    "PaperEquation",
    "coriolis_rotation",
    "level_coefficient",
    "paper_tendency",
    "stack_prognostic",
    "unstack_prognostic",
]


def stack_prognostic(state: OceanState) -> Array:
    """``OceanState -> q [..., 4, L, H, W]`` in the order ``(u, v, T, S)``."""
    return jnp.stack([state.u, state.v, state.T, state.S], axis=-4)


def unstack_prognostic(q: Array, ssh: Array) -> OceanState:
    """``q [..., 4, L, H, W]`` and ``ssh [..., H, W]`` -> `OceanState`."""
    return OceanState(u=q[..., 0, :, :, :], v=q[..., 1, :, :, :], T=q[..., 2, :, :, :],
                      S=q[..., 3, :, :, :], ssh=ssh)


def level_coefficient(
    value: Array, spec: CoefficientSpec | None, dtype: Any, n_levels: int
) -> Array:
    """A coefficient (SI) as ``[] or [L, 1, 1]`` of `dtype`, clipped at ``spec.max_value``.

    `value` is a scalar (global) or ``[L]`` (one per level). The clip is what keeps any learned
    value inside the stability bound the substep was derived from.
    """
    x = jnp.asarray(value).astype(dtype)
    if spec is not None:
        x = jnp.minimum(x, jnp.asarray(spec.max_value, dtype))
    if x.ndim == 0:
        return x
    if x.shape != (n_levels,):
        from neuralogcm_jax.errors import ConfigError

        name = spec.name if spec is not None else "coefficient"
        raise ConfigError(
            f"{name} must be a scalar or one value per level [{n_levels}], got shape {x.shape}"
        )
    return x[:, None, None]


def coriolis_rotation(u: Array, v: Array, f: Array, dt: float) -> tuple[Array, Array]:
    """Exact solution after `dt` (s) of ``du/dt = f v, dv/dt = -f u``: rotate by ``-f dt``.

    `u`, `v` ``[..., H, W]`` (m/s), `f` ``[H, 1]`` (1/s). Kinetic energy is unchanged.
    """
    angle = f * dt
    c, s = jnp.cos(angle), jnp.sin(angle)
    return c * u + s * v, c * v - s * u


def _channel(channels: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``[4, 1, 1, 1]`` one-hot (or several-hot) vector over the `PROGNOSTIC` channels."""
    e = np.zeros((len(PROGNOSTIC), 1, 1, 1))
    e[list(channels)] = 1.0
    return e.astype(dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PaperEquation:
    """The paper-mode equation with coefficients `nu_m`, `nu_t` (m^2/s, ``[]`` or ``[L, 1, 1]``).

    `explicit_terms(q)` is the tendency of everything except Coriolis; `exact_step(q, dt)`
    advances Coriolis exactly. Both take and return ``q [..., 4, L, H, W]``.
    """

    ops: Operators
    nu_m: Array
    nu_t: Array
    advective_tracers: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def from_coefficients(
        cls,
        ops: Operators,
        coeffs_si: dict[str, Array],
        specs: dict[str, CoefficientSpec] = PAPER_COEFFICIENTS,
        advective_tracers: bool = False,
    ) -> PaperEquation:
        """Clip and shape ``{"nu_m", "nu_t"}`` (SI; scalar or ``[L]``) for `ops`'s grid."""
        n_levels = ops.wet.shape[0]
        return cls(
            ops=ops,
            nu_m=level_coefficient(coeffs_si["nu_m"], specs.get("nu_m"), ops.dtype, n_levels),
            nu_t=level_coefficient(coeffs_si["nu_t"], specs.get("nu_t"), ops.dtype, n_levels),
            advective_tracers=advective_tracers,
        )

    def explicit_terms(self, q: Array) -> Array:
        """Advection, metric terms and diffusion: ``dq/dt [..., 4, L, H, W]`` (SI per second)."""
        ops = self.ops
        dtype = q.dtype
        u, v = q[..., 0:1, :, :, :], q[..., 1:2, :, :, :]  # [..., 1, L, H, W]
        # Per-channel factors are built by multiplying with one-hot channel vectors instead of
        # stacking: a stack (concatenation) fused into the big elementwise loops becomes a
        # per-element branch there, several times slower.
        e_u, e_v, e_mom, e_tr = (_channel(k, dtype) for k in ((0,), (1,), (0, 1), (2, 3)))
        nu_m = jnp.reshape(self.nu_m, (-1, 1, 1))  # [1 or L, 1, 1]
        nu_t = jnp.reshape(self.nu_t, (-1, 1, 1))
        nu = nu_m * e_mom + nu_t * e_tr  # [4, 1 or L, 1, 1]
        tend = ops.self_advection_diffusion(q, nu)
        # Metric terms of momentum advection on the sphere (a rotation at rate u tan(phi)/R):
        # du/dt = rate v, dv/dt = -rate u.
        rate = u * ops.tan_lat_over_r
        metric = rate * (v * e_u - u * e_v)
        if self.advective_tracers:
            # -div(qU) + q div(U): advecting a uniform field (q = 1) gives -div(U).
            neg_div = ops.advection(jnp.ones_like(u[..., 0, :, :, :]), u[..., 0, :, :, :],
                                    v[..., 0, :, :, :])
            metric = metric - q * (neg_div[..., None, :, :, :] * e_tr)
        return (tend + metric) * ops.wet

    def exact_step(self, q: Array, dt: float) -> Array:
        """Coriolis over `dt` (s), exactly; T and S unchanged.

        The rotation of `coriolis_rotation`, written per channel with one-hot factors (see
        `explicit_terms`): ``q' = q * [c, c, 1, 1] + v * [s, 0, 0, 0] - u * [0, s, 0, 0]``.
        """
        dtype = q.dtype
        angle = self.ops.coriolis * dt
        c, s = jnp.cos(angle), jnp.sin(angle)  # [H, 1]
        e_u, e_v, e_mom, e_tr = (_channel(k, dtype) for k in ((0,), (1,), (0, 1), (2, 3)))
        u, v = q[..., 0:1, :, :, :], q[..., 1:2, :, :, :]
        return q * (c * e_mom + e_tr) + v * (s * e_u) - u * (s * e_v)

    def tendency(self, q: Array) -> Array:
        """Full instantaneous tendency, Coriolis included (for diagnostics and tests)."""
        f = self.ops.coriolis
        u, v = q[..., 0, :, :, :], q[..., 1, :, :, :]
        cor = jnp.stack([f * v, -f * u, jnp.zeros_like(u), jnp.zeros_like(u)], axis=-4)
        return self.explicit_terms(q) + cor * self.ops.wet


def paper_tendency(
    coeffs_si: dict[str, Array], state: OceanState, ops: Operators
) -> OceanState:
    """Instantaneous paper-mode tendency of `state` (fields ``[L, H, W]``), per second.

    Land values of `state` must be finite (they are ignored); the SSH tendency is zero.
    """
    eq = PaperEquation.from_coefficients(ops, coeffs_si)
    dq = eq.tendency(stack_prognostic(state))
    return unstack_prognostic(dq, jnp.zeros_like(state.ssh))
