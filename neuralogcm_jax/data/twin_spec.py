"""What a twin dataset is: its grid, years, spin-up, truth and forcing noise, and the presets.

`DatasetSpec` and `TruthSpec` are plain frozen dataclasses (no JAX): ``neuralogcm make-data``
reads `PRESETS` for its ``--preset`` choices before anything heavy is imported. The truth that a
`TruthSpec` describes is built by `neuralogcm_jax.data.twin_truth`; the dataset is written by
`neuralogcm_jax.data.twin.generate_dataset` (overview in that module and in docs/design.md).
"""

from __future__ import annotations

import dataclasses

from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.data.forcing import NoiseSpec
from neuralogcm_jax.errors import ConfigError

# Truth coefficients (SI), each different from the model's default in physics/params.py and
# physics/primitive_terms.py (defaults: nu_m 5e4, nu_t 1e3, kappa_v 1e-4, nu_v 1e-3,
# heat_restoring 40, bottom_drag 1e-3, shear_nu 5e-3, convective_kappa 1); the truth's convection
# also differs in its closure: switched on at any inversion between neighbouring levels, every
# substep; the model's ramps with the penetrative inversion, once a day.
TRUTH_COEFFICIENTS = {
    "nu_m": 8.0e4,
    "nu_t": 2.5e3,
    "kappa_v": 3.0e-4,
    "nu_v": 5.0e-3,
    "heat_restoring": 30.0,
    "bottom_drag": 5.0e-4,
    "convective_kappa": 0.1,
    "shear_nu": 1.0e-2,
}


# What the primitive truth's surface heat flux restores toward (`TruthSpec.heat_target`).
HEAT_TARGETS = ("offset", "t2m")


