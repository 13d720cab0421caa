"""Daily atmospheric forcing synthesised from the embedded world's monthly fields.

The forcing of calendar day ``t`` of year ``Y`` (fields ``[4, H, W]``: u10, v10 in m/s, t2m in K,
msl in Pa, the order of `neuralogcm_jax.layout.FORCING_VARIABLES`) is the sum of

1. the COADS monthly climatology, interpolated linearly in time between mid-month values
   (periodic over the year, months centred on their 15th-16th day);
2. for u10/v10 in the FNOC years 1982-1992, the FNOC monthly wind anomaly (month of ``Y`` minus
   the 1982-1992 mean of that calendar month), interpolated the same way. This carries real
   interannual variability (El Nino 1982-83 and 1986-87, ...). Outside 1982-1992 the anomaly is 0;
3. synoptic noise (`SynopticNoise`): a smooth, isotropic random field on the sphere, red in
   time. Each variable's noise is a sum of `n_modes` plane waves ``cos(k . r)``, ``sin(k . r)`` in
   3-D space (``r`` on the sphere of radius R, ``|k| = 2 pi / lambda`` with wavelengths drawn
   uniformly in `wavelength_km`), whose amplitudes follow independent AR(1) processes
   ``a(t+1) = rho a(t) + sqrt(1 - rho^2) eps``, ``rho = exp(-1 day / decorrelation_days)``. The
   field is stationary in time and homogeneous on the sphere (no seam at the dateline or poles),
   with the standard deviation `amplitude` at every point.

Defaults: decorrelation 3 days; wavelengths 2000-6000 km; amplitudes u10, v10 3 m/s, t2m 2 K,
msl 500 Pa (about half the day-to-day synoptic variability of mid-latitude weather).

Optionally (`ForcingSynthesizer(..., freshwater=True)`, the twins' ``freshwater``), the freshwater
channels ``e`` and ``tp`` of `neuralogcm_jax.layout` (the day's totals in m of water, ECMWF's
signs), from `freshwater_daily`: evaporation by a bulk formula of each day's wind, air temperature
and climatological SST, precipitation a zonal profile (an ITCZ following the seasons, two storm
tracks) scaled so that the ocean's E - P integrates to zero every day.

Everything is numpy float64 and deterministic from the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neuralogcm_jax.calendar import days_in_year, month_lengths
from neuralogcm_jax.constants import (
    EARTH_RADIUS_M,
    KELVIN_OFFSET,
    RHO_AIR_KG_M3,
    SECONDS_PER_DAY,
)
from neuralogcm_jax.data.world import FNOC_FIRST_YEAR, FNOC_N_MONTHS, SURFACE_VARIABLES, World
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.layout import FORCING_VARIABLES

# The bulk evaporation of `freshwater_daily`, E = rho_air C_E max(|U10|, U_min) (q_sat(SST) -
# RH q_sat(t2m)) / rho_water (the form of the Large-Yeager bulk formulae, constant coefficients).
EVAPORATION_DALTON = 1.2e-3  # C_E, dimensionless
EVAPORATION_RELATIVE_HUMIDITY = 0.8  # of the 2 m air
EVAPORATION_MIN_WIND_M_S = 1.0  # gustiness floor
RHO_FRESH_WATER_KG_M3 = 1000.0


def saturation_humidity(T_c, p_pa):
    """Saturation specific humidity (kg/kg) at `T_c` degC and pressure `p_pa` (Bolton 1980's
    vapour pressure ``611.2 exp(17.67 T / (T + 243.5))`` Pa over water)."""
    e_s = 611.2 * np.exp(17.67 * T_c / (T_c + 243.5))
    return 0.622 * e_s / (p_pa - 0.378 * e_s)


def freshwater_daily(world: World, forcing: np.ndarray, sst_clim: np.ndarray,
                     first_doy: int = 0, year_days: int = 365) -> np.ndarray:
    """``[T, 2, H, W]``: the channels ``e`` and ``tp`` (m of water a day, ECMWF's signs: ``e``
    <= 0) of `T` days from `forcing` ``[T, 4, H, W]`` (u10, v10, t2m, msl) and the climatological
    SST ``[T, H, W]`` (degC) on `world`'s grid.

    Evaporation: the bulk formula above (never negative; over land the air temperature stands in
    for the SST, which the ocean never sees). Precipitation: ``1 + 8 exp(-((lat - lat_itcz) /
    7)^2) + 3 (exp(-((lat - 45) / 12)^2) + exp(-((lat + 45) / 12)^2))`` with the ITCZ at ``6 + 6
    sin(2 pi (doy - 105) / year_days)`` deg, scaled each day so that the ocean-area integral of
    precipitation equals that of evaporation (no net freshwater: the salt stays closed)."""
    g = world.grid
    f = np.asarray(forcing, np.float64)
    wind = np.maximum(np.hypot(f[:, 0], f[:, 1]), EVAPORATION_MIN_WIND_M_S)
    t_air = f[:, 2] - KELVIN_OFFSET
    sst = np.where(np.asarray(g.wet[0])[None], np.asarray(sst_clim, np.float64), t_air)
    dq = saturation_humidity(sst, f[:, 3]) - EVAPORATION_RELATIVE_HUMIDITY * saturation_humidity(
        t_air, f[:, 3])
    evap = np.maximum(RHO_AIR_KG_M3 * EVAPORATION_DALTON * wind * dq, 0.0)
    evap = evap / RHO_FRESH_WATER_KG_M3 * SECONDS_PER_DAY  # m a day
    doy = first_doy + np.arange(f.shape[0], dtype=np.float64)
    itcz = 6.0 + 6.0 * np.sin(2 * np.pi * (doy - 105.0) / year_days)
    lat = np.asarray(g.lat, np.float64)[None, :, None]
    bump = lambda centre, width: np.exp(-(((lat - centre) / width) ** 2))  # noqa: E731
    shape = (1.0 + 8.0 * bump(itcz[:, None, None], 7.0)
             + 3.0 * (bump(45.0, 12.0) + bump(-45.0, 12.0)))
    shape = np.broadcast_to(shape, evap.shape)
    ocean_area = np.broadcast_to(np.asarray(g.area, np.float64)[:, None], g.shape) * g.wet[0]
    scale = (np.einsum("thw,hw->t", evap, ocean_area)
             / np.einsum("thw,hw->t", shape, ocean_area))
    rain = shape * scale[:, None, None]
    return np.stack([-evap, rain], axis=1)


def month_centres(year: int) -> np.ndarray:
    """``[12]`` 0-based day-of-year (fractional) of the middle of each month of `year`."""
    lengths = month_lengths(year).astype(float)
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    return starts + 0.5 * lengths - 0.5  # daily means sit at day index + 0 (mid-day)


def monthly_weights(year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each day of `year`: the two bracketing months (offsets -1..12 relative to January
    of `year`) and the weight of the second. Returns ``(m0 [T], m1 [T], w1 [T])``."""
    n = days_in_year(year)
    c = month_centres(year)
    # Extend with December of the year before and January of the year after.
    prev_dec = c[0] - 0.5 * (31 + 31)
    next_jan = c[-1] + 0.5 * (31 + 31)
    centres = np.concatenate([[prev_dec], c, [next_jan]])
    d = np.arange(n, dtype=float)
    k = np.clip(np.searchsorted(centres, d, side="right") - 1, 0, 12)
    w1 = (d - centres[k]) / (centres[k + 1] - centres[k])
    return k - 1, k, w1  # months relative to January of `year` (-1 = previous December)


