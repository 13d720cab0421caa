"""Forecasting models behind one interface: the NeuralOGCM hybrid and the data-driven baselines.

Every model is a `Forecaster`, an NNX module with

    step(state, forcing_next, doy, *, doy_next=None, deterministic=True) -> next_state

where ``state`` is ``[B, n_ocean, H, W]`` normalised anomalies at day-of-year index ``doy``
(``[B]`` int), ``forcing_next`` the ``[B, n_forcing, H, W]`` normalised forcing of the next day
(4 channels, 6 with freshwater), and the result the anomalies one day later, exactly 0 on land.
One step is one day.

`NeuralOGCM` composes (the reasons: `docs/design.md`, "Decisions, and why")

    next = physical_to_anomaly(physics_day(anomaly_to_physical(state, doy)), doy + 1)
           (x climate damping, + fitted tendency correction: `ModelConfig`, when configured)
           + corrector([state, forcing_next])     (+ physics' forecast: `corrector_sees_physics`)

The physics works in SI units on the physical fields; the corrector is a network whose
last layer starts at zero, so an untrained hybrid equals pure physics bit for bit. The physics
coefficients (``nu_m``, ``nu_t``, ...) are raw `nnx.Param` leaves under ``model.physics_params``
with ``value = scale * softplus(raw)``.

Baselines (U-Net, ConvLSTM, SimVP, FourCastNet) predict the one-day increment of the anomaly
state: ``next = state + net([state, forcing_next])``. Predicting the increment rather than the
whole field is our choice (the paper does not say); it makes persistence the untrained starting
point of every model, which is the fair comparison with the hybrid.

Normalisation statistics and masks live in the module as `Constant` variables, not parameters, so
a checkpoint carries what the model needs to run and the optimiser never touches them.

Climatology: the models carry the compact climatology (``clim_harmonics``, `K` annual harmonics
per channel and cell, see `neuralogcm_jax.data.normalize`) and evaluate it for each step's day of
year. The data pipeline normalises the training samples with the same harmonics, so a model turns
its own anomalies back into physical fields with the climatology its data used.
`tests/test_portable.py` holds that one-day physical forecasts agree with those made through a
366-day climatology table to within 1e-2 channel std in every wet cell: the physics sees physical
fields either way, and only the corrector's input shifts. With `ModelConfig.climate_damping_days`
the forecast also relaxes toward the climatology in use, by ``(1 - exp(-r dt))`` of it (3 % a day
at 30 days); that pull is taken out before the comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuralogcm_jax.calendar import next_doy
from neuralogcm_jax.data.normalize import Stats, climatology_at
from neuralogcm_jax.errors import ConfigError, LayoutError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.nn import NETWORKS, build_network
from neuralogcm_jax.nn.baselines.convlstm import ConvLSTMConfig
from neuralogcm_jax.nn.baselines.fourcastnet import FourCastNetConfig
from neuralogcm_jax.nn.baselines.simvp import SimVPConfig
from neuralogcm_jax.nn.baselines.unet import UNetConfig
from neuralogcm_jax.nn.ste import STEConfig
from neuralogcm_jax.physics import Physics, coefficient_specs, make_physics
from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.physics.params import (
    CoefficientSpec,
    check_values,
    default_raw,
    to_si,
)
from neuralogcm_jax.physics.stepping import PhysicsConfig
from neuralogcm_jax.schema import FrozenDict

Array = Any

MODEL_NAMES = ("neuralogcm", "unet", "convlstm", "simvp", "fourcastnet")
_ALIASES = {"neuralogcm": "neuralogcm", "neural_ogcm": "neuralogcm", "hybrid": "neuralogcm"}

# Models defined outside the package (`register_model`): name -> builder.
_REGISTERED: dict[str, Callable] = {}


def register_model(name: str, builder: Callable) -> None:
    """Make `build_model` (and so training, checkpoints and `load_model`) build
    ``builder(cfg: ModelConfig, grid, stats, seed) -> model`` for ``cfg.name == name``.

    For models defined outside the package (the tests' toy model); the model must honour the
    `Forecaster` step contract. A command-line run loads such a module through the
    ``NEURALOGCM_PLUGINS`` environment variable (see `neuralogcm_jax.cli`)."""
    if name in MODEL_NAMES or name in _ALIASES:
        raise ConfigError(f"model name {name!r} is taken by a built-in model")
    _REGISTERED[name] = builder


def canonical_model_name(name: str) -> str:
    """`NeuralOGCM`, `neuralogcm`, `UNet`, `unet`, ... -> the canonical lower-case name."""
    if name in _REGISTERED:
        return name
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in MODEL_NAMES:
        known = ", ".join([*MODEL_NAMES[1:], *_REGISTERED])
        raise ConfigError(f"unknown model {name!r}; known: NeuralOGCM, {known}")
    return key


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model to build and its sizes.

    Attributes:
      name: "neuralogcm" (the hybrid) or a baseline: "unet", "convlstm", "simvp", "fourcastnet".
      physics: the physics core's settings (mode, polar filter, substepping); hybrid only.
      physics_coefficients: initial SI values of the learnable coefficients, e.g.
        ``{"nu_m": 5e4}`` (m^2/s), or one value per level (top first) for a coefficient held
        per level; missing ones take the defaults of `physics/params.py`.
        Held as a `FrozenDict`, so the config is hashable (a model keeps it as static data).
      per_level_coefficients: one value per depth level instead of a global scalar, for the
        coefficients that act on every level (primitive mode's heat_restoring, at the surface,
        bottom_drag, at the bottom, convective_kappa and shear_nu stay one value).
      corrector: the STE corrector's sizes (hybrid only).
      corrector_sees_physics: the corrector's input also holds the physics' forecast of the day
        (``[state, forcing_next, physics(state)]``), so it can correct what the physics did
        rather than guess it from the state alone (hybrid only). Default False.
      climate_damping_days: hybrid only. When set, the physics' forecast relaxes toward the
        model's climatology: each day the anomaly of variable ``v`` (S, U, V, T, SSH) is
        multiplied by ``exp(-r_v * step_s)``, with one learnable rate ``climate_damping_<v>``
        (1/s) per variable under ``physics_params``, starting at ``1 / (days * 86400)``. It
        stands for what pulls the real ocean back to its seasonal cycle and paper mode lacks
        (surface fluxes, restoring, deep mixing), so errors cannot grow without bound on long
        rollouts (`climate_damping_factors`). None (default): no damping.
      climate_damping_per_level: with `climate_damping_days`, one rate per level for S, U, V
        and T (SSH keeps one), each starting at ``1 / (days * 86400)``: deep tracer anomalies
        persist for months while surface currents forget theirs in days. Default False (one
        rate per variable).
      climate_damping_fit_lag: with `climate_damping_days`, the initial rates are fitted to the
        training split instead of all starting at ``1 / days``: for each channel (or variable,
        without `climate_damping_per_level`) the regression of the normalised anomaly `lag`
        days later on today's, ``alpha = sum a(t) a(t+lag) / sum a(t)^2`` over wet cells, gives
        the rate ``-ln(alpha) / lag`` (damped persistence's; bounded to e-foldings of
        1 to 3650 days). The trainer resolves it (`fit_climate_damping`) before building the
        model; the run's checkpoints keep the fitted values under `physics_coefficients` and
        this key empty. A model built from a config whose lag is still set (`build_model`
        without a training run, e.g. the speed benchmarks) starts every rate at ``1 / days``.
        None (default): every rate starts at ``1 / days``.
      tendency_correction_harmonics: hybrid only. When set to ``K``, the physics' forecast of
        each day (after the climate damping) gains a fixed per-cell tendency in every ocean
        channel, ``c(doy) = sum_k b_k(doy) C_k`` over the annual harmonics basis
        ``1, cos(2 pi k d / 365.25), sin(...)`` for k = 1..K (`data.normalize.harmonic_basis`;
        K = 0: one constant field). ``C`` is the least-squares fit of the physics' one-day
        residual over the training split, ``a(t+1) - physics(a(t))`` in normalised anomalies
        (`neuralogcm_jax.train.fitted.fit_tendency_correction`): the mean error of the model's
        physics, by season, with the truth it is trained on (what a flux correction removes in
        a coupled climate model). The trainer fits it after building the model, before the
        first step; it is a parameter (``tendency_correction``, checkpointed and exported) that
        the optimizer leaves alone and the loss gets no gradient from. A model built without a
        training run starts with it at zero. None (default): no correction.
      heat_offset_harmonics: hybrid with primitive-mode physics only (its surface heat flux on).
        When set to ``K``, the surface heat flux restores the top level toward the day's air
        temperature plus a fixed per-cell offset, ``t2m + o(doy)`` with
        ``o(doy) = sum_k b_k(doy) O_k`` on the same harmonic basis, instead of toward the air
        temperature itself (1-2 K colder than the sea on average, about -30 degC over sea ice).
        ``O`` is the least-squares fit of ``SST - t2m`` (K) over the training split's wet top
        cells (`neuralogcm_jax.train.fitted.fit_heat_offset`): the climatological SST - t2m
        difference, so the target is ``t2m + (sst_clim - t2m_clim)``, the twin truth's "offset"
        heat target (`TruthSpec.heat_target`). A parameter (``heat_offset``, K,
        ``[2K + 1, H, W]``) like the tendency correction: fitted before the first step (before
        the correction, whose residuals then include it), checkpointed, never trained. None
        (default): restoring toward t2m.
      unet, convlstm, simvp, fourcastnet: the baselines' sizes.
      dtype: compute dtype of the networks, "float32" or "bfloat16" (parameters, physics and
        loss stay float32); "float64" computes everything in double precision (gradient checks;
        needs ``jax_enable_x64`` and float64 parameters, see `cast_model`).
    """

    name: str = "neuralogcm"
    physics: PhysicsConfig = dataclasses.field(default_factory=PhysicsConfig)
    physics_coefficients: dict[str, float | tuple[float, ...]] = dataclasses.field(
        default_factory=FrozenDict)
    per_level_coefficients: bool = False
    corrector: STEConfig = dataclasses.field(default_factory=STEConfig)
    corrector_sees_physics: bool = False
    climate_damping_days: float | None = None
    climate_damping_per_level: bool = False
    climate_damping_fit_lag: int | None = None
    tendency_correction_harmonics: int | None = None
    heat_offset_harmonics: int | None = None
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    convlstm: ConvLSTMConfig = dataclasses.field(default_factory=ConvLSTMConfig)
    simvp: SimVPConfig = dataclasses.field(default_factory=SimVPConfig)
    fourcastnet: FourCastNetConfig = dataclasses.field(default_factory=FourCastNetConfig)
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "name", canonical_model_name(self.name))
        object.__setattr__(self, "physics_coefficients", FrozenDict(
            {k: tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v
             for k, v in self.physics_coefficients.items()}))
        d = self.climate_damping_days
        if d is not None and not (isinstance(d, (int, float)) and np.isfinite(d)
                                  and d >= MIN_CLIMATE_DAMPING_DAYS):
            raise ConfigError(
                f"model.climate_damping_days must be a number of days >= "
                f"{MIN_CLIMATE_DAMPING_DAYS:g} (the damping rates' stability bound) or null, "
                f"got {d!r}")
        if not isinstance(self.climate_damping_per_level, bool):
            raise ConfigError(f"model.climate_damping_per_level must be true or false, got "
                              f"{self.climate_damping_per_level!r}")
        if self.climate_damping_per_level and d is None:
            raise ConfigError("model.climate_damping_per_level is true but "
                              "model.climate_damping_days is null: there is no damping to give "
                              "one rate per level")
        lag = self.climate_damping_fit_lag
        if lag is not None:
            if isinstance(lag, bool) or not isinstance(lag, int) or not 1 <= lag <= MAX_FIT_LAG:
                raise ConfigError(f"model.climate_damping_fit_lag must be a whole number of days "
                                  f"in [1, {MAX_FIT_LAG}] or null, got {lag!r}")
            if d is None:
                raise ConfigError("model.climate_damping_fit_lag is set but "
                                  "model.climate_damping_days is null: there is no damping to fit")
            given = sorted(k for k in self.physics_coefficients if k.startswith("climate_damping_"))
            if given:
                raise ConfigError(f"model.climate_damping_fit_lag is set and "
                                  f"model.physics_coefficients gives {given} too: fit the "
                                  f"initial rates or give them, not both")
        for key in ("tendency_correction_harmonics", "heat_offset_harmonics"):
            k = getattr(self, key)
            if k is not None and (isinstance(k, bool) or not isinstance(k, int)
                                  or not 0 <= k <= MAX_CORRECTION_HARMONICS):
                raise ConfigError(f"model.{key} must be a whole number of annual harmonics in "
                                  f"[0, {MAX_CORRECTION_HARMONICS}] or null, got {k!r}")
        if self.name == "neuralogcm" and self.heat_offset_harmonics is not None:
            terms = self.physics.primitive
            if self.physics.mode != "primitive" or (terms is not None and not terms.heat_flux):
                raise ConfigError(
                    "model.heat_offset_harmonics offsets the target of primitive mode's surface "
                    "heat flux: it needs physics.mode: primitive with physics.primitive."
                    f"heat_flux: true (got mode {self.physics.mode!r}"
                    + ("" if self.physics.mode != "primitive" else ", heat_flux false")
                    + "); paper mode has no surface heat flux")
        if self.name == "neuralogcm" and self.physics_coefficients:
            # Unknown names and values outside (0, bound]: a ConfigError naming the key, before
            # any data is read or any model built (a per-level list's length: at the build).
            specs = {**coefficient_specs(self.physics),
                     **climate_damping_specs(d, self.climate_damping_per_level)}
            check_values(specs, dict(self.physics_coefficients))
        if self.dtype not in ("float32", "bfloat16", "float64"):
            raise ConfigError(
                f"model.dtype must be 'float32', 'bfloat16' or 'float64', got {self.dtype!r}"
            )


