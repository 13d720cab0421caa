"""Trajectories as `xarray.Dataset`s with named variables, levels, lat, lon and time (xarray extra).

    ds = to_xarray(traj, stats, grid, doys, time0="2020-01-02")   # physical units

Anomalies are turned into physical units with the day-of-year climatology; land is NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import NeuralOGCMError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OCEAN_3D_VARIABLES, UNITS

LONG_NAMES = {
    "S": "salinity", "U": "eastward sea water velocity", "V": "northward sea water velocity",
    "T": "sea water potential temperature", "SSH": "sea surface height above geoid",
}


def _xarray():
    try:
        import xarray as xr  # optional dependency (the xarray extra)
    except ImportError:
        raise NeuralOGCMError(
            "xarray is not installed: `pip install neuralogcm_jax[xarray]`"
        ) from None
    return xr


def to_xarray(traj, stats: Stats, grid: Grid, doys, time0=None, physical: bool = True):
    """``[T, n_ocean, H, W]`` anomalies of days with day-of-year indices `doys` ``[T]`` ->
    Dataset with S, U, V, T ``(time, depth, lat, lon)`` and SSH ``(time, lat, lon)``.

    `time0`: date of the first entry (anything numpy.datetime64 accepts); None gives a lead axis
    in days instead."""
    xr = _xarray()
    traj = np.asarray(traj, dtype=np.float32)
    lay = stats.layout
    n = lay.n_ocean
    if physical:
        clim = np.stack([stats.clim_at(int(d)) for d in np.asarray(doys)])
        x = traj * stats.std[:n, None, None] + stats.mean[:n, None, None] + clim
        x = np.where(stats.wet, x, np.nan)
    else:
        x = np.where(stats.wet, traj, np.nan)
    T = x.shape[0]
    if time0 is None:
        time = ("lead", np.arange(T))
        tdim = "lead"
    else:
        t0 = np.datetime64(time0, "D")
        time = ("time", t0 + np.arange(T).astype("timedelta64[D]"))
        tdim = "time"
    coords = {tdim: time[1], "depth": np.asarray(grid.depth), "lat": grid.lat, "lon": grid.lon}
    data_vars = {}
    for v in OCEAN_3D_VARIABLES:
        data_vars[v] = ((tdim, "depth", "lat", "lon"), x[:, lay.var_slice(v)],
                        {"units": UNITS[v] if physical else "1", "long_name": LONG_NAMES[v]})
    data_vars["SSH"] = ((tdim, "lat", "lon"), x[:, lay.channel("SSH")],
                        {"units": UNITS["SSH"] if physical else "1", "long_name": LONG_NAMES["SSH"]})
    ds = xr.Dataset(data_vars, coords=coords)
    ds["depth"].attrs.update(units="m", positive="down")
    ds["lat"].attrs.update(units="degrees_north")
    ds["lon"].attrs.update(units="degrees_east")
    return ds


def trajectories_to_netcdf(path: Path, trajectories: dict[str, np.ndarray], data, init: int) -> Path:
    """One netCDF group-free file with a `model` dimension: every trajectory from day `init`."""
    xr = _xarray()
    names = list(trajectories)
    T = next(iter(trajectories.values())).shape[0]
    doys = data.doy[init + 1 : init + 1 + T]
    dss = [to_xarray(trajectories[k], data.stats, data.grid, doys) for k in names]
    ds = xr.concat(dss, dim="model").assign_coords(model=names)
    ds.attrs["initial_day_index"] = int(init)
    ds.to_netcdf(path)
    return Path(path)