def climatological_daily(world: World, year: int) -> np.ndarray:
    """``[T, 5, H, W]`` the monthly surface climatology (`SURFACE_VARIABLES` order: u10, v10,
    t2m, msl, sst) interpolated linearly to each day of `year`."""
    m0, m1, w1 = monthly_weights(year)
    s = world.surface_monthly
    return (1 - w1)[:, None, None, None] * s[m0 % 12] + w1[:, None, None, None] * s[m1 % 12]


def fnoc_anomaly_daily(world: World, year: int) -> np.ndarray:
    """``[T, 2, H, W]`` FNOC monthly (u, v) wind anomaly interpolated to each day of `year`
    (0 for months outside Jan 1982 .. Dec 1992)."""
    f = world.fnoc_winds
    clim = f.reshape(FNOC_N_MONTHS // 12, 12, *f.shape[1:]).mean(axis=0)
    m0, m1, w1 = monthly_weights(year)

    def anomaly(rel_month: np.ndarray) -> np.ndarray:
        idx = (int(year) - FNOC_FIRST_YEAR) * 12 + rel_month
        inside = (idx >= 0) & (idx < FNOC_N_MONTHS)
        a = f[np.clip(idx, 0, FNOC_N_MONTHS - 1)] - clim[rel_month % 12]
        return np.where(inside[:, None, None, None], a, 0.0)

    return (1 - w1)[:, None, None, None] * anomaly(m0) + w1[:, None, None, None] * anomaly(m1)


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """Synoptic forcing noise (see module doc). Amplitudes are standard deviations in SI units."""

    amplitude: tuple[float, float, float, float] = (3.0, 3.0, 2.0, 500.0)  # u10, v10, t2m, msl
    decorrelation_days: float = 3.0
    wavelength_km: tuple[float, float] = (2000.0, 6000.0)
    n_modes: int = 48

    def __post_init__(self):
        if len(self.amplitude) != len(FORCING_VARIABLES) or min(self.amplitude) < 0:
            raise ConfigError(f"noise amplitude must be 4 values >= 0, got {self.amplitude}")
        if not self.decorrelation_days > 0:
            raise ConfigError(
                f"noise decorrelation_days must be > 0, got {self.decorrelation_days}"
            )
        lo, hi = self.wavelength_km
        if not 0 < lo <= hi:
            raise ConfigError(f"noise wavelength_km must be 0 < lo <= hi, got {self.wavelength_km}")
        if self.n_modes < 1:
            raise ConfigError(f"noise n_modes must be >= 1, got {self.n_modes}")


class SynopticNoise:
    """Red-in-time, smooth-in-space noise for the 4 forcing variables on one grid.

    `next_days(n)` returns ``[n, 4, H, W]`` and advances the AR(1) state, so successive calls
    continue one stationary process (across year ends)."""

    def __init__(self, lat_deg: np.ndarray, lon_deg: np.ndarray, spec: NoiseSpec, rng):
        self.spec = spec
        self.rng = rng
        nv, K = len(FORCING_VARIABLES), spec.n_modes
        lat = np.deg2rad(np.asarray(lat_deg))[:, None]
        lon = np.deg2rad(np.asarray(lon_deg))[None, :]
        r = EARTH_RADIUS_M * np.stack(
            np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat))
        ).reshape(3, -1)  # [3, HW] m
        direction = rng.standard_normal((nv, K, 3))
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        wavelength = 1e3 * rng.uniform(*spec.wavelength_km, size=(nv, K, 1))
        k = 2 * np.pi / wavelength * direction  # [nv, K, 3] 1/m
        phase = np.einsum("vkc,cp->vkp", k, r)  # [nv, K, HW]
        # cos and sin of each wave, with weight 1/sqrt(K): unit variance everywhere.
        self.basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) / np.sqrt(K)
        self.shape = (nv,) + (np.size(lat_deg), np.size(lon_deg))
        self.rho = float(np.exp(-1.0 / spec.decorrelation_days))
        self.coeff = rng.standard_normal((nv, 2 * K))  # stationary start
        self.amp = np.asarray(spec.amplitude, dtype=np.float64)

    def next_days(self, n: int) -> np.ndarray:
        """``[n, 4, H, W]`` noise of the next `n` days (float64, SI units)."""
        nv, K2 = self.coeff.shape
        eps = self.rng.standard_normal((n, nv, K2))
        coeffs = np.empty((n, nv, K2))
        a = self.coeff
        s = np.sqrt(1.0 - self.rho**2)
        for t in range(n):
            a = self.rho * a + s * eps[t]
            coeffs[t] = a
        self.coeff = a
        out = np.einsum("tvk,vkp->tvp", coeffs, self.basis)
        return (out * self.amp[None, :, None]).reshape((n,) + self.shape)