class Constant(nnx.Variable):
    """A fixed array carried by the model (statistics, masks): saved, never optimised."""


DAMPED_VARIABLES = ("S", "U", "V", "T", "SSH")
# The fastest climate damping: an e-folding of one day (the rates' stability bound).
MIN_CLIMATE_DAMPING_DAYS = 1.0
# `ModelConfig.climate_damping_fit_lag`: the longest lag (days; a year file must hold a pair),
# and the slowest fitted e-folding (days), for anomalies that do not decay at all over the lag.
MAX_FIT_LAG = 180
MAX_FITTED_DAMPING_DAYS = 3650.0
# `ModelConfig.tendency_correction_harmonics`: the most annual harmonics (12: a month's detail).
MAX_CORRECTION_HARMONICS = 12


def climate_damping_specs(days: float | None, per_level: bool = False
                          ) -> dict[str, CoefficientSpec]:
    """The learnable relaxation rates toward climatology of `ModelConfig.climate_damping_days`
    (none when `days` is None): ``climate_damping_<v>`` in 1/s, one per variable, or (when
    `per_level`) one per level of S, U, V and T."""
    if days is None:
        return {}
    rate = 1.0 / (float(days) * SECONDS_PER_DAY)
    return {
        f"climate_damping_{v}": CoefficientSpec(
            f"climate_damping_{v}", rate, "1/s",
            f"relaxation rate of the {v} anomaly toward the model's climatology",
            max_value=1.0 / (MIN_CLIMATE_DAMPING_DAYS * SECONDS_PER_DAY),
            per_level=per_level and v != "SSH")
        for v in DAMPED_VARIABLES
    }