@dataclasses.dataclass(frozen=True)
class TruthSpec:
    """What the truth ocean contains (every field with its unit).

    Attributes:
      mode: physics of the truth, ``"primitive"`` (twin v2, default) or ``"paper"`` (the older
        truth: the model's paper physics + `surface_closure`, on the model grid).
      resolution_deg: grid spacing (deg) of the truth; a multiple of 1.5 no coarser than the
        model grid, coarse-grained onto it. None: the model grid itself (no coarse-graining).
      coefficients: truth physics coefficients (SI); only those the mode uses are passed.
      substep_s: length (s) of one truth substep; must divide a day. Daily means average the
        states after every substep. None: 7200 in primitive mode (12 a day; the model's own
        primitive default is 3600), 3600 in paper mode (the interval at which the closure and
        tracer correction are interleaved with the physics, well inside the inertial period).
      polar_filter_lat_deg: polar-filter cutoff (deg) of the primitive truth (model default 60).
      barotropic_cfl: Courant number of the primitive truth's barotropic subcycle (model default
        0.5).
      eos: equation of state of the primitive truth (`physics.eos.EOS_NAMES`).
      drag_coefficient: wind-stress drag coefficient (dimensionless; both modes).
      convective_ramp_kg_m3: `PrimitiveTerms.convective_ramp_kg_m3` of the primitive truth:
        0, convective mixing switched fully on at any inversion (the model's default ramps it
        over 0.3 kg/m^3 so that its loss is smooth in the coefficients).
      ekman_depth_m: e-folding depth (m) of the wind-stress acceleration (paper mode).
      drag_days: linear drag time scale (days) of the currents (paper mode).
      heat_depth_m: e-folding depth (m) of the mixed-layer heat restoring (paper mode) and of the
        surface salinity restoring (both modes).
      heat_restoring_days: time scale (days) of the surface heat restoring toward
        ``sst_clim + (t2m - t2m_clim)`` (paper mode).
      heat_target: what the primitive truth's surface heat flux ``heat_restoring x (target -
        T_top)`` restores toward. ``"offset"`` (default): the air temperature plus the
        climatological SST - t2m offset of the day, ``sst_clim + (t2m - t2m_clim)`` (COADS, degC),
        so the flux is zero for a climatological sea under climatological air and follows the
        air's anomaly. ``"t2m"``: the 2 m air temperature itself (the truth before the offset:
        1-2 K too cold over open water and down to -30 degC over sea ice, held only by the
        freezing clamp).
      salinity_restoring_days: time scale (days) of surface salinity restoring toward the
        climatology (both modes; decays with depth like the heat restoring).
      interior_restoring_days: time scale (days) of the restoring of T and S at every level
        toward the climatology (both modes).
    """

    mode: str = "primitive"
    resolution_deg: float | None = None
    coefficients: tuple[tuple[str, float], ...] = tuple(TRUTH_COEFFICIENTS.items())
    substep_s: float | None = None
    polar_filter_lat_deg: float = 70.0
    barotropic_cfl: float = 0.35
    eos: str = "teos10"
    drag_coefficient: float = 1.3e-3
    convective_ramp_kg_m3: float = 0.0
    ekman_depth_m: float = 40.0
    drag_days: float = 4.0
    heat_depth_m: float = 30.0
    heat_restoring_days: float = 15.0
    heat_target: str = "offset"
    salinity_restoring_days: float = 90.0
    interior_restoring_days: float = 730.0

    def __post_init__(self):
        if self.mode not in ("paper", "primitive"):
            raise ConfigError(f"truth mode must be 'paper' or 'primitive', got {self.mode!r}")
        if self.heat_target not in HEAT_TARGETS:
            raise ConfigError(f"truth heat_target must be one of {list(HEAT_TARGETS)}, got "
                              f"{self.heat_target!r}")
        skip = ("mode", "coefficients", "eos", "resolution_deg", "substep_s",
                "convective_ramp_kg_m3", "heat_target")
        if not float(self.convective_ramp_kg_m3) >= 0:
            raise ConfigError(
                f"truth convective_ramp_kg_m3 must be >= 0, got {self.convective_ramp_kg_m3}")
        for f in dataclasses.fields(self):
            if f.name in skip:
                continue
            if not float(getattr(self, f.name)) > 0:
                raise ConfigError(f"truth {f.name} must be > 0, got {getattr(self, f.name)}")
        if self.substep_s is not None:
            n = SECONDS_PER_DAY / float(self.substep_s)
            if not float(self.substep_s) > 0 or abs(n - round(n)) > 1e-9:
                raise ConfigError(
                    f"truth substep_s must divide a day (86400 s), got {self.substep_s}")
        if self.resolution_deg is not None and not float(self.resolution_deg) > 0:
            raise ConfigError(f"truth resolution_deg must be > 0, got {self.resolution_deg}")
        if self.mode == "paper" and self.resolution_deg is not None:
            raise ConfigError("the paper-mode truth runs on the model grid (resolution_deg=None)")
        if not 0.0 < float(self.barotropic_cfl) <= 1.0:
            raise ConfigError(f"truth barotropic_cfl must be in (0, 1], got {self.barotropic_cfl}")

    @property
    def dt_s(self) -> float:
        """The substep (s), with the mode's default resolved."""
        if self.substep_s is not None:
            return float(self.substep_s)
        return 7200.0 if self.mode == "primitive" else 3600.0

    @property
    def n_substeps(self) -> int:
        return int(round(SECONDS_PER_DAY / self.dt_s))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A twin dataset: grid, years per split, spin-up, truth and forcing noise.

    Attributes:
      resolution_deg: model grid spacing (deg; a multiple of 1.5).
      n_levels: number of GLORYS levels (first n).
      train_years, valid_years, test_years: calendar years per split; together consecutive.
      spinup_days: days run before the first year (climatological forcing of the year before
        plus noise) so the currents exist and the state is near the truth's own climate.
      truth: the truth model (its own grid: `TruthSpec.resolution_deg`).
      noise: synoptic forcing noise (None: none).
      chunk_days: days per compiled scan (memory vs. dispatch overhead).
      freshwater: also synthesise ERA5's evaporation ``e`` and precipitation ``tp``
        (`forcing.freshwater_daily`), store them as the layout's freshwater channels, and let the
        truth's salinity feel them (primitive mode's ``freshwater_flux: e_minus_p``; the
        primitive truth only).
    """

    resolution_deg: float = 6.0
    n_levels: int = 23
    train_years: tuple[int, ...] = (1983, 1984)
    valid_years: tuple[int, ...] = (1985,)
    test_years: tuple[int, ...] = (1986,)
    spinup_days: int = 60
    truth: TruthSpec = TruthSpec(resolution_deg=3.0)
    noise: NoiseSpec | None = NoiseSpec()
    chunk_days: int = 61
    freshwater: bool = False

    def __post_init__(self):
        years = self.years
        if not self.train_years:
            raise ConfigError("a dataset needs at least one training year")
        if list(years) != list(range(years[0], years[0] + len(years))):
            raise ConfigError(
                f"split years must be consecutive train -> valid -> test, got {list(years)}"
            )
        if self.spinup_days < 0 or self.chunk_days < 1:
            raise ConfigError(
                f"spinup_days must be >= 0 and chunk_days >= 1, got {self.spinup_days}, "
                f"{self.chunk_days}"
            )
        if not isinstance(self.freshwater, bool):
            raise ConfigError(f"freshwater must be true or false, got {self.freshwater!r}")
        if self.freshwater and self.truth.mode != "primitive":
            raise ConfigError("freshwater: the paper-mode truth has no surface salt flux; use the "
                              "primitive truth")
        tr = self.truth.resolution_deg
        if tr is not None and float(tr) > float(self.resolution_deg) + 1e-9:
            raise ConfigError(
                f"truth resolution {tr} deg is coarser than the model grid {self.resolution_deg}")

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(self.train_years) + tuple(self.valid_years) + tuple(self.test_years)

    @property
    def truth_resolution_deg(self) -> float:
        tr = self.truth.resolution_deg
        return float(self.resolution_deg if tr is None else tr)

    def split_of(self, year: int) -> str:
        for name in ("train", "valid", "test"):
            if year in getattr(self, f"{name}_years"):
                return name
        raise ConfigError(f"year {year} is in no split")


_DEMO = DatasetSpec(
    resolution_deg=6.0,
    n_levels=23,
    train_years=(1983, 1984),
    valid_years=(1985,),
    test_years=(1986,),
    spinup_days=90,
    truth=TruthSpec(resolution_deg=3.0),
)

PRESETS: dict[str, DatasetSpec] = {
    # The demo grid (6 deg x 23 GLORYS levels) from a 3 deg primitive-equation truth: 2 training
    # years, one validation and one test year; minutes on a 2-core CPU (README/BENCHMARKS).
    "demo": _DEMO,
    # The skill benchmark's dataset (benchmarks/bench_skill.py): the demo grid and truth with
    # 6 training years, one validation and one held-out test year.
    "skill": dataclasses.replace(_DEMO, train_years=tuple(range(1983, 1989)), valid_years=(1989,),
                                 test_years=(1990,), spinup_days=180),
    # The real resolution and levels, the eleven FNOC years (leap years 1984, 1988, 1992). A truth
    # twice as fine (0.75 deg) does not exist here: the embedded world is 1.5 deg, and it would
    # cost ~16x the 1.5 deg truth (4x the cells, half the substep). So the truth runs on the model
    # grid itself (1.5 deg, no coarse-graining); it still differs from the model in physics,
    # numerics and coefficients.
    "twin": DatasetSpec(
        resolution_deg=1.5,
        n_levels=23,
        train_years=tuple(range(1982, 1990)),
        valid_years=(1990, 1991),
        test_years=(1992,),
        spinup_days=365,
        # The truth's 7200 s default substep exceeds its stability limit at 1.5 deg (2727 s with
        # its coefficients); 2400 s (36 a day) is inside it and differs from the model's 3600 s.
        truth=TruthSpec(resolution_deg=1.5, substep_s=2400.0),
        chunk_days=31,
    ),
}


def spec_dict(spec: DatasetSpec) -> dict:
    """`spec` as plain data (what ``spec.json`` holds; the truth coefficients as a mapping)."""
    d = dataclasses.asdict(spec)
    d["truth"]["coefficients"] = dict(spec.truth.coefficients)
    return d


def resolve_spec(preset_or_spec: str | DatasetSpec) -> DatasetSpec:
    """A name of `PRESETS` or a `DatasetSpec` -> the `DatasetSpec`."""
    if isinstance(preset_or_spec, str):
        if preset_or_spec not in PRESETS:
            raise ConfigError(f"unknown preset {preset_or_spec!r}; known: {sorted(PRESETS)}")
        return PRESETS[preset_or_spec]
    return preset_or_spec
