"""Learnable physical coefficients: raw value -> softplus -> SI units (see `docs/design.md`).

A coefficient is stored as an unconstrained raw number ``r`` and used as
``value = scale * softplus(r)``, so it is always positive and its gradient is well scaled
(``d value / d r`` is of order ``value``). The raw value that gives the default is
``softplus^-1(default / scale)``; with ``scale = default`` that is ``log(e - 1) = 0.5413``.

This module is pure JAX/numpy. The Flax model holds the raw values as `nnx.Param` leaves and
calls `to_si` inside jit.

Default coefficients (paper mode) and why:

* ``nu_m`` (momentum, m^2/s) = 5e4. The Munk boundary layer ``(A_h / beta)^(1/3)`` must span
  at least one 1.5 deg cell (~167 km at the equator) for a western boundary current to be
  resolved without grid noise, which puts the floor at ``A_h >= 4e4``; 5e4 sits just above it. The
  explicit limit ``dt <= 1 / (2 nu (1/dx^2 + 1/dy^2))`` with the polar filter's effective
  ``dx >= 83 km`` (60 deg) gives ``dt <= 5.5e4 s``, so it does not shorten the substep.
* ``nu_t`` (tracers, m^2/s) = 1e3, the usual eddy diffusivity of a non-eddying 1-2 deg model;
  there is no boundary-layer floor for tracers and it is far below the stability limit.

The integrator clips each coefficient at `max_value` (a static bound from which the substep count
is derived), so a learned coefficient can never make the daily step unstable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.errors import ConfigError

Array = Any


def softplus_np(x):
    return np.logaddexp(0.0, x)


def inverse_softplus(y: float | np.ndarray) -> np.ndarray:
    """``softplus^-1(y) = log(exp(y) - 1)``, stable for large y."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 20.0, y, np.log(np.expm1(np.minimum(y, 20.0))))


@dataclasses.dataclass(frozen=True)
class CoefficientSpec:
    """One learnable coefficient: its default, units and stability bound."""

    name: str
    default: float  # SI units
    units: str
    description: str
    max_value: float  # the integrator clips at this (SI); the substep count is derived from it
    scale: float | None = None  # value = scale * softplus(raw); None -> default
    # False for a coefficient that acts on one level only (the surface's heat restoring, the
    # bottom's drag): it stays one value when the model asks for per-level coefficients.
    per_level: bool = True

    @property
    def raw_scale(self) -> float:
        return self.default if self.scale is None else self.scale

    def raw_init(self, value: float | Sequence[float] | None = None,
                 n_levels: int | None = None) -> np.ndarray:
        """Raw value giving `value` (default if None); one per level if `n_levels`, where
        `value` may also be a sequence of `n_levels` values (top first)."""
        v = self.default if value is None else value
        if isinstance(v, (list, tuple, np.ndarray)):
            if n_levels is None or len(v) != n_levels:
                want = (f"one value or {n_levels} (one per level)" if n_levels is not None
                        else "one value (it is not per level here)")
                raise ConfigError(
                    f"model.physics_coefficients.{self.name} has {len(v)} values; it takes "
                    f"{want}")
            vals = [self._checked(x, value) for x in v]
            return inverse_softplus(np.asarray(vals) / self.raw_scale).astype(np.float32)
        r = inverse_softplus(self._checked(v, value) / self.raw_scale).astype(np.float32)
        return r if n_levels is None else np.full((n_levels,), r, dtype=np.float32)

    def _checked(self, v, given) -> float:
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = math.nan
        if not (0 < v <= self.max_value):  # NaN fails too
            # Above its bound the integrator would clip it: the run would not start from `value`.
            raise ConfigError(
                f"model.physics_coefficients.{self.name} must be in (0, {self.max_value:g}] "
                f"{self.units} (its stability bound), got {given!r}")
        return v

    def to_si(self, raw: Array) -> Array:
        """Raw -> SI value (unclipped)."""
        return self.raw_scale * jax.nn.softplus(raw)


PAPER_COEFFICIENTS: dict[str, CoefficientSpec] = {
    "nu_m": CoefficientSpec(
        "nu_m", 5e4, "m^2/s", "horizontal Laplacian viscosity of momentum", max_value=2.5e5
    ),
    "nu_t": CoefficientSpec(
        "nu_t", 1e3, "m^2/s", "horizontal Laplacian diffusivity of T and S", max_value=2.5e5
    ),
}

# Paper mode with ``PhysicsConfig.imbalance = "held"``: the fraction of the start state's
# Coriolis-pressure residual that the day leaves unbalanced (`PaperPhysics.day_step`).
IMBALANCE_RELEASE = CoefficientSpec(
    "imbalance_release", 0.1, "1",
    "fraction of the start state's Coriolis-pressure residual left to turn over the day",
    max_value=1.0)


def paper_coefficients(config: Any) -> dict[str, CoefficientSpec]:
    """Paper mode's learnable coefficients for a `PhysicsConfig` (typed `Any` here: this module
    sits below `stepping`, which defines it)."""
    specs = dict(PAPER_COEFFICIENTS)
    if config.imbalance == "held":
        specs["imbalance_release"] = IMBALANCE_RELEASE
    return specs


def to_si(raw: dict[str, Array], specs: dict[str, CoefficientSpec], clip: bool = True) -> dict:
    """Raw values -> SI values (clipped at each spec's `max_value` when `clip`)."""
    out = {}
    for name, r in raw.items():
        spec = specs[name]
        v = spec.to_si(r)
        out[name] = jnp.minimum(v, spec.max_value) if clip else v
    return out


def check_values(specs: dict[str, CoefficientSpec], values: dict[str, Any]) -> None:
    """Unknown names and values outside a spec's (0, bound]: one ConfigError naming the key
    (a per-level list's length is checked where the number of levels is known)."""
    unknown = set(values) - set(specs)
    if unknown:
        raise ConfigError(f"model.physics_coefficients: unknown physics coefficient(s) "
                          f"{sorted(unknown)}; known: {sorted(specs)}")
    for k, v in values.items():
        for x in (v if isinstance(v, (list, tuple, np.ndarray)) else [v]):
            specs[k]._checked(x, v)


def default_raw(
    specs: dict[str, CoefficientSpec],
    values: dict[str, float] | None = None,
    per_level: bool = False,
    n_levels: int | None = None,
) -> dict[str, np.ndarray]:
    """Raw initial values for `specs` (overridden by `values`, SI)."""
    values = values or {}
    unknown = set(values) - set(specs)
    if unknown:
        raise ConfigError(f"model.physics_coefficients: unknown physics coefficient(s) "
                          f"{sorted(unknown)}; known: {sorted(specs)}")
    return {
        k: s.raw_init(values.get(k), n_levels if per_level and s.per_level else None)
        for k, s in specs.items()
    }