def fit_climate_damping(cfg: ModelConfig, num: np.ndarray, den: np.ndarray, layout
                        ) -> ModelConfig:
    """`cfg` with its ``climate_damping_fit_lag`` resolved: the initial rates fitted to the lag
    sums ``(num, den)`` of `neuralogcm_jax.data.persistence.lag_sums` (per ocean channel, in the
    `layout`'s order) as ``physics_coefficients`` (one per level, or per variable without
    ``climate_damping_per_level``), and the lag cleared, so the config rebuilds the same model
    without the data. A config without a fit lag comes back unchanged."""
    from neuralogcm_jax.data.persistence import lag_regression

    lag = cfg.climate_damping_fit_lag
    if lag is None:
        return cfg
    fitted = {}
    for v in DAMPED_VARIABLES:
        s = layout.var_slice(v)
        per_level = cfg.climate_damping_per_level and v != "SSH"
        groups = [slice(i, i + 1) for i in range(s.start, s.stop)] if per_level else [s]
        alpha = lag_regression(num, den, groups)
        rate = _damped_persistence_rate(alpha, lag, cfg.climate_damping_days)
        fitted[f"climate_damping_{v}"] = tuple(float(r) for r in rate) if per_level else float(rate[0])
    return dataclasses.replace(
        cfg, physics_coefficients=FrozenDict({**cfg.physics_coefficients, **fitted}),
        climate_damping_fit_lag=None)