@dataclasses.dataclass
class YearForcing:
    """Forcing of one calendar year.

    Attributes:
      year: the calendar year.
      forcing: ``[T, 4, H, W]`` u10, v10 (m/s), t2m (K), msl (Pa) of each day (float32); with
        freshwater ``[T, 6, H, W]``, then e and tp (m of water a day, `freshwater_daily`).
      sst_clim: ``[T, H, W]`` climatological SST of each day (degC, COADS), for surface fluxes.
      t2m_clim: ``[T, H, W]`` climatological air temperature of each day (K).
      msl_clim: ``[T, H, W]`` climatological sea-level pressure of each day (Pa).
    """

    year: int
    forcing: np.ndarray
    sst_clim: np.ndarray
    t2m_clim: np.ndarray
    msl_clim: np.ndarray


class ForcingSynthesizer:
    """Daily forcing for consecutive years on one world (see module doc), from one seed."""

    def __init__(self, world: World, seed: int, noise: NoiseSpec | None = NoiseSpec(), *,
                 freshwater: bool = False):
        self.world = world
        self.noise_spec = noise
        self.freshwater = bool(freshwater)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF0C1]))
        g = world.grid
        self.noise = None if noise is None else SynopticNoise(g.lat, g.lon, noise, rng)

    def year(self, year: int, n_days: int | None = None) -> YearForcing:
        """The next year's forcing (call years in order: the noise continues across calls).

        `n_days` limits the days produced (default: the whole year)."""
        clim = climatological_daily(self.world, year)
        n = clim.shape[0] if n_days is None else int(n_days)
        clim = clim[:n]
        out = np.empty((n, len(FORCING_VARIABLES)) + self.world.grid.shape, dtype=np.float64)
        for c, name in enumerate(FORCING_VARIABLES):
            out[:, c] = clim[:, SURFACE_VARIABLES.index(name)]
        out[:, :2] += fnoc_anomaly_daily(self.world, year)[:n]
        if self.noise is not None:
            out += self.noise.next_days(n)
        sst_clim = clim[:, SURFACE_VARIABLES.index("sst")]
        if self.freshwater:  # e, tp from this forcing (noise included) and the SST climatology
            out = np.concatenate(
                [out, freshwater_daily(self.world, out, sst_clim, 0, days_in_year(year))], axis=1)
        return YearForcing(
            year=int(year),
            forcing=out.astype(np.float32),
            sst_clim=sst_clim.astype(np.float32),
            t2m_clim=clim[:, SURFACE_VARIABLES.index("t2m")].astype(np.float32),
            msl_clim=clim[:, SURFACE_VARIABLES.index("msl")].astype(np.float32),
        )
