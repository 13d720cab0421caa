"""Equations of state for seawater: density (kg/m^3) from temperature, salinity and depth.

Two equations of state, chosen by name with `make_eos`:

* ``"linear"``: ``rho = rho0 (1 - alpha (T - T0) + beta (S - S0))``, the textbook Boussinesq
  closure (alpha = 2e-4 1/K, beta = 7.6e-4 1/psu, T0 = 10 degC, S0 = 35 psu); no pressure effect.
* ``"teos10"``: in-situ density from the 75-term polynomial for specific volume of Roquet,
  Madec, McDougall and Barker (2015, Ocean Modelling 90, 29-43), the computationally efficient
  TEOS-10 equation of state (the one `gsw.rho` evaluates), written here from the published
  coefficients. Its variables are Absolute Salinity SA (g/kg), Conservative Temperature CT (degC)
  and sea pressure p (dbar).

The model carries potential temperature (degC) and practical salinity (psu), as the GLORYS data
do, and depth levels rather than pressure. `model_density` passes from them to the TEOS-10
variables with three documented approximations:

* ``SA = SP * 35.16504 / 35`` (reference-composition salinity; the geographic Absolute Salinity
  Anomaly, at most ~0.02 g/kg in the open ocean, is neglected);
* ``CT = theta`` (the difference CT - theta is below ~0.1 K over the usual oceanic range and
  nearly uniform along a level, so it barely changes horizontal density gradients);
* ``p = rho0 g z / 1e4`` dbar (the Boussinesq reference pressure at depth z; the true pressure
  differs by < 0.5 %).

All functions are pure `jax.numpy` and keep the dtype of their inputs.

Float32. Seawater's specific volume varies by about 2 % over the ocean and density differences
of 0.01 kg/m^3 drive currents, so ``1 / v - rho0`` from a float32 ``v`` (1e-7 relative) carries an
error of 1e-4 kg/m^3 that differs from point to point. The model therefore evaluates TEOS-10 as
the polynomial re-expanded about a reference water mass (`REFERENCE_T_DEGC`,
`REFERENCE_SP_PSU`): a depth-only part ``v0(p)``, the same at every point of a level, plus the
deviation ``dv(SA, CT, p)`` from the powers of the small deviations of x and y, whose rounding
error is relative to the deviation itself. The re-expansion is exact algebra (the same
polynomial; it agrees with the direct sum to 1e-15 in float64), done once in float64 at import.
"""

from __future__ import annotations

import dataclasses
from math import comb
from typing import Any

import numpy as np

import jax.numpy as jnp

from neuralogcm_jax.constants import GRAVITY_M_S2, RHO0_KG_M3
from neuralogcm_jax.errors import ConfigError

Array = Any

# Reference salinity of standard seawater (g/kg) and the scaling of the polynomial's variables.
SSO_G_KG = 35.16504
_SA_OFFSET_G_KG = 24.0  # the polynomial is in sqrt((SA + 24) / 40 * 35/35.16504)
_S_SCALE = 1.0 / (40.0 * (SSO_G_KG / 35.0))  # 1/(g/kg)
_CT_SCALE = 1.0 / 40.0  # 1/degC
_P_SCALE = 1.0e-4  # 1/dbar