def _damped_persistence_rate(alpha: np.ndarray, lag: int, days: float) -> np.ndarray:
    """``-ln(alpha) / lag`` in 1/s, bounded to e-foldings of MIN_CLIMATE_DAMPING_DAYS to
    MAX_FITTED_DAMPING_DAYS (alpha <= 0: the fastest; alpha >= 1: the slowest); a channel
    without variance (NaN) keeps ``1 / days``."""
    lo = 1.0 / (MAX_FITTED_DAMPING_DAYS * SECONDS_PER_DAY)
    hi = 1.0 / (MIN_CLIMATE_DAMPING_DAYS * SECONDS_PER_DAY)
    a = np.clip(np.nan_to_num(alpha, nan=1.0), np.exp(-lag * SECONDS_PER_DAY * hi), 1.0)
    rate = np.clip(-np.log(a) / (lag * SECONDS_PER_DAY), lo, hi)
    return np.where(np.isnan(alpha), 1.0 / (days * SECONDS_PER_DAY), rate)


class PhysicsParams(nnx.Module):
    """The learnable physics coefficients as raw values (``value = scale * softplus(raw)``): the
    physics core's (`Physics.specs`) and the model's own (`extra_specs`, e.g. the climate
    damping rates). `per_level` applies to the core's coefficients; an extra spec is one per
    level exactly when its own ``per_level`` says so."""

    def __init__(self, physics: Physics, init_si: dict[str, float], per_level: bool, n_levels: int,
                 extra_specs: dict[str, CoefficientSpec] | None = None):
        extra = dict(extra_specs or {})
        specs = {**physics.specs, **extra}
        self.specs = FrozenDict(specs)  # static graph data: hashable
        self.core = tuple(physics.specs)  # the names the physics' day step takes
        # One value per level where the spec allows it and, for the core's, `per_level` asks;
        # unknown names in `init_si`: one ConfigError listing every known one.
        shaped = {k: dataclasses.replace(s, per_level=s.per_level and (per_level or k in extra))
                  for k, s in specs.items()}
        raw = default_raw(shaped, init_si, per_level=True, n_levels=n_levels)
        for name, r in raw.items():
            setattr(self, name, nnx.Param(jnp.asarray(r, dtype=jnp.float32)))

    def raw(self) -> dict[str, Array]:
        return {k: getattr(self, k)[...] for k in self.specs}

    def si(self, clip: bool = True) -> dict[str, Array]:
        """SI values (clipped at each coefficient's stability bound when `clip`)."""
        return to_si(self.raw(), self.specs, clip=clip)

    def core_si(self) -> dict[str, Array]:
        """SI values of the physics core's coefficients only (what `Physics.day_step` takes)."""
        si = self.si()
        return {k: si[k] for k in self.core}


