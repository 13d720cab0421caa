"""The physics' configuration and the configured physics object's shared interface.

`PhysicsConfig` holds every setting of the core; `Physics` is what `physics.make_physics`
returns for a grid (its `day_step` advances one model step, one day, see `docs/design.md`);
`check_state` checks a state on the host. The pieces: `integrators` (SSP Runge-Kutta steppers,
Strang splitting), `planning` (how many substeps), `paper` (paper mode assembled from
`equations`), `primitive` (primitive mode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.errors import ConfigError, StateError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import Forcing, OceanState
from neuralogcm_jax.physics.eos import EOS_NAMES
from neuralogcm_jax.physics.integrators import INTEGRATORS
from neuralogcm_jax.physics.operators import Operators
from neuralogcm_jax.physics.params import CoefficientSpec

if TYPE_CHECKING:  # for an annotation only: planning imports PhysicsConfig from here
    from neuralogcm_jax.physics.planning import SubstepPlan

Array = Any

__all__ = [
    "Physics",
    "PhysicsConfig",
    "check_state",
]


def _as_primitive_terms(value: Any, key: str) -> Any:
    """`PhysicsConfig.primitive` from a mapping of `PrimitiveTerms` fields (a config file's
    ``physics.primitive`` section, or a dict given in Python), an unknown or bad field named by
    its full `key`; anything else is returned as is (`make_physics` checks it). The one
    conversion: `schema.from_dict` calls it through the field's ``convert`` metadata and
    `PhysicsConfig.__post_init__` for a mapping given directly."""
    if not isinstance(value, Mapping):
        return value
    from neuralogcm_jax import schema
    from neuralogcm_jax.physics.primitive_terms import PrimitiveTerms

    return schema.from_dict(PrimitiveTerms, dict(value), key)


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
      primitive: primitive-mode settings, a `PrimitiveTerms` or a mapping of its fields (from a
        config file: ``physics.primitive.shear_mixing: false``; an unknown field is named),
        used only when ``mode == "primitive"``. Default None (the defaults).
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
      imbalance: paper mode only. What the day does with the part of the start state's momentum
        balance that Coriolis and the pressure gradient leave over, their acceleration
        ``r0 = -f k x U0 - (1/rho0) grad p0`` (zero for geostrophic flow). ``"free"``: nothing;
        that residual turns inertially, by ``f`` x 86400 s a day. ``"held"``: the state is a
        daily mean on a coarse grid, whose residual is held in the ocean by forces the paper
        equation lacks (wind stress and vertical friction of the surface layers, the unresolved
        part of the pressure field), and those are taken as constant over the day: the momentum
        equations gain ``-(1 - a) r0``, where ``a`` is the learnable ``imbalance_release``
        (dimensionless, in (0, 1]: 1 is ``"free"``). At ``a -> 0`` the start velocity is a
        fixed point of the Coriolis and pressure part of the step, and the day changes it only
        by advection and diffusion. Default "free".
      output: paper mode only (primitive mode: ConfigError, see below). What a day step
        returns: ``"end"``: the state at the end of the day.
        ``"day_mean"``: the mean over the day of the states after each substep (a trajectory
        from the given state), the quantity daily-mean data (GLORYS, the twin) store; it
        averages an inertial oscillation over the day instead of sampling its phase. The next
        day starts from that mean, as a rollout on daily-mean data does. Default "end". In
        primitive mode it gained more (1-day RMSE 0.69 -> 0.49 on the demo twin) but its float32
        gradients missed the gradient matrix's bar in one case, so it is refused there.
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
    primitive: Any = dataclasses.field(default=None, metadata={"convert": _as_primitive_terms})
    tracer_advection: str = "advective"
    level_block: int | str | None = "auto"
    momentum_advection: str = "advective"
    pressure_gradient: str = "hydrostatic"
    eos: str = "teos10"
    imbalance: str = "free"
    output: str = "end"

    def __post_init__(self):
        object.__setattr__(self, "primitive",
                           _as_primitive_terms(self.primitive, "physics.primitive"))
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
        if self.output not in ("end", "day_mean"):
            raise ConfigError(
                f"physics.output must be 'end' or 'day_mean', got {self.output!r}")
        if self.output == "day_mean" and self.mode == "primitive":
            raise ConfigError(
                "physics.output: day_mean is paper mode's only: in primitive mode its float32 "
                "gradients missed the gradient matrix's 1e-2 bar (3 deg x 23 levels, 5-day "
                "shear_nu 1.4 %; docs/design.md)")
        if self.imbalance not in ("free", "held"):
            raise ConfigError(
                f"physics.imbalance must be 'free' or 'held', got {self.imbalance!r}")
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
        if self.imbalance == "held" and self.mode != "paper":
            raise ConfigError("physics.imbalance 'held' is a paper-mode option; primitive mode "
                              "carries its own momentum balance (use 'free')")
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
    """A configured physics core for one grid: one model step (`day_step`) and many (`integrate`).

    The shared interface of the modes; `make_physics` returns a `paper.PaperPhysics` or a
    `primitive.PrimitivePhysics`, which implement `day_step` and `operators`. Frozen and hashed
    by identity (``eq=False``), so a model can hold it as static data.

    Attributes:
      specs: the learnable coefficients of this mode (name -> `CoefficientSpec`).
      n_substeps: substeps per model step (one day).
      dt_substep_s: substep length (s).
      config, grid, plan: what it was built from (`plan`: the CFL plan of the explicit terms).
      integrator: the explicit method of the substep (``config.integrator`` with "auto"
        resolved); None in primitive mode, which has its own split-explicit substep.
    """

    specs: dict[str, CoefficientSpec]
    n_substeps: int
    dt_substep_s: float
    config: PhysicsConfig
    grid: Grid
    plan: SubstepPlan | None = None
    integrator: str | None = None

    @property
    def diagnostics(self) -> Mapping[str, float | int]:
        """The derived step counts (read-only): ``n_substeps`` and ``dt_substep_s``, and what a
        mode adds (primitive: ``n_barotropic``, ``dt_barotropic_s``)."""
        return MappingProxyType({"n_substeps": self.n_substeps, "dt_substep_s": self.dt_substep_s})

    def operators(self, dtype: Any) -> Operators:
        """The finite-volume operators of the grid in `dtype` (built once per dtype)."""
        raise NotImplementedError

    def day_step(self, coeffs_si: dict[str, Array], state: OceanState,
                 forcing: Forcing | None = None) -> OceanState:
        """One model step (one day) for unbatched ``[L, H, W]`` fields in SI units; coefficients
        (SI) scalars or per level ``[L]``; land values returned as given; jittable."""
        raise NotImplementedError

    def integrate(self, coeffs_si: dict[str, Array], state: OceanState, forcings: Forcing | None = None,
                  n_days: int = 1, trajectory: bool = False):
        """`day_step` repeated `n_days` times in one `lax.scan`; `forcings` is None or a `Forcing`
        with a leading day axis. Returns the final state, and with `trajectory` also the states
        after each day (leading axis ``n_days``)."""
        if forcings is not None:
            forcings = jax.tree.map(lambda x: x[:n_days], forcings)

        def body(s, f):
            s = self.day_step(coeffs_si, s, f)
            return s, (s if trajectory else None)

        final, traj = jax.lax.scan(body, state, forcings, length=n_days)
        return (final, traj) if trajectory else final