# Coefficients of the 75-term specific volume polynomial (m^3/kg), Roquet et al. (2015),
# Table/Appendix "v_ijk", arranged as (k: power of the pressure variable z, j: power of the
# temperature variable y, (coefficients of x^0, x^1, ...) for the salinity variable x).
_SPECVOL_COEFFS: tuple[tuple[int, int, tuple[float, ...]], ...] = (
    # z^0
    (0, 0, (1.0769995862e-3, -3.1038981976e-4, 6.6928067038e-4, -8.5047933937e-4,
            5.8086069943e-4, -2.1092370507e-4, 3.1932457305e-5)),
    (0, 1, (-1.5649734675e-5, 3.5009599764e-5, -4.3592678561e-5, 3.4532461828e-5,
            -1.1959409788e-5, 1.3864594581e-6)),
    (0, 2, (2.7762106484e-5, -3.7435842344e-5, 3.5907822760e-5, -1.8698584187e-5,
            3.8595339244e-6)),
    (0, 3, (-1.6521159259e-5, 2.4141479483e-5, -1.4353633048e-5, 2.2863324556e-6)),
    (0, 4, (6.9111322702e-6, -8.7595873154e-6, 4.3703680598e-6)),
    (0, 5, (-8.0539615540e-7, -3.3052758900e-7)),
    (0, 6, (2.0543094268e-7,)),
    # z^1
    (1, 0, (-6.0799143809e-5, 2.4262468747e-5, -3.4792460974e-5, 3.7470777305e-5,
            -1.7322218612e-5, 3.0927427253e-6)),
    (1, 1, (1.8505765429e-5, -9.5677088156e-6, 1.1100834765e-5, -9.8447117844e-6,
            2.5909225260e-6)),
    (1, 2, (-1.1716606853e-5, -2.3678308361e-7, 2.9283346295e-6, -4.8826139200e-7)),
    (1, 3, (7.9279656173e-6, -3.4558773655e-6, 3.1655306078e-7)),
    (1, 4, (-3.4102187482e-6, 1.2956717783e-6)),
    (1, 5, (5.0736766814e-7,)),
    # z^2
    (2, 0, (9.9856169219e-6, -5.8484432984e-7, -4.8122251597e-6, 4.9263106998e-6,
            -1.7811974727e-6)),
    (2, 1, (-1.1736386731e-6, -5.5699154557e-6, 5.4620748834e-6, -1.3544185627e-6)),
    (2, 2, (2.1305028740e-6, 3.9137387080e-7, -6.5731104067e-7)),
    (2, 3, (-4.6132540037e-7, 7.7618888092e-9)),
    (2, 4, (-6.3352916514e-8,)),
    # z^3
    (3, 0, (-1.1309361437e-6, 3.6310188515e-7, 1.6746303780e-8)),
    (3, 1, (-3.6527006553e-7, -2.7295696237e-7)),
    (3, 2, (2.8695905159e-7,)),
    # z^4
    (4, 0, (1.0531153080e-7, -1.1147125423e-7)),
    (4, 1, (3.1454099902e-7,)),
    # z^5, z^6
    (5, 0, (-1.2647261286e-8,)),
    (6, 0, (1.9613503930e-9,)),
)


def _horner(coeffs: tuple[float, ...], x: Array) -> Array:
    acc = jnp.asarray(coeffs[-1], dtype=x.dtype)
    for c in coeffs[-2::-1]:
        acc = acc * x + jnp.asarray(c, dtype=x.dtype)
    return acc


def teos10_specific_volume(SA: Array, CT: Array, p_dbar: Array) -> Array:
    """Specific volume (m^3/kg) of seawater, the 75-term TEOS-10 polynomial.

    Args:
      SA: Absolute Salinity (g/kg); CT: Conservative Temperature (degC); p_dbar: sea pressure
        (dbar, 0 at the surface). Any broadcastable shapes; the result has the common dtype.
    """
    SA, CT, p_dbar = jnp.broadcast_arrays(jnp.asarray(SA), jnp.asarray(CT), jnp.asarray(p_dbar))
    dtype = jnp.result_type(SA, CT, p_dbar, jnp.float32)
    # Negative salinity has no meaning; clamp so the square root stays real (as TEOS-10 does).
    x = jnp.sqrt(_S_SCALE * (jnp.maximum(SA.astype(dtype), 0.0) + _SA_OFFSET_G_KG))
    y = CT.astype(dtype) * _CT_SCALE
    z = p_dbar.astype(dtype) * _P_SCALE
    # v = sum_k z^k sum_j y^j P_kj(x), evaluated by Horner in each variable.
    by_k: dict[int, list[tuple[int, tuple[float, ...]]]] = {}
    for k, j, cs in _SPECVOL_COEFFS:
        by_k.setdefault(k, []).append((j, cs))
    v = jnp.zeros_like(x)
    for k in sorted(by_k, reverse=True):
        rows = dict(by_k[k])
        inner = jnp.zeros_like(x)
        for j in range(max(rows), -1, -1):
            inner = inner * y + (_horner(rows[j], x) if j in rows else 0.0)
        v = v * z + inner
    return v