def check_forcing_fits(physics: PhysicsConfig, layout: ChannelLayout) -> None:
    """`ConfigError` naming the setting when the physics reads forcing the data do not carry
    (primitive mode's ``freshwater_flux: e_minus_p`` needs the layout's ``e`` and ``tp``)."""
    terms = physics.primitive
    if physics.mode == "primitive" and terms is not None and \
            terms.freshwater_flux == "e_minus_p" and not layout.freshwater:
        raise ConfigError(
            "physics.primitive.freshwater_flux is 'e_minus_p' but the data have no freshwater "
            f"forcing channels e and tp ({layout.describe()}; convert-glorys --freshwater "
            "writes them from ERA5)")


class Forecaster(nnx.Module):
    """Shared plumbing: layout, grid, statistics and masks; subclasses define `_advance`."""

    def __init__(self, cfg: ModelConfig, grid: Grid, stats: Stats):
        layout = stats.layout
        if grid.n_levels != layout.n_levels or grid.shape != stats.shape:
            raise LayoutError(
                f"grid {grid.describe()} does not fit the statistics ({layout.n_levels} levels, "
                f"climatology grid {stats.shape})"
            )
        # static graph data (hashable: frozen configs, the layout; the grid by identity)
        self.cfg = cfg
        self.grid = grid
        self.layout = layout
        n = layout.n_ocean
        self.mean = Constant(jnp.asarray(stats.mean, jnp.float32))
        self.std = Constant(jnp.asarray(stats.std, jnp.float32))
        # the compact climatology (annual harmonics, see `data.normalize`): the same
        # coefficients the data pipeline normalised the samples with
        self.clim_harmonics = Constant(jnp.asarray(np.asarray(stats.harmonics, np.float32)))
        self.wet = Constant(jnp.asarray(layout.wet_channels(grid.wet)[:n], jnp.float32))
        self.compute_dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
                              "float64": jnp.float64}[cfg.dtype]

    # -------------------------------------------------------------- interface
    @property
    def name(self) -> str:
        return self.cfg.name

    def check_inputs(self, state: Array, forcing_next: Array) -> None:
        """Shape checks (trace-time, so they cost nothing inside jit)."""
        H, W = self.grid.shape
        if state.ndim != 4 or state.shape[1:] != (self.layout.n_ocean, H, W):
            raise LayoutError(
                f"state has shape {tuple(state.shape)}; {self.name} expects "
                f"[batch, {self.layout.n_ocean}, {H}, {W}]"
            )
        if forcing_next.shape != (state.shape[0], self.layout.n_forcing, H, W):
            raise LayoutError(
                f"forcing has shape {tuple(forcing_next.shape)}; expected "
                f"[{state.shape[0]}, {self.layout.n_forcing}, {H}, {W}]"
            )

    def step(self, state, forcing_next, doy, *, doy_next=None, deterministic: bool = True):
        """One day: ``[B, n_ocean, H, W]`` anomalies at `doy` -> anomalies at `doy_next`.

        `doy_next` defaults to `calendar.next_doy(doy)` (see there for the one leap-year
        ambiguity)."""
        self.check_inputs(state, forcing_next)
        doy = jnp.asarray(doy, jnp.int32)
        doy = jnp.broadcast_to(doy, state.shape[:1])
        doy_next = next_doy(doy) if doy_next is None else jnp.asarray(doy_next, jnp.int32)
        out = self._advance(state, forcing_next, doy, doy_next, deterministic)
        return jnp.where(self.wet[...] > 0, out, 0.0).astype(state.dtype)

    def work_dtype(self, x):
        """Physics and sums run in float32, or float64 when the state is float64."""
        return jnp.promote_types(x.dtype, jnp.float32)

    __call__ = step

    def _advance(self, state, forcing_next, doy, doy_next, deterministic):
        raise NotImplementedError

    def _network_input(self, state, forcing_next):
        return jnp.concatenate([state, forcing_next], axis=1).astype(self.compute_dtype)

    # -------------------------------------------------------------- normalisation
    def climatology(self, doy):
        """``[B, n_ocean, H, W]`` climatology of the day-of-year indices ``doy [B]``."""
        return climatology_at(self.clim_harmonics[...], doy)

    def anomaly_to_physical(self, a, doy):
        """``[B, n_ocean, H, W]`` anomalies -> physical units (land 0)."""
        n = self.layout.n_ocean
        c = self.climatology(doy)
        x = a * self.std[...][:n, None, None] + self.mean[...][:n, None, None] + c
        return jnp.where(self.wet[...] > 0, x, 0.0)

    def physical_to_anomaly(self, x, doy):
        n = self.layout.n_ocean
        c = self.climatology(doy)
        a = (x - c - self.mean[...][:n, None, None]) / self.std[...][:n, None, None]
        return jnp.where(self.wet[...] > 0, a, 0.0)

    def denormalize_forcing(self, f):
        n = self.layout.n_ocean
        return f * self.std[...][n:, None, None] + self.mean[...][n:, None, None]


