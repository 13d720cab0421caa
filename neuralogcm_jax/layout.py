"""The channel layout: which channel is which variable and level, in one place.

The NeuralOGCM files hold, per day, ``C = 4 L + 1 + 4`` channels (97 for L = 23):

====================  ==========================================
channels              variable
====================  ==========================================
``0 .. L-1``          S, salinity (psu), level 0 .. L-1
``L .. 2L-1``         U, zonal velocity (m/s)
``2L .. 3L-1``        V, meridional velocity (m/s, northward)
``3L .. 4L-1``        T, potential temperature (degC)
``4L``                SSH, sea surface height (m)
``4L+1 .. 4L+4``      forcing: u10, v10 (m/s), t2m (K), msl (Pa)
``4L+5 .. 4L+6``      optional freshwater forcing: e, tp (m of water a day)
====================  ==========================================

The first ``4 L + 1`` channels are the ocean state (`n_ocean`, 93), the rest the forcing: the
four of the NeuralOGCM files, and, in a layout with freshwater (``ChannelLayout(...,
freshwater=True)``, 99 channels for 23 levels), ERA5's evaporation ``e`` and total precipitation
``tp`` as the day's totals in metres of water, in ECMWF's sign convention (``e`` is negative where
water evaporates, ``tp`` >= 0). `to_forcing` turns them into the physics' rates
(`Forcing.evaporation = -e / 86400`, `Forcing.precipitation = tp / 86400`, m/s).
`OceanState` and `Forcing` are the structured views the physics works on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.errors import LayoutError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M

Array = Any

OCEAN_3D_VARIABLES = ("S", "U", "V", "T")
FORCING_VARIABLES = ("u10", "v10", "t2m", "msl")  # always there
FRESHWATER_VARIABLES = ("e", "tp")  # optional (`ChannelLayout.freshwater`)
UNITS = {
    "S": "psu", "U": "m/s", "V": "m/s", "T": "degC", "SSH": "m",
    "u10": "m/s", "v10": "m/s", "t2m": "K", "msl": "Pa", "e": "m/day", "tp": "m/day",
}


class OceanState(NamedTuple):
    """The prognostic ocean state. 3-D fields ``[..., L, H, W]``, ssh ``[..., H, W]``.

    Physical units inside the physics (m/s, degC, psu, m); normalised anomalies outside.
    """

    u: Array  # zonal velocity, eastward
    v: Array  # meridional velocity, northward (whatever the row orientation)
    T: Array  # potential temperature
    S: Array  # salinity
    ssh: Array  # sea surface height


class Forcing(NamedTuple):
    """Atmospheric forcing at the surface, each ``[..., H, W]``.

    The four channels of the data format (`FORCING_VARIABLES`) are always there; the freshwater
    fluxes are optional fields (None: absent; filled from the ``e`` and ``tp`` channels of a
    layout with freshwater), read only by primitive mode's ``freshwater_flux: e_minus_p``."""

    u10: Array  # 10 m zonal wind (m/s)
    v10: Array  # 10 m meridional wind (m/s)
    t2m: Array  # 2 m air temperature (K)
    msl: Array  # mean sea-level pressure (Pa)
    evaporation: Array | None = None  # fresh water leaving the sea (m/s, >= 0 evaporates)
    precipitation: Array | None = None  # fresh water reaching the sea (m/s, rain and snow)


