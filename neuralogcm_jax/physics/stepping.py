"""Time stepping of the physics: configuration, substep derivation, one-day step (the SSP
Runge-Kutta steppers and the Strang splitting: `integrators`).

One model step is one day (see `docs/design.md`). Inside it the physics is sub-stepped:

    substep(q) = C(dt/2) . RK(dt) . C(dt/2) (q)        (Strang splitting)

where ``C`` is the exact Coriolis rotation (in balanced paper mode, the default, the exact
solution of Coriolis plus the day's fixed pressure-gradient acceleration: a rotation about the
geostrophic velocity, `equations.coriolis_pressure_step`) and ``RK`` an explicit
strong-stability-preserving Runge-Kutta method on the explicit terms (advection, metric terms,
diffusion), chosen by
`PhysicsConfig.integrator` (`INTEGRATORS`): SSP-RK(4,3) by default (four stages, third order,
SSP coefficient 2: every stage is a forward Euler step of ``dt/2``), or the three-stage Shu-Osher
SSP-RK3 (SSP coefficient 1). The splitting is second order; both methods are third order and keep
the total-variation bound of a forward Euler step of ``dt / c`` (``c`` the SSP coefficient).

How many substeps (`plan_substeps`). Write the explicit operator's fastest rates as

* advection: ``r_adv = u_max * max_rows(1/dx_eff + r_y)``, the outflow rate of an upwind cell when
  both velocity components are ``u_max``; ``dx_eff`` is the zonal width, raised to
  ``R cos(phi_c) dlon`` poleward of the polar-filter cutoff ``phi_c`` (the filter bounds the
  zonal modes there by that width, see `operators`); ``r_y = max(face lengths)/area`` is the
  meridional outflow length per area (``1/dy`` except in the polar-cap cells);
* diffusion: ``r_diff = 2 nu_max * max_rows(1/dx_eff^2 + r_y/dy)``, so that ``dt <= 1/r_diff`` is
  the textbook explicit limit ``dt <= 1/(2 nu (1/dx^2 + 1/dy^2))``; ``nu_max`` is the largest
  `CoefficientSpec.max_value` of the diffusion coefficients (those in m^2/s) (the integrator clips the learned
  coefficients there, so training can never leave this bound).

A forward Euler step is stable (and, for the upwind part, monotone) when
``dt (r_adv / cfl + r_diff) <= 1``: the eigenvalues of the sum lie in the disk
``|1 + lambda dt| <= 1``. An SSP method with coefficient ``c`` inherits that bound for steps up to
``c`` times as long, and with it the monotonicity of the limited advection, for which `cfl` = 0.5
is the limit of a limiter with ``phi(r) <= 2`` (Koren's, see `operators.limited_increment`).
On the imaginary axis, the margin that covers the metric terms (a rotation at rate
``u tan(phi)/R``), SSP-RK3 reaches ``+-1.73 i`` and SSP-RK(4,3) ``+-2.16 i``.

Diffusion gets more. Its operator is symmetric in the area-weighted inner product, so its
eigenvalues are real, in ``[-2 r_diff, 0]`` (Gershgorin; the polar filter keeps the capped rows
inside, and `tests/test_operators.py` finds the fastest mode of the filtered 1.5 deg operator at
0.83 of the bound). A method is stable on the real interval ``[-x, 0]`` up to its real-axis
extent x (`real_axis_stability_extent`): forward Euler 2, SSP-RK3 2.5127, SSP-RK(4,3) 5.1494.
The diffusive limit is ``dt <= g / r_diff`` with ``g = x / 2`` (`Integrator.diffusive_gain`:
1.256 and 2.575). The two rates still add:

    dt = min(max_substep_s, 1 / (r_adv / (c cfl) + r_diff / g)),
    n = max(min_substeps, ceil(day / dt)),

which is each limit alone when the other rate is zero, and for a grid-scale mode on which both
act along the real axis (``lambda = -2 (r_a + r_d)`` with ``dt r_a <= c cfl (1 - dt r_d / g)``)
keeps ``lambda dt >= -c + dt r_d (c/g - 2) >= -2 g``, inside the region. The price of
``g > c``: at the largest diffusivities the diffusive part alone is no longer a positive
(maximum-principle) update; it stays stable and dissipative. The advective limit keeps the
monotone SSP bound. `plan_substeps` takes ``c`` as `ssp_coefficient` and ``g`` as
`diffusive_gain` (defaults 1, forward Euler); `make_paper_physics` passes the configured
method's.

On the 1.5 deg grid with the 60 deg cutoff, ``u_max = 3`` m/s and ``nu_max = 2.5e5`` m^2/s,
SSP-RK(4,3) takes 10 substeps of 8640 s a day (advective limit alone 13900 s, diffusive alone
23877 s, both 8785 s; the polar-cap row sets both): 40 tendency evaluations. SSP-RK3 takes 20 of
4320 s (6950 s, 11651 s): 60 evaluations, and 1.45x the time (`benchmarks/BENCHMARKS.md`).
Without the polar filter it would be 7460 substeps of 11.6 s, set by diffusion across the 4 km
polar cells. The longer substep costs accuracy through the Strang splitting (second order): on the
embedded world at 1.5 deg after 5 days, the velocity differs from a 40-substep reference by
5.4e-3 (relative l2) with SSP-RK(4,3) at 8640 s, against 1.1e-3 with SSP-RK3 at 4320 s and
2.8e-4 at 2160 s; temperature by 9e-4, 2e-4 and 5e-5.

The half Coriolis steps of consecutive substeps are merged (`repeat_strang`): a day is
``C(dt/2) . (RK(dt) . C(dt)) ^ n . C(-dt/2)``, equal to ``substep ^ n`` up to round-off (``C`` is
the exact flow of a linear equation with constant forcing, so ``C(a) C(b) = C(a + b)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.errors import ConfigError, StateError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics.eos import EOS_NAMES, make_eos
from neuralogcm_jax.physics.equations import (
    PaperEquation,
    pressure_gradient_acceleration,
    stack_prognostic,
    unstack_prognostic,
)
from neuralogcm_jax.physics.integrators import INTEGRATORS, Integrator, repeat_strang
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, CoefficientSpec

Array = Any

__all__ = [
    "Physics",
    "PhysicsConfig",
    "SubstepPlan",
    "check_state",
    "choose_integrator",
    "make_paper_physics",
    "plan_substeps",
]


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
    """Settings of the physics core (one place; every field with its unit and default).

    Attributes:
      mode: ``"paper"`` (advection + Coriolis + Laplacian diffusion, as in NeuralOGCM) or
        ``"primitive"`` (the primitive-equation core; settings in `primitive`). Default "paper".
      polar_filter_lat_deg: cutoff latitude (deg) poleward of which zonal face fluxes are Fourier
        filtered; None disables the filter (the substep then follows the polar cells). Default 60.
      u_max_m_s: speed bound (m/s) used in the advective CFL condition. Default 3.0.
      cfl: safety factor (dimensionless, <= 1) of the advective CFL condition; 0.5 keeps the
        limited scheme monotone. Default 0.5.
      max_substep_s: upper bound (s) on the substep, for accuracy rather than stability.
        Default 10800 (3 h; the stability limit at 1.5 deg with the default integrator is 8785 s).
      polar_filter_transfer: ``"split"``: the polar filter damps zonal wavenumber k of the
        advective zonal flux by ``a_k`` and of the diffusive one by ``a_k^2`` (the least each
        needs for the cutoff's substep; two forward transforms per tendency); ``"joint"``:
        both by ``a_k^2``, so the summed flux is transformed once and the cap rows need no
        separate flux evaluation (``a_k^2 <= a_k``, so the advective bound still holds; waves
        already resolved at the cutoff have ``a_k = 1`` either way). Joint is about 25 % faster
        per tendency on a CPU; on the embedded world at 1.5 deg after 5 days it moves the
        polar-cap velocity by 8e-4 of its norm relative to split, a tenth of the substep's time
        error (`operators` docstring). Default "joint".
      integrator: the explicit method of the substep, a key of `INTEGRATORS`: ``"ssprk43"``
        (SSP-RK(4,3): four stages, SSP coefficient 2, real-axis extent 5.149) or ``"ssprk3"``
        (Shu-Osher SSP-RK3: three stages, SSP coefficient 1, extent 2.513). Both are third order;
        per tendency evaluation SSP-RK(4,3) allows 1.5x the advective and 1.54x the diffusive
        step, so where stability sets the substep it needs two thirds of SSP-RK3's evaluations
        (1.5 deg: 40 against 60 a day). ``"auto"`` (default): the one with the fewest tendency
        evaluations per model step for this grid (`choose_integrator`; SSP-RK(4,3) at 1.5 deg and
        finer, SSP-RK3 at 3 and 6 deg, where the cap `max_substep_s` or the rounding up to
        whole substeps takes SSP-RK(4,3)'s advantage away).
      min_substeps: lower bound on the number of substeps per day. Default 1.
      remat_substeps: recompute each substep in the backward pass (`jax.checkpoint`) instead of
        storing its RK stages, so memory for gradients through many days stays small.
        Default True.
      step_s: length (s) of one model step. Default 86400 (one day).
      primitive: primitive-mode settings (used only when ``mode == "primitive"``). Default None.
      tracer_advection: paper mode only. ``"flux"`` advects T and S as ``-div(q U)`` (conserves
        content exactly); ``"advective"`` as ``-div(q U) + q div(U)`` (= ``-U . grad q`` in the
        continuum), which has no spurious source where the horizontal flow converges. Paper mode
        has no vertical velocity to balance horizontal divergence (Ekman, or data velocities),
        so flux form piles tracer up in convergence zones; the advective form keeps a uniform
        field uniform, at the price of exact conservation under divergent flow (under
        non-divergent flow the added term vanishes and content is again conserved; on a real
        velocity field it drifts). Default "advective" (the seed's was "flux"; on the demo twin's
        test year the flux form's 1-day paper-convention RMSE is 1.20 against 0.80,
        `benchmarks/BENCHMARKS.md` section physics_skill). With the pressure gradient on, the
        flux form's spurious tracer also drives currents: on a 3 deg world under 1.5 m/s
        divergent jets, T rose from 33 to 45 degC and speeds passed the CFL bound in 27 days
        (`tests/test_physics_paper.py`). Primitive mode, which has a vertical velocity, always
        advects tracers in flux form.
      momentum_advection: paper mode only; the same choice for u and v: ``"advective"``
        (``-U . grad u``, as primitive mode) or ``"flux"`` (``-div(u U)``, the seed's).
        Default "advective".
      pressure_gradient: paper mode only. ``"hydrostatic"`` (balanced paper mode): the momentum
        equations gain ``-(1/rho0) grad p`` of the hydrostatic pressure of the state's own SSH
        and density, ``p(z) = rho0 g eta + g int_0^z rho'(T, S) dz`` (`eos`), integrated
        exactly together with Coriolis (`equations.coriolis_pressure_step`), so that
        geostrophically balanced flow is a fixed point of the day step. Paper mode has no
        continuity equation: SSH is not prognostic and is held fixed over the day, and the
        pressure gradient is evaluated once, from the state at the start of the day, and held
        fixed over its substeps (see `make_paper_physics`). ``"none"``: no pressure gradient,
        the seed's paper form (Coriolis rotates every current, balanced or not). Default
        "hydrostatic".
      eos: equation of state of paper mode's hydrostatic pressure, ``"teos10"`` or ``"linear"``
        (`eos.EOS_NAMES`); primitive mode uses `PrimitiveTerms.eos`. Default "teos10".
      level_block: paper mode has no vertical terms, so its levels evolve independently; a day
        is integrated for blocks of at most this many levels in turn (`lax.map`), which keeps a
        block's fields and fluxes in cache (timings: `benchmarks/BENCHMARKS.md`). None: all levels at once. Results are the same up to round-off.
        ``"auto"`` (default): 8 on a CPU backend, None on GPU/TPU, where one pass over all
        levels is faster.
    """

    mode: str = "paper"
    polar_filter_lat_deg: float | None = 60.0
    u_max_m_s: float = 3.0
    cfl: float = 0.5
    max_substep_s: float = 10800.0
    integrator: str = "auto"
    polar_filter_transfer: str = "joint"
    min_substeps: int = 1
    remat_substeps: bool = True
    step_s: float = SECONDS_PER_DAY
    primitive: Any = None
    tracer_advection: str = "advective"
    level_block: int | str | None = "auto"
    momentum_advection: str = "advective"
    pressure_gradient: str = "hydrostatic"
    eos: str = "teos10"

    def __post_init__(self):
        for name in ("tracer_advection", "momentum_advection"):
            if getattr(self, name) not in ("flux", "advective"):
                raise ConfigError(
                    f"physics.{name} must be 'flux' or 'advective', got {getattr(self, name)!r}"
                )
        if self.pressure_gradient not in ("hydrostatic", "none"):
            raise ConfigError(
                f"physics.pressure_gradient must be 'hydrostatic' or 'none', "
                f"got {self.pressure_gradient!r}"
            )
        if self.eos not in EOS_NAMES:
            raise ConfigError(f"physics.eos must be one of {list(EOS_NAMES)}, got {self.eos!r}")
        if self.polar_filter_transfer not in ("split", "joint"):
            raise ConfigError(
                f"physics.polar_filter_transfer must be 'split' or 'joint', "
                f"got {self.polar_filter_transfer!r}"
            )
        if self.integrator != "auto" and self.integrator not in INTEGRATORS:
            raise ConfigError(
                f"physics.integrator must be 'auto' or one of {sorted(INTEGRATORS)}, "
                f"got {self.integrator!r}"
            )
        if self.mode not in ("paper", "primitive"):
            raise ConfigError(f"physics.mode must be 'paper' or 'primitive', got {self.mode!r}")
        lat = self.polar_filter_lat_deg
        if lat is not None and not 0.0 < float(lat) <= 90.0:
            raise ConfigError(f"physics.polar_filter_lat_deg must be in (0, 90] or None, got {lat}")
        for name in ("u_max_m_s", "max_substep_s", "step_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"physics.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < float(self.cfl) <= 1.0:
            raise ConfigError(f"physics.cfl must be in (0, 1], got {self.cfl}")
        if self.level_block not in (None, "auto") and (
            isinstance(self.level_block, str) or int(self.level_block) < 1
        ):
            raise ConfigError(
                f"physics.level_block must be >= 1, None or 'auto', got {self.level_block!r}"
            )
        if int(self.min_substeps) < 1:
            raise ConfigError(f"physics.min_substeps must be >= 1, got {self.min_substeps}")

    @classmethod
    def seed_paper(cls, **overrides) -> PhysicsConfig:
        """The seed's paper form: no pressure gradient, flux-form advection of momentum and
        tracers (what the demo twin's paper-mode truth runs); `overrides` set other fields."""
        kw = dict(pressure_gradient="none", tracer_advection="flux", momentum_advection="flux")
        return cls(**{**kw, **overrides})


@dataclasses.dataclass(frozen=True)
class SubstepPlan:
    """The derived substep: `n_substeps` of `dt_s` seconds per model step, and why."""

    n_substeps: int
    dt_s: float
    dt_advective_s: float  # cfl / r_adv
    dt_diffusive_s: float  # diffusive_gain / r_diff
    dt_stable_s: float  # 1 / (r_adv / cfl + r_diff / diffusive_gain)
    limited_by: str  # "stability", "max_substep_s" or "min_substeps"


def _row_rates(grid: Grid, polar_filter_lat_deg: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``1/dx_eff`` (1/m) and the meridional outflow length per area ``r_y`` (1/m)."""
    dx = np.asarray(grid.dx, dtype=np.float64)
    if np.isfinite(grid.radius) and polar_filter_lat_deg is not None and polar_filter_lat_deg < 90:
        dlon = np.deg2rad(abs(grid.lon[1] - grid.lon[0]))
        dx_c = grid.radius * np.cos(np.deg2rad(polar_filter_lat_deg)) * dlon
        dx = np.where(np.abs(grid.lat) > polar_filter_lat_deg, np.maximum(dx, dx_c), dx)
    fl = np.asarray(grid.face_len_y)
    r_y = np.maximum(fl[:-1], fl[1:]) / grid.area
    return 1.0 / dx, r_y


def plan_substeps(
    grid: Grid,
    config: PhysicsConfig = PhysicsConfig(),
    specs: dict[str, CoefficientSpec] = PAPER_COEFFICIENTS,
    period_s: float | None = None,
    diffusive_gain: float = 1.0,
    ssp_coefficient: float = 1.0,
) -> SubstepPlan:
    """Number and length of substeps in `period_s` (default ``config.step_s``); see module doc.

    `diffusive_gain`: how much longer than forward Euler's the integrator's diffusive substep may
    be (the ratio of real-axis stability extents; 1 = forward Euler, the default;
    `Integrator.diffusive_gain` for an SSP Runge-Kutta method).
    `ssp_coefficient`: how much longer than forward Euler's its advective (monotone) substep may
    be (1 = forward Euler and SSP-RK3, the default; 2 for SSP-RK(4,3)).
    """
    period_s = float(config.step_s if period_s is None else period_s)
    inv_dx, r_y = _row_rates(grid, config.polar_filter_lat_deg)
    # every coefficient in m^2/s is a horizontal diffusivity of the explicit terms
    nus = [s.max_value for s in specs.values() if s.units == "m^2/s"]
    nu_max = max(nus) if nus else 0.0
    r_adv = config.u_max_m_s * float(np.max(inv_dx + r_y))
    r_diff = 2.0 * nu_max * float(np.max(inv_dx**2 + r_y / grid.dy)) / float(diffusive_gain)
    r_adv = r_adv / float(ssp_coefficient)
    dt_adv = config.cfl / r_adv
    dt_diff = 1.0 / r_diff if r_diff > 0 else math.inf
    dt_stable = 1.0 / (r_adv / config.cfl + r_diff)
    dt = min(dt_stable, float(config.max_substep_s))
    n = max(int(config.min_substeps), math.ceil(period_s / dt - 1e-9))
    if n == config.min_substeps and period_s / n < dt:
        why = "min_substeps"
    else:
        why = "stability" if dt_stable <= config.max_substep_s else "max_substep_s"
    return SubstepPlan(n, period_s / n, dt_adv, dt_diff, dt_stable, why)


def choose_integrator(
    grid: Grid,
    config: PhysicsConfig = PhysicsConfig(),
    specs: dict[str, CoefficientSpec] = PAPER_COEFFICIENTS,
) -> tuple[Integrator, SubstepPlan]:
    """The configured method and its substep plan; for ``integrator="auto"`` the method with the
    fewest tendency evaluations (stages x substeps) per model step, SSP-RK3 on a tie."""
    names = sorted(INTEGRATORS) if config.integrator == "auto" else [config.integrator]
    best = None
    for name in names:
        method = INTEGRATORS[name]
        plan = plan_substeps(grid, config, specs, diffusive_gain=method.diffusive_gain,
                             ssp_coefficient=method.ssp_coefficient)
        cost = method.stages * plan.n_substeps
        if best is None or cost < best[0]:
            best = (cost, method, plan)
    return best[1], best[2]



# ---------------------------------------------------------------------- checks
def check_state(state: OceanState, grid: Grid, where: str = "state") -> None:
    """Host-side check (not for use inside jit): shapes match `grid`, no NaN/inf in ocean cells.

    Raises `StateError` naming the variable, level, row/column and latitude/longitude of the
    first bad ocean value.
    """
    shape3 = (grid.n_levels,) + grid.shape
    for name in ("u", "v", "T", "S", "ssh"):
        x = np.asarray(getattr(state, name))
        expect = grid.shape if name == "ssh" else shape3
        if x.shape[-len(expect):] != expect:
            raise StateError(
                f"{where}.{name} has shape {x.shape}; expected [..., {', '.join(map(str, expect))}]"
            )
        wet = grid.wet[0] if name == "ssh" else grid.wet
        bad = ~np.isfinite(x) & wet
        if bad.any():
            idx = np.argwhere(bad)[0]
            j, i = int(idx[-2]), int(idx[-1])
            lead = tuple(int(k) for k in idx[:-2])
            what = (f"at index {lead}" if name == "ssh" else
                    f"at level {lead[-1]} ({grid.depth[lead[-1]]:g} m)"
                    + (f", batch index {lead[:-1]}" if len(lead) > 1 else ""))
            raise StateError(
                f"{where}.{name} is {x[tuple(idx)]} in an ocean cell {what}, row {j}, column {i} "
                f"(lat {grid.lat[j]:g}, lon {grid.lon[i]:g}); {int(bad.sum())} such cells"
            )


# ---------------------------------------------------------------------- the physics object
@dataclasses.dataclass(frozen=True, eq=False)
class Physics:
    """A configured physics core for one grid.

    Attributes:
      specs: the learnable coefficients of this mode (name -> `CoefficientSpec`).
      n_substeps: substeps per model step (one day).
      dt_substep_s: substep length (s).
      day_step: ``day_step(coeffs_si, state, forcing) -> state`` one day for unbatched
        ``[L, H, W]`` fields; coefficients (SI) scalars or per level ``[L]``; jittable.
      integrate: ``integrate(coeffs_si, state, forcings, n_days, trajectory=False)`` repeated
        `day_step` in one `lax.scan`; `forcings` is None or a `Forcing` with a leading day axis.
        Returns the final state, and with `trajectory` also the states after each day
        (leading axis ``n_days``).
      config, grid, plan: what it was built from.
    """

    specs: dict[str, CoefficientSpec]
    n_substeps: int
    dt_substep_s: float
    day_step: Callable[..., OceanState]
    integrate: Callable[..., Any]
    config: PhysicsConfig
    grid: Grid
    plan: SubstepPlan | None = None
    operators: Callable[[Any], Operators] | None = None  # dtype -> Operators
    integrator: str | None = None  # the method used (``config.integrator`` with "auto" resolved)


def make_integrate(day_step: Callable[..., OceanState]) -> Callable[..., Any]:
    """`integrate(coeffs_si, state, forcings, n_days, trajectory=False)` over `day_step`."""

    def integrate(coeffs_si, state, forcings=None, n_days: int = 1, trajectory: bool = False):
        if forcings is not None:
            forcings = jax.tree.map(lambda x: x[:n_days], forcings)

        def body(s, f):
            s = day_step(coeffs_si, s, f)
            return s, (s if trajectory else None)

        final, traj = jax.lax.scan(body, state, forcings, length=n_days)
        return (final, traj) if trajectory else final

    return integrate


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


def make_paper_physics(grid: Grid, config: PhysicsConfig = PhysicsConfig()) -> Physics:
    """The paper-mode physics of `grid` (see `neuralogcm_jax.physics.equations`)."""
    specs = dict(PAPER_COEFFICIENTS)
    method, plan = choose_integrator(grid, config, specs)
    eos = make_eos(config.eos)
    dt, n = plan.dt_s, plan.n_substeps
    cache: dict[Any, Operators] = {}

    def operators(dtype) -> Operators:
        dtype = jnp.dtype(dtype)
        if dtype not in cache:
            cache[dtype] = Operators.from_grid(
                grid, dtype, config.polar_filter_lat_deg,
                joint_filter=config.polar_filter_transfer == "joint")
        return cache[dtype]

    def day_step(coeffs_si: dict[str, Array], state: OceanState,
                 forcing: Forcing | None = None) -> OceanState:
        """One day of paper-mode physics; fields ``[L, H, W]`` in SI units, land kept as given."""
        del forcing  # paper mode has no surface forcing
        dtype = jnp.result_type(state.T)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.float32
        ops = operators(dtype)
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

            def pressure(T, S, eta):
                return pressure_gradient_acceleration(ops, T, S, eta, grid.depth, eos)

            if config.remat_substeps:
                # Recomputed in the backward pass: otherwise a rollout keeps every day's
                # intermediates of the 75-term TEOS-10 polynomial, which doubled the memory of a
                # 10-day gradient at 1.5 deg x 23 levels (1.5 -> 3.0 GB).
                pressure = jax.checkpoint(pressure)
            pg = pressure(q[2], q[3], ssh)
        eq = PaperEquation.from_coefficients(
            ops, coeffs_si, specs, advective_tracers=config.tracer_advection == "advective",
            advective_momentum=config.momentum_advection == "advective", pg=pg,
        )

        def integrate_levels(eq_block: PaperEquation, q_block: Array) -> Array:
            return repeat_strang(eq_block.exact_step, method.make_step(eq_block.explicit_terms, dt),
                                 dt, n, config.remat_substeps)(q_block)

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

    return Physics(
        specs=specs,
        n_substeps=n,
        dt_substep_s=dt,
        day_step=day_step,
        integrate=make_integrate(day_step),
        config=config,
        grid=grid,
        plan=plan,
        operators=operators,
        integrator=method.name,
    )