class NeuralOGCM(Forecaster):
    """The hybrid: sub-stepped differentiable physics plus the STE corrector, one day a step."""

    def __init__(self, cfg: ModelConfig, grid: Grid, stats: Stats, *, rngs: nnx.Rngs):
        super().__init__(cfg, grid, stats)
        check_forcing_fits(cfg.physics, self.layout)
        self.physics = make_physics(grid, cfg.physics)  # static: hashed by identity
        self.physics_params = PhysicsParams(
            self.physics, dict(cfg.physics_coefficients), cfg.per_level_coefficients, grid.n_levels,
            extra_specs=climate_damping_specs(cfg.climate_damping_days,
                                              cfg.climate_damping_per_level),
        )
        n = self.layout.n_ocean
        n_in = self.layout.n_channels + (n if cfg.corrector_sees_physics else 0)
        self.corrector = build_network(
            "ste", cfg.corrector, n_in, n, grid.shape, rngs, self.compute_dtype
        )
        k = cfg.tendency_correction_harmonics
        if k is not None:  # fitted by the trainer (`train.fitted`); zero until then
            self.tendency_correction = nnx.Param(
                jnp.zeros((2 * k + 1, n) + tuple(grid.shape), jnp.float32))
        k = cfg.heat_offset_harmonics
        if k is not None:  # fitted by the trainer (`train.fitted`); zero until then
            self.heat_offset = nnx.Param(jnp.zeros((2 * k + 1,) + tuple(grid.shape), jnp.float32))

    def physics_coefficients_si(self) -> dict[str, Array]:
        return self.physics_params.si()

    def physics_tendency_step(self, state, forcing_next, doy, doy_next):
        """Pure physics for one day on anomalies: ``[B, n_ocean, H, W]`` -> same (with the
        climate damping, when configured)."""
        coeffs = self.physics_params.core_si()
        wd = self.work_dtype(state)
        x = self.anomaly_to_physical(state.astype(wd), doy)
        ocean = self.layout.to_state(x)
        forcing = self.layout.to_forcing(self.denormalize_forcing(forcing_next.astype(wd)))
        if self.cfg.heat_offset_harmonics is not None:
            forcing = forcing._replace(
                t2m=forcing.t2m + self.heat_offset_at(doy_next).astype(forcing.t2m.dtype))
        day = jax.vmap(self.physics.day_step, in_axes=(None, 0, 0))
        new = day(coeffs, ocean, forcing)
        out = self.physical_to_anomaly(self.layout.from_state(new), doy_next)
        if self.cfg.climate_damping_days is not None:
            out = out * self.climate_damping_factors().astype(out.dtype)
        if self.cfg.tendency_correction_harmonics is not None:
            out = out + self.tendency_correction_at(doy_next).astype(out.dtype)
        return out

    def tendency_correction_at(self, doy) -> Array:
        """``[B, n_ocean, H, W]``: the fitted tendency correction of the day-of-year indices
        ``doy [B]`` (`ModelConfig.tendency_correction_harmonics`), land 0. Fixed: no gradient
        reaches it (the optimizer leaves it alone too, `train.optim`)."""
        coef = jax.lax.stop_gradient(self.tendency_correction[...])
        return climatology_at(coef, doy) * self.wet[...].astype(coef.dtype)

    def heat_offset_at(self, doy) -> Array:
        """``[B, H, W]`` (K): the fitted offset added to t2m as the surface heat flux's target
        on the day-of-year indices ``doy [B]`` (`ModelConfig.heat_offset_harmonics`), land 0.
        Fixed like the tendency correction."""
        coef = jax.lax.stop_gradient(self.heat_offset[...])
        top = self.layout.var_slice("T").start  # the top level's T channel
        return climatology_at(coef[:, None], doy)[..., 0, :, :] * self.wet[...][top].astype(
            coef.dtype)

    def climate_damping_factors(self) -> Array:
        """``[n_ocean, 1, 1]``: ``exp(-r_v * step_s)`` of each channel's variable ``v`` (and level,
        with `ModelConfig.climate_damping_per_level`).

        The anomaly of the model's normalisation is ``(x - clim - mean) / std``, so scaling it
        relaxes ``x`` toward ``clim + mean`` (``mean`` is the training years' mean departure
        from the smoothed climatology, about zero)."""
        si = self.physics_params.si()
        parts = []
        for v in DAMPED_VARIABLES:  # the layout's order: S, U, V, T (levels each), SSH
            s = self.layout.var_slice(v)
            parts.append(jnp.broadcast_to(si[f"climate_damping_{v}"], (s.stop - s.start,)))
        rate = jnp.concatenate(parts)
        return jnp.exp(-rate * float(self.cfg.physics.step_s))[:, None, None]

    def _advance(self, state, forcing_next, doy, doy_next, deterministic):
        phys = self.physics_tendency_step(state, forcing_next, doy, doy_next)
        x = self._network_input(state, forcing_next)
        if self.cfg.corrector_sees_physics:
            x = jnp.concatenate([x, phys.astype(x.dtype)], axis=1)
        corr = self.corrector(x, deterministic=deterministic)
        return phys + corr.astype(phys.dtype)