@dataclasses.dataclass(frozen=True)
class ChannelLayout:
    """Channel <-> variable mapping for any list of depth levels (23 GLORYS levels by default),
    with or without the freshwater forcing channels ``e`` and ``tp`` (`freshwater`)."""

    depths_m: tuple[float, ...] = GLORYS23_DEPTHS_M
    freshwater: bool = False

    def __post_init__(self):
        object.__setattr__(self, "depths_m", tuple(float(d) for d in self.depths_m))
        if len(self.depths_m) == 0:
            raise LayoutError("a channel layout needs at least one depth level")
        if not isinstance(self.freshwater, (bool, np.bool_)):
            raise LayoutError(f"freshwater must be true or false, got {self.freshwater!r}")
        object.__setattr__(self, "freshwater", bool(self.freshwater))

    @classmethod
    def with_levels(cls, n_levels_or_depths: int | Sequence[float], *,
                    freshwater: bool = False) -> ChannelLayout:
        """The first ``n`` GLORYS levels, or explicit depths."""
        if isinstance(n_levels_or_depths, int):
            return cls(GLORYS23_DEPTHS_M[:n_levels_or_depths], freshwater)
        return cls(tuple(n_levels_or_depths), freshwater)

    @classmethod
    def from_forcing_variables(cls, depths_m: Sequence[float],
                               names: Sequence[str]) -> ChannelLayout:
        """The layout whose forcing channels are `names` (`forcing_variables` of a stored layout:
        the four of `FORCING_VARIABLES`, or those and `FRESHWATER_VARIABLES`)."""
        names = tuple(str(n) for n in names)
        for fw in (False, True):
            if names == FORCING_VARIABLES + (FRESHWATER_VARIABLES if fw else ()):
                return cls(tuple(depths_m), fw)
        raise LayoutError(
            f"forcing channels {list(names)}: known are {list(FORCING_VARIABLES)}, optionally "
            f"followed by {list(FRESHWATER_VARIABLES)}")

    @property
    def forcing_variables(self) -> tuple[str, ...]:
        """The forcing channels' names, in order."""
        return FORCING_VARIABLES + (FRESHWATER_VARIABLES if self.freshwater else ())

    # -- sizes
    @property
    def n_levels(self) -> int:
        return len(self.depths_m)

    @property
    def n_ocean(self) -> int:
        """Ocean channels: S, U, V, T at every level, then SSH (93 for 23 levels)."""
        return 4 * self.n_levels + 1

    @property
    def n_forcing(self) -> int:
        """Forcing channels: 4, or 6 with freshwater."""
        return len(self.forcing_variables)

    @property
    def n_channels(self) -> int:
        return self.n_ocean + self.n_forcing

    # -- indices
    def var_slice(self, var: str) -> slice:
        """Channel slice of one variable (`S`, `U`, `V`, `T`, `SSH` or a forcing name)."""
        L = self.n_levels
        if var in OCEAN_3D_VARIABLES:
            k = OCEAN_3D_VARIABLES.index(var)
            return slice(k * L, (k + 1) * L)
        if var == "SSH":
            return slice(4 * L, 4 * L + 1)
        if var in self.forcing_variables:
            k = self.n_ocean + self.forcing_variables.index(var)
            return slice(k, k + 1)
        if var in FRESHWATER_VARIABLES:
            raise LayoutError(
                f"variable {var!r} is a freshwater forcing channel; this layout has none "
                f"(forcing {list(self.forcing_variables)})")
        raise LayoutError(f"unknown variable {var!r}; known: {self.variables}")

    def channel(self, var: str, level: int = 0) -> int:
        s = self.var_slice(var)
        if not 0 <= level < s.stop - s.start:
            raise LayoutError(f"level {level} out of range for {var} ({s.stop - s.start} levels)")
        return s.start + level

    @property
    def variables(self) -> tuple[str, ...]:
        return OCEAN_3D_VARIABLES + ("SSH",) + self.forcing_variables

    @property
    def channel_names(self) -> list[str]:
        names = [f"{v}_{d:g}m" for v in OCEAN_3D_VARIABLES for d in self.depths_m]
        return names + ["SSH"] + list(self.forcing_variables)

    def describe(self) -> str:
        """``"23 levels, forcing u10 v10 t2m msl e tp (99 channels)"``."""
        return (f"{self.n_levels} levels, forcing {' '.join(self.forcing_variables)} "
                f"({self.n_channels} channels)")

    @property
    def channel_variable(self) -> np.ndarray:
        """``[n_channels]`` int: index into `variables` of each channel."""
        out = np.empty(self.n_channels, dtype=np.int32)
        for i, v in enumerate(self.variables):
            out[self.var_slice(v)] = i
        return out

    @property
    def channel_level(self) -> np.ndarray:
        """``[n_channels]`` int: level of each channel (0 for 2-D ones)."""
        out = np.zeros(self.n_channels, dtype=np.int32)
        for v in OCEAN_3D_VARIABLES:
            out[self.var_slice(v)] = np.arange(self.n_levels)
        return out

    # -- checks
    def check(self, x: Array, *, channels: str = "all", where: str = "array") -> None:
        """Raise `LayoutError` unless ``x`` is ``[..., C, H, W]`` with the expected C.

        `channels`: "all" (97, or 99 with freshwater), "ocean" (93) or "forcing" (4 or 6)."""
        expected = {"all": self.n_channels, "ocean": self.n_ocean, "forcing": self.n_forcing}[
            channels
        ]
        shape = tuple(np.shape(x))
        if len(shape) < 3 or shape[-3] != expected:
            raise LayoutError(
                f"{where} has shape {shape}; expected [..., {expected}, lat, lon] "
                f"({channels} channels of a {self.n_levels}-level layout)"
            )

    # -- channels <-> structures (work on numpy and jax arrays alike)
    def to_state(self, x: Array) -> OceanState:
        """``[..., n_ocean or n_channels, H, W]`` -> `OceanState` (forcing channels ignored)."""
        shape = tuple(np.shape(x))
        if len(shape) < 3 or shape[-3] not in (self.n_ocean, self.n_channels):
            raise LayoutError(
                f"state array has shape {shape}; expected [..., {self.n_ocean} or "
                f"{self.n_channels}, lat, lon] for a {self.n_levels}-level layout"
            )
        return OceanState(
            u=x[..., self.var_slice("U"), :, :],
            v=x[..., self.var_slice("V"), :, :],
            T=x[..., self.var_slice("T"), :, :],
            S=x[..., self.var_slice("S"), :, :],
            ssh=x[..., self.channel("SSH"), :, :],
        )

    def from_state(self, state: OceanState) -> Array:
        """`OceanState` -> ``[..., n_ocean, H, W]`` in channel order."""
        xp = _namespace(state.u)
        return xp.concatenate(
            [state.S, state.u, state.v, state.T, state.ssh[..., None, :, :]], axis=-3
        )

    def to_forcing(self, x: Array) -> Forcing:
        """``[..., n_forcing or n_channels, H, W]`` (physical units) -> `Forcing`; with
        freshwater, ``e`` and ``tp`` (m a day, ECMWF signs) become `Forcing.evaporation` and
        `Forcing.precipitation` (m/s, both >= 0 where water leaves resp. reaches the sea)."""
        shape = tuple(np.shape(x))
        if len(shape) < 3 or shape[-3] not in (self.n_forcing, self.n_channels):
            raise LayoutError(
                f"forcing array has shape {shape}; expected [..., {self.n_forcing} or "
                f"{self.n_channels}, lat, lon] ({self.describe()})"
            )
        off = shape[-3] - self.n_forcing
        base = (x[..., off + k, :, :] for k in range(len(FORCING_VARIABLES)))
        if not self.freshwater:
            return Forcing(*base)
        e = x[..., off + self.n_forcing - 2, :, :]
        tp = x[..., off + self.n_forcing - 1, :, :]
        return Forcing(*base, evaporation=-e / SECONDS_PER_DAY,
                       precipitation=tp / SECONDS_PER_DAY)

    def from_forcing(self, forcing: Forcing) -> Array:
        """`Forcing` -> ``[..., n_forcing, H, W]`` (the inverse of `to_forcing`)."""
        xp = _namespace(forcing.u10)
        fields = [getattr(forcing, k) for k in FORCING_VARIABLES]
        if self.freshwater:
            if forcing.evaporation is None or forcing.precipitation is None:
                raise LayoutError("this layout has freshwater channels (e, tp) but the forcing "
                                  "has no evaporation and precipitation")
            fields += [-forcing.evaporation * SECONDS_PER_DAY,
                       forcing.precipitation * SECONDS_PER_DAY]
        return xp.stack(fields, axis=-3)

    def wet_channels(self, wet: np.ndarray) -> np.ndarray:
        """``[n_channels, H, W]`` bool mask from a grid's ``[L, H, W]`` wet mask.

        3-D variables take their level's mask, SSH the surface mask, forcing is everywhere valid."""
        wet = np.asarray(wet, dtype=bool)
        if wet.ndim != 3 or wet.shape[0] != self.n_levels:
            raise LayoutError(
                f"wet mask has shape {wet.shape}; expected [{self.n_levels}, lat, lon]"
            )
        surf = wet[:1]
        forcing = np.ones((self.n_forcing,) + wet.shape[1:], dtype=bool)
        return np.concatenate([wet, wet, wet, wet, surf, forcing], axis=0)


def _namespace(x):
    if isinstance(x, np.ndarray):
        return np
    # imported here, not at the top: every `neuralogcm CMD --help` imports this module and
    # must not import JAX
    import jax.numpy as jnp

    return jnp