# The reference water mass about which the polynomial is re-expanded (see the module docstring).
REFERENCE_T_DEGC = 10.0
REFERENCE_SP_PSU = 35.0
_SA_REF = REFERENCE_SP_PSU * SSO_G_KG / 35.0
_X_REF = float(np.sqrt(_S_SCALE * (_SA_REF + _SA_OFFSET_G_KG)))
_Y_REF = REFERENCE_T_DEGC * _CT_SCALE


def _shifted_coefficients() -> dict[int, dict[int, tuple[float, ...]]]:
    """Coefficients ``d[k][n][m]`` of ``v = sum z^k b^n a^m`` with ``x = x0 + a, y = y0 + b``
    (binomial re-expansion of `_SPECVOL_COEFFS` in float64)."""
    c = np.zeros((7, 7, 7))  # [k, j, i]: z^k y^j x^i
    for k, j, cs in _SPECVOL_COEFFS:
        c[k, j, :len(cs)] = cs
    d = np.zeros_like(c)
    for k in range(7):
        for j in range(7):
            for i in range(7):
                if c[k, j, i] == 0.0:
                    continue
                for n in range(j + 1):
                    for m in range(i + 1):
                        d[k, n, m] += (c[k, j, i] * comb(j, n) * _Y_REF ** (j - n)
                                       * comb(i, m) * _X_REF ** (i - m))
    out: dict[int, dict[int, tuple[float, ...]]] = {}
    for k in range(7):
        rows = {n: tuple(float(x) for x in np.trim_zeros(d[k, n], "b")) for n in range(7)}
        out[k] = {n: cs for n, cs in rows.items() if cs}
    return out


_SHIFTED = _shifted_coefficients()


def _teos10_split(SA: Array, CT: Array, p_dbar: Array) -> tuple[Array, Array]:
    """``(v0, dv)`` with ``v = v0 + dv`` (m^3/kg): ``v0`` the reference water mass's specific
    volume at `p_dbar` (shape of `p_dbar`), ``dv`` the deviation (broadcast shape), each accurate
    to the rounding of its own size."""
    SA, CT, p_dbar = (jnp.asarray(a) for a in (SA, CT, p_dbar))
    dtype = jnp.result_type(SA, CT, p_dbar, jnp.float32)
    SA = jnp.maximum(SA.astype(dtype), 0.0)
    x = jnp.sqrt(_S_SCALE * (SA + _SA_OFFSET_G_KG))
    a = _S_SCALE * (SA - _SA_REF) / (x + _X_REF)  # x - x0 without cancellation
    b = (CT.astype(dtype) - REFERENCE_T_DEGC) * _CT_SCALE
    z = p_dbar.astype(dtype) * _P_SCALE
    v0 = jnp.zeros_like(z)
    dv = jnp.zeros(jnp.broadcast_shapes(a.shape, b.shape, z.shape), dtype)
    for k in sorted(_SHIFTED, reverse=True):
        rows = _SHIFTED[k]
        v0 = v0 * z + jnp.asarray(rows[0][0], dtype)
        inner = jnp.zeros_like(dv)
        for n in range(max(rows), -1, -1):
            cs = rows.get(n, ())
            if n == 0:  # the a-polynomial without its constant term (that is v0's)
                term = _horner((0.0,) + cs[1:], a) if len(cs) > 1 else 0.0
            else:
                term = _horner(cs, a) if cs else 0.0
            inner = inner * b + term
        dv = dv * z + inner
    return v0, dv