class PurePhysics(NeuralOGCM):
    """A hybrid whose corrector never runs: a step is the physics core's day (with the climate
    damping, when configured) alone, land masked. The evaluation's pure-physics reference: equal
    bit for bit to the hybrid with a zero corrector, without the network's cost (about half a
    hybrid step on the demo grid)."""

    @classmethod
    def of(cls, hybrid: NeuralOGCM) -> "PurePhysics":
        """A copy of `hybrid` (its coefficients, statistics and parameters) as pure physics."""
        if not isinstance(hybrid, NeuralOGCM):
            raise ConfigError(f"pure physics needs a NeuralOGCM, got {type(hybrid).__name__}")
        physics = nnx.clone(hybrid)
        physics.__class__ = cls  # the same variables; only `_advance` differs
        return physics

    def _advance(self, state, forcing_next, doy, doy_next, deterministic):
        return self.physics_tendency_step(state, forcing_next, doy, doy_next)


class Baseline(Forecaster):
    """A data-driven baseline: ``next = state + net([state, forcing_next])``."""

    def __init__(self, cfg: ModelConfig, grid: Grid, stats: Stats, *, rngs: nnx.Rngs):
        super().__init__(cfg, grid, stats)
        net_cfg = getattr(cfg, cfg.name)
        self.net = build_network(
            cfg.name, net_cfg, self.layout.n_channels, self.layout.n_ocean, grid.shape, rngs,
            self.compute_dtype,
        )

    def physics_coefficients_si(self) -> dict[str, Array]:
        return {}

    def _advance(self, state, forcing_next, doy, doy_next, deterministic):
        inc = self.net(self._network_input(state, forcing_next), deterministic=deterministic)
        wd = self.work_dtype(state)
        return state.astype(wd) + inc.astype(wd)


def cast_model(model: Forecaster, dtype) -> Forecaster:
    """Cast every floating variable (parameters and constants) of `model` to `dtype`, in place."""
    state = nnx.state(model)
    state = jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, state
    )
    nnx.update(model, state)
    return model


def build_model(cfg: ModelConfig, grid: Grid, stats: Stats, *, seed: int = 0) -> Forecaster:
    """The model named by ``cfg.name`` on `grid` with normalisation `stats`."""
    name = canonical_model_name(cfg.name)
    if name in _REGISTERED:
        return _REGISTERED[name](cfg, grid, stats, seed)
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    if name == "neuralogcm":
        return NeuralOGCM(cfg, grid, stats, rngs=rngs)
    if name not in NETWORKS:
        raise ConfigError(f"model {name!r} has no network; known: {sorted(NETWORKS)}")
    return Baseline(cfg, grid, stats, rngs=rngs)
