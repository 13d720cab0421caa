"""Substep planning: how many substeps of what length a model step needs for stability.

How many substeps (`plan_substeps`). Write the explicit operator's fastest rates as

* advection: ``r_adv = u_max * max_rows(1/dx_eff + r_y)``, the outflow rate of an upwind cell when
  both velocity components are ``u_max``; ``dx_eff`` is the zonal width, raised to
  ``R cos(phi_c) dlon`` poleward of the polar-filter cutoff ``phi_c`` (the filter bounds the
  zonal modes there by that width, see `operators`; `zonal_spacing`); ``r_y = max(face
  lengths)/area`` is the meridional outflow length per area (``1/dy`` except in the polar-cap
  cells; `meridional_rate`);
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
``u tan(phi)/R``), SSP-RK3 reaches ``+-1.73 i`` and SSP-RK(4,3) ``+-2.16 i`` (`integrators`).

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
`diffusive_gain` (defaults 1, forward Euler); `choose_integrator` passes each method's and
keeps the cheapest (`paper.make_paper_physics`).

On the 1.5 deg grid with the 60 deg cutoff, ``u_max = 3`` m/s and ``nu_max = 2.5e5`` m^2/s,
SSP-RK(4,3) takes 10 substeps of 8640 s a day (advective limit alone 13900 s, diffusive alone
23877 s, both 8785 s; the polar-cap row sets both): 40 tendency evaluations. SSP-RK3 takes 20 of
4320 s (6950 s, 11651 s): 60 evaluations, and 1.45x the time (`benchmarks/BENCHMARKS.md`).
Without the polar filter it would be 7460 substeps of 11.6 s, set by diffusion across the 4 km
polar cells. The longer substep costs accuracy through the Strang splitting (second order): on the
embedded world at 1.5 deg after 5 days, the velocity differs from a 40-substep reference by
5.4e-3 (relative l2) with SSP-RK(4,3) at 8640 s, against 1.1e-3 with SSP-RK3 at 4320 s and
2.8e-4 at 2160 s; temperature by 9e-4, 2e-4 and 5e-5.

Primitive mode takes the same plan for its advection and horizontal diffusion, capped at
`PrimitiveTerms.max_substep_s`, and subcycles its free surface inside each substep
(`plan_barotropic`). Both use one effective zonal spacing for the polar cap (`zonal_spacing`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from neuralogcm_jax.grid import Grid
from neuralogcm_jax.physics.integrators import INTEGRATORS, Integrator
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, CoefficientSpec
from neuralogcm_jax.physics.stepping import PhysicsConfig

__all__ = [
    "SubstepPlan",
    "choose_integrator",
    "meridional_rate",
    "plan_barotropic",
    "plan_substeps",
    "zonal_spacing",
]


@dataclasses.dataclass(frozen=True)
class SubstepPlan:
    """The derived substep: `n_substeps` of `dt_s` seconds per model step, and why."""

    n_substeps: int
    dt_s: float
    dt_advective_s: float  # cfl / r_adv
    dt_diffusive_s: float  # diffusive_gain / r_diff
    dt_stable_s: float  # 1 / (r_adv / cfl + r_diff / diffusive_gain)
    limited_by: str  # "stability", "max_substep_s" or "min_substeps"


def zonal_spacing(grid: Grid, polar_filter_lat_deg: float | None) -> np.ndarray:
    """Per row, the zonal width ``dx`` (m, float64) that limits an explicit step: the grid's,
    raised to ``R cos(phi_c) dlon`` poleward of the polar filter's cutoff ``phi_c`` (the filter
    bounds the zonal modes there by that width, see `operators`); unchanged when the filter is
    off (None or 90 deg) or the grid is flat. Paper mode's substep plan (`plan_substeps`) and
    primitive mode's barotropic subcycle (`plan_barotropic`) both use it."""
    dx = np.asarray(grid.dx, dtype=np.float64)
    if np.isfinite(grid.radius) and polar_filter_lat_deg is not None and polar_filter_lat_deg < 90:
        dlon = np.deg2rad(abs(grid.lon[1] - grid.lon[0]))
        dx_c = grid.radius * np.cos(np.deg2rad(polar_filter_lat_deg)) * dlon
        dx = np.where(np.abs(grid.lat) > polar_filter_lat_deg, np.maximum(dx, dx_c), dx)
    return dx


def meridional_rate(grid: Grid) -> np.ndarray:
    """Per row, the meridional outflow length per area ``r_y = max(face lengths) / area`` (1/m):
    ``1/dy`` except in the polar-cap cells, where it is larger."""
    fl = np.asarray(grid.face_len_y, dtype=np.float64)
    return np.maximum(fl[:-1], fl[1:]) / np.asarray(grid.area, dtype=np.float64)


def _row_rates(grid: Grid, polar_filter_lat_deg: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``1/dx_eff`` (1/m) and the meridional outflow length per area ``r_y`` (1/m)."""
    return 1.0 / zonal_spacing(grid, polar_filter_lat_deg), meridional_rate(grid)


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


def plan_barotropic(
    grid: Grid,
    dt_s: float,
    gravity_m_s2: float,
    cfl: float,
    polar_filter_lat_deg: float | None,
    sea_floor_m: np.ndarray | None = None,
) -> tuple[int, float]:
    """Short steps ``(n, dt_s / n)`` of the forward-backward gravity-wave subcycle in a
    baroclinic substep of `dt_s` seconds (primitive mode's free surface).

    The Courant number ``c dt_bt sqrt(1/dx^2 + r_y/dy)`` stays at most `cfl`, with
    ``c = sqrt(g H_max)`` the fastest gravity wave (``H_max`` the deepest wet column, or the
    deepest ocean of `sea_floor_m` ``[H, W]`` where given), ``dx``
    from `zonal_spacing` (so the rows poleward of `polar_filter_lat_deg` follow the cutoff's
    spacing when the subcycle is filtered; None: the grid's own) and ``r_y`` from
    `meridional_rate` (larger than ``1/dy`` in the polar-cap cells), maximised over the rows
    with ocean.
    """
    wet = np.asarray(grid.wet, bool)
    dz = np.asarray(grid.dz, np.float64)
    col_depth = (dz[:, None, None] * wet).sum(0)
    if sea_floor_m is not None:
        col_depth = np.maximum(col_depth, np.where(wet[0], sea_floor_m, 0.0))
    c_max = math.sqrt(gravity_m_s2 * max(float(col_depth.max()), 1e-9))
    dx = zonal_spacing(grid, polar_filter_lat_deg)
    r_y = meridional_rate(grid)
    wet_rows = wet[0].any(axis=1)
    rate = np.sqrt(1.0 / dx**2 + r_y / grid.dy)[wet_rows] if wet_rows.any() else np.zeros(1)
    dt_bt_max = cfl / (c_max * float(rate.max()) + 1e-30)
    n = max(1, int(math.ceil(dt_s / dt_bt_max - 1e-9)))
    return n, dt_s / n