def teos10_density_anomaly(SA: Array, CT: Array, p_dbar: Array, rho0: float) -> Array:
    """``rho - rho0`` (kg/m^3) of TEOS-10, evaluated about the reference water mass: the
    depth-only part ``1/v0 - rho0`` plus ``-dv / (v0 (v0 + dv))``, so that in float32 the
    differences between points of a level are accurate to ~1e-6 kg/m^3 (1e-4 from ``1/v``)."""
    v0, dv = _teos10_split(SA, CT, p_dbar)
    return (1.0 / v0 - rho0) - dv / (v0 * (v0 + dv))


def teos10_density(SA: Array, CT: Array, p_dbar: Array) -> Array:
    """In-situ density (kg/m^3) = 1 / `teos10_specific_volume` (same arguments)."""
    return 1.0 / teos10_specific_volume(SA, CT, p_dbar)


def practical_to_absolute_salinity(SP: Array) -> Array:
    """Absolute Salinity (g/kg) from Practical Salinity (psu), reference composition.

    Neglects the Absolute Salinity Anomaly (<~0.02 g/kg in the open ocean)."""
    return SP * (SSO_G_KG / 35.0)


def depth_to_pressure_dbar(depth_m: Array, rho0: float = RHO0_KG_M3, g: float = GRAVITY_M_S2):
    """Boussinesq reference sea pressure (dbar) at depth `depth_m` (m, positive down)."""
    return depth_m * (rho0 * g * 1e-4)


@dataclasses.dataclass(frozen=True)
class LinearEOS:
    """``rho = rho0 (1 - alpha (T - T0) + beta (S - S0))`` (kg/m^3); no pressure dependence.

    Attributes: rho0 (kg/m^3), alpha (1/K, thermal expansion), beta (1/psu, haline
    contraction), T0 (degC), S0 (psu).
    """

    rho0: float = RHO0_KG_M3
    alpha: float = 2.0e-4
    beta: float = 7.6e-4
    T0: float = 10.0
    S0: float = 35.0

    def density_anomaly(self, T: Array, S: Array, depth_m: Array) -> Array:
        """``rho - rho0`` (kg/m^3) for potential temperature T (degC) and salinity S (psu)."""
        del depth_m
        return self.rho0 * (-self.alpha * (T - self.T0) + self.beta * (S - self.S0))


@dataclasses.dataclass(frozen=True)
class TEOS10EOS:
    """In-situ density from the 75-term TEOS-10 polynomial with the model's approximations
    (``SA = SP 35.16504/35``, ``CT = theta``, ``p = rho0 g z``); see the module docstring."""

    rho0: float = RHO0_KG_M3

    def density_anomaly(self, T: Array, S: Array, depth_m: Array) -> Array:
        """``rho - rho0`` (kg/m^3); `depth_m` broadcasts against T (e.g. ``[L, 1, 1]``)."""
        dtype = jnp.result_type(T, S)
        p = depth_to_pressure_dbar(jnp.asarray(depth_m, dtype), self.rho0)
        return teos10_density_anomaly(practical_to_absolute_salinity(S), T, p,
                                      self.rho0).astype(dtype)


EOS_NAMES = ("linear", "teos10")


def make_eos(name: str, rho0: float = RHO0_KG_M3) -> LinearEOS | TEOS10EOS:
    """The equation of state called `name` (one of `EOS_NAMES`); ConfigError otherwise."""
    if name == "linear":
        return LinearEOS(rho0=rho0)
    if name == "teos10":
        return TEOS10EOS(rho0=rho0)
    raise ConfigError(f"unknown equation of state {name!r}; known: {list(EOS_NAMES)}")


def model_density(name: str, T: Array, S: Array, depth_m: Array) -> Array:
    """In-situ density (kg/m^3) of equation of state `name` for the model's T (degC, potential),
    S (psu) at depths `depth_m` (m, broadcast against T)."""
    eos = make_eos(name)
    return eos.density_anomaly(T, S, depth_m) + eos.rho0

