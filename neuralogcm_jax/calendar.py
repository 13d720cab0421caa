"""The calendar: day-of-year indices, year lengths and dates, in one place.

A day of year is a 0-based index: 0 is 1 January, 364 is 31 December of a common year and 365
exists only in leap years (31 December). Years are proleptic Gregorian.

Where the year is known (the data pipeline, the dataset writers) the calendar is exact. A model
stepping forward from a day-of-year index alone does not know the year: index 364 is 31 December
of a common year (followed by 0) or 30 December of a leap year (followed by 365); `next_doy`
takes 0, the common case, whose climatology differs from day 365's by one day of seasonal cycle.
Pass the next day's index explicitly where that matters.

`next_doy` and `doy_sequence` use array operators only, so they take NumPy or JAX arrays (also
inside `jax.jit`) and this module needs no JAX.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import datetime
from typing import Any

import numpy as np

Array = Any

DAYS_IN_COMMON_YEAR = 365
DAYS_IN_LEAP_YEAR = 366
DAYS_IN_CLIMATOLOGY = DAYS_IN_LEAP_YEAR  # a climatology has one entry per possible index


def is_leap(year: int) -> bool:
    """Whether `year` is a (proleptic Gregorian) leap year."""
    return _stdlib_calendar.isleap(int(year))


def days_in_year(year: int) -> int:
    """365, or 366 in a leap year."""
    return DAYS_IN_LEAP_YEAR if is_leap(year) else DAYS_IN_COMMON_YEAR


def month_lengths(year: int) -> np.ndarray:
    """``[12]`` days in each month of `year`."""
    return np.array([_stdlib_calendar.monthrange(int(year), m)[1] for m in range(1, 13)])


def iso_date(year: int, doy: int) -> str:
    """``YYYY-MM-DD`` of day-of-year index `doy` in `year`."""
    return (datetime.date(int(year), 1, 1) + datetime.timedelta(days=int(doy))).isoformat()


def year_dates(year: int) -> list[np.datetime64]:
    """The `np.datetime64` day of every day of `year`."""
    start = np.datetime64(f"{int(year):04d}-01-01", "D")
    return [start + np.timedelta64(t, "D") for t in range(days_in_year(year))]


def next_doy(doy: Array) -> Array:
    """Day-of-year index of the following day, without knowing the year (364 and 365 are
    followed by 0; see the module docstring)."""
    return (doy + 1) * (doy < DAYS_IN_COMMON_YEAR - 1)


def doy_sequence(doy0: Array, steps: int) -> Array:
    """``[..., steps + 1]`` day-of-year indices of the days 0..steps from ``doy0 [...]``,
    counted with `next_doy`."""
    k = np.arange(steps + 1, dtype=np.int32)
    # 365 (31 Dec of a leap year) counts on like 364: both are followed by 0
    base = doy0 - (doy0 > DAYS_IN_COMMON_YEAR - 1)
    seq = (base[..., None] + k) % DAYS_IN_COMMON_YEAR
    return seq + (k == 0) * (doy0 - base)[..., None]
