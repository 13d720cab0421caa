"""Build the embedded 1.5 deg world (``world_1p5deg.npz``) from public data packages.

Run ``python -m neuralogcm_jax.data.embedded.build [--data DIR] [--out FILE]``. It needs, offline:

* the Debian package ``ferret-datasets`` (NOAA/PMEL, public domain) unpacked; by default it looks
  in ``$FERRET_DATA``, ``/usr/share/ferret-vis/data`` and
  ``/tmp/ferret/x/usr/share/ferret-vis/data``, and otherwise fetches it with ``apt-get download ferret-datasets`` and unpacks it with
  ``dpkg-deb -x`` (no install, no root);
* the PyPI package ``global-land-mask`` (MIT) and scipy.

What it derives (the full account is in SOURCES.md):

1. Ocean fraction of each 1.5 deg cell: the mean of the 30" GLOBE land/ocean mask over the
   180 x 180 samples inside the cell.
2. Bottom depth: the mean depth of the ETOPO5 (5') ocean samples inside the cell.
3. Wet masks: a cell is wet at level k if its ocean fraction >= 0.5 and its bottom depth exceeds
   the level's depth (every wet cell is at least `MIN_WET_DEPTH_M` deep); basins smaller than
   `world.MIN_BASIN_AREA_M2` are dropped (lakes, puddles); the Strait of Gibraltar is opened to
   its sill depth so the Mediterranean exchanges with the Atlantic (likewise Bab-el-Mandeb and
   Hormuz for the Red Sea and the Persian Gulf); one-cell pits below the surface are removed.
4. T and S (Levitus 1 deg annual mean): at each Levitus level the missing (land) points are filled
   with the nearest valid point, then interpolated linearly in depth to the GLORYS levels and
   bilinearly to the 1.5 deg cell centres; T is clipped at `T_MIN_DEGC`.
5. COADS (2 deg monthly climatology): u10, v10, air temperature (-> K), SLP (-> Pa), SST; each
   month's gaps (land, unsampled polar seas) are filled harmonically (Laplace's equation, started
   from the nearest valid value), then bilinear to the 1.5 deg centres.
6. FNOC (2.5 deg monthly 10 m winds 1982-1992, no gaps): bilinear to the 1.5 deg centres.

Packing: masks as packed bits, fractions as uint8/255, T and surface fields float16, salinity as
float16 anomaly about 35 psu, FNOC winds as int8 in steps of 0.2 m/s; savez_compressed.
"""

from __future__ import annotations

import argparse
import glob
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from neuralogcm_jax.data import world as W
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid

RES = W.BASE_RESOLUTION_DEG
H, WD = 120, 240
MIN_WET_DEPTH_M = 10.0
# Straits narrower than a cell that connect a marginal sea to the ocean: (name, lat, lon) of the
# 1.5 deg cell centres forced wet, and the sill depth (m) they get. Without them the
# Mediterranean, the Red Sea and the Persian Gulf would be closed lakes. (The Bosporus, 0.7 km
# wide, is left closed: a 150 km channel would overstate the Black Sea's exchange.)
STRAITS = (
    ("Gibraltar", 35.25, 354.75, 300.0),
    ("Bab-el-Mandeb", 12.75, 42.75, 150.0),
    ("Bab-el-Mandeb", 12.75, 44.25, 150.0),
    ("Hormuz", 24.75, 56.25, 80.0),
)
# Levitus's coldest water, after interpolation and float16 rounding, can sit a hair below the
# surface freezing point; clip there.
T_MIN_DEGC = -1.9

SEARCH_DIRS = (
    os.environ.get("FERRET_DATA", ""),
    "/usr/share/ferret-vis/data",
    "/tmp/ferret/x/usr/share/ferret-vis/data",
)


def find_ferret_data(explicit: str | None = None) -> pathlib.Path:
    """The folder holding the ferret-datasets netCDF files, fetched with apt if nowhere."""
    need = "levitus_climatology.cdf"
    for d in ([explicit] if explicit else []) + list(SEARCH_DIRS):
        if d and (pathlib.Path(d) / need).is_file():
            return pathlib.Path(d)
    if explicit:
        raise DataError(f"{explicit} does not contain {need}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ferret-"))
    print(f"fetching ferret-datasets into {tmp} (apt-get download)", file=sys.stderr)
    subprocess.run(["apt-get", "download", "ferret-datasets"], cwd=tmp, check=True)
    deb = glob.glob(str(tmp / "ferret-datasets_*.deb"))
    if not deb:
        raise DataError(f"apt-get download left no ferret-datasets_*.deb in {tmp}")
    subprocess.run(["dpkg-deb", "-x", deb[0], str(tmp / "x")], check=True)
    d = tmp / "x/usr/share/ferret-vis/data"
    if not (d / need).is_file():
        raise DataError(f"unpacked ferret-datasets has no {need} under {d}")
    return d


def _read(path: pathlib.Path, names: list[str]) -> dict[str, np.ndarray]:
    from scipy.io import netcdf_file  # optional dependency (the xarray and test extras)

    with netcdf_file(str(path), "r", mmap=False) as nc:
        out = {}
        for n in names:
            v = nc.variables[n]
            a = np.array(v.data, dtype=np.float64)
            fill = getattr(v, "missing_value", None)
            if fill is not None:
                a[np.isclose(a, float(fill), rtol=1e-6)] = np.nan
            out[n] = a
        return out


def target_centres() -> tuple[np.ndarray, np.ndarray]:
    g = Grid.regular(RES)
    return g.lat, g.lon


# ---------------------------------------------------------------------------- interpolation
def nearest_fill(a: np.ndarray) -> np.ndarray:
    """Fill NaNs of a 2-D field ``[ny, nx]`` (periodic in x) with the nearest valid value."""
    from scipy import ndimage  # optional dependency (the xarray and test extras)

    nx = a.shape[1]
    pad = nx // 2
    ap = np.concatenate([a[:, -pad:], a, a[:, :pad]], axis=1)
    bad = np.isnan(ap)
    if bad.all():
        raise DataError("cannot fill a field with no valid value")
    _, (jj, ii) = ndimage.distance_transform_edt(bad, return_indices=True)
    return ap[jj, ii][:, pad:pad + nx]


def harmonic_fill(a: np.ndarray, n_iter: int = 400) -> np.ndarray:
    """Fill NaNs of ``[ny, nx]`` (periodic in x) by relaxing Laplace's equation over the gaps,
    started from the nearest valid value; valid points are kept exactly."""
    bad = np.isnan(a)
    x = nearest_fill(a)
    if not bad.any():
        return x
    for _ in range(n_iter):
        up = np.concatenate([x[:1], x[:-1]])
        dn = np.concatenate([x[1:], x[-1:]])
        avg = 0.25 * (up + dn + np.roll(x, 1, 1) + np.roll(x, -1, 1))
        x = np.where(bad, avg, x)
    return x


def bilinear(a: np.ndarray, src_lat, src_lon, lat, lon) -> np.ndarray:
    """Bilinear interpolation of ``[..., ny, nx]`` on a regular periodic-in-lon source grid
    (`src_lat` increasing, `src_lon` uniform) to target centres ``lat [H]``, ``lon [W]``."""
    src_lat = np.asarray(src_lat)
    src_lon = np.asarray(src_lon)
    dlon = src_lon[1] - src_lon[0]
    fx = ((np.asarray(lon) - src_lon[0]) / dlon) % src_lon.size
    i0 = np.floor(fx).astype(int)
    wx = fx - i0
    i1 = (i0 + 1) % src_lon.size
    fy = np.interp(lat, src_lat, np.arange(src_lat.size))
    j0 = np.clip(np.floor(fy).astype(int), 0, src_lat.size - 2)
    wy = fy - j0
    j1 = j0 + 1
    a00 = a[..., j0[:, None], i0[None, :]]
    a01 = a[..., j0[:, None], i1[None, :]]
    a10 = a[..., j1[:, None], i0[None, :]]
    a11 = a[..., j1[:, None], i1[None, :]]
    wx = wx[None, :]
    wy = wy[:, None]
    return (1 - wy) * ((1 - wx) * a00 + wx * a01) + wy * ((1 - wx) * a10 + wx * a11)


# ---------------------------------------------------------------------------- pieces
def ocean_fraction() -> np.ndarray:
    """``[H, W]`` ocean fraction from the 30" GLOBE mask (True = ocean; rows from +90, columns
    from -180 deg)."""
    import global_land_mask  # optional dependency (the test extra)

    path = pathlib.Path(global_land_mask.__file__).with_name("globe_combined_mask_compressed.npz")
    with np.load(path) as z:
        mask = z["mask"]
    ny, nx = mask.shape
    mask = np.roll(mask, -nx // 2, axis=1)  # columns now start at 0 deg east
    fy, fx = ny // H, nx // WD
    return mask.reshape(H, fy, WD, fx).mean(axis=(1, 3))


def bottom_depth(data: pathlib.Path) -> np.ndarray:
    """``[H, W]`` mean depth (m, positive) of the ETOPO5 ocean samples in each cell (0 if none)."""
    e = _read(data / "etopo5.cdf", ["ETOPO05_X", "ETOPO05_Y", "ROSE"])
    lon, lat, z = e["ETOPO05_X"], e["ETOPO05_Y"], e["ROSE"]
    # Samples sit on nodes 5' apart; assign each to the 1.5 deg cell containing it.
    keep_y = lat < 90.0
    z = z[keep_y]
    lat = lat[keep_y]
    order = np.argsort(lon % 360.0)
    z = z[:, order]
    lon = (lon % 360.0)[order]
    row = np.clip(((90.0 - lat) // RES).astype(int), 0, H - 1)
    col = np.clip((lon // RES).astype(int), 0, WD - 1)
    ocean = np.where(z < 0, -z, 0.0)
    is_ocean = (z < 0).astype(np.float64)
    depth_sum = np.zeros((H, WD))
    count = np.zeros((H, WD))
    np.add.at(depth_sum, (row[:, None], col[None, :]), ocean)
    np.add.at(count, (row[:, None], col[None, :]), is_ocean)
    return np.where(count > 0, depth_sum / np.maximum(count, 1), 0.0)


def wet_masks(frac: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[23, H, W]`` wet masks and the cleaned bottom depth ``[H, W]`` (see module doc)."""
    lat, lon = target_centres()
    levels = np.asarray(GLORYS23_DEPTHS_M)
    surface = frac >= 0.5
    depth = np.where(surface, np.maximum(depth, MIN_WET_DEPTH_M), 0.0)
    for _, la, lo, sill in STRAITS:
        j, i = int(np.argmin(abs(lat - la))), int(np.argmin(abs(lon - lo)))
        surface[j, i] = True
        depth[j, i] = sill
    area = np.broadcast_to(Grid.regular(RES).area[:, None], (H, WD))
    surface = W.remove_small_basins(surface, area, W.MIN_BASIN_AREA_M2)
    depth = np.where(surface, depth, 0.0)
    wet = surface[None] & (depth[None] > levels[:, None, None])
    wet = W.remove_pits(wet)
    return wet, depth


def levitus_ts(data: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """``[23, H, W]`` annual T (degC) and S (psu) at the GLORYS levels, everywhere finite."""
    names = ["XAXLEVITR", "YAXLEVITR", "ZAXLEVITR", "TEMP", "SALT"]
    v = _read(data / "levitus_climatology.cdf", names)
    lat_t, lon_t = target_centres()
    z = v["ZAXLEVITR"]
    out = []
    for name in ("TEMP", "SALT"):
        a = v[name]
        filled = np.stack([nearest_fill(a[k]) for k in range(a.shape[0])])
        # Linear in depth; the GLORYS levels (<= 644 m) lie inside Levitus's 0..5000 m.
        k1 = np.clip(np.searchsorted(z, GLORYS23_DEPTHS_M), 1, z.size - 1)
        w = (np.asarray(GLORYS23_DEPTHS_M) - z[k1 - 1]) / (z[k1] - z[k1 - 1])
        vert = (1 - w)[:, None, None] * filled[k1 - 1] + w[:, None, None] * filled[k1]
        out.append(bilinear(vert, v["YAXLEVITR"], v["XAXLEVITR"], lat_t, lon_t))
    return out[0], out[1]


def coads_monthly(data: pathlib.Path) -> np.ndarray:
    """``[12, 5, H, W]``: u10, v10 (m/s), t2m (K), msl (Pa), sst (degC), gaps filled."""
    names = {"u10": "UWND", "v10": "VWND", "t2m": "AIRT", "msl": "SLP", "sst": "SST"}
    v = _read(data / "coads_climatology.cdf", ["COADSX", "COADSY"] + list(names.values()))
    lat_t, lon_t = target_centres()
    out = np.empty((12, len(W.SURFACE_VARIABLES), H, WD))
    for c, var in enumerate(W.SURFACE_VARIABLES):
        a = v[names[var]]
        for m in range(12):
            f = harmonic_fill(a[m])
            out[m, c] = bilinear(f, v["COADSY"], v["COADSX"], lat_t, lon_t)
    out[:, W.SURFACE_VARIABLES.index("t2m")] += 273.15
    out[:, W.SURFACE_VARIABLES.index("msl")] *= 100.0
    return out


def fnoc_winds(data: pathlib.Path) -> np.ndarray:
    """``[132, 2, H, W]`` monthly FNOC 10 m winds (m/s), Jan 1982 .. Dec 1992."""
    v = _read(data / "monthly_navy_winds.cdf", ["FNOCX", "FNOCY", "TIME", "UWND", "VWND"])
    if v["UWND"].shape[0] != W.FNOC_N_MONTHS:
        raise DataError(f"monthly_navy_winds.cdf has {v['UWND'].shape[0]} months, expected 132")
    lat_t, lon_t = target_centres()
    uv = np.stack([v["UWND"], v["VWND"]], axis=1)
    if np.isnan(uv).any():
        uv = np.stack([[nearest_fill(uv[t, c]) for c in range(2)] for t in range(uv.shape[0])])
    return bilinear(uv, v["FNOCY"], v["FNOCX"], lat_t, lon_t)


def build(data: pathlib.Path, out: pathlib.Path) -> dict[str, float]:
    """Build the asset file; returns a few summary numbers."""
    frac = ocean_fraction()
    depth = bottom_depth(data)
    wet, depth = wet_masks(frac, depth)
    T, S = levitus_ts(data)
    T = np.maximum(T, T_MIN_DEGC)
    surf = coads_monthly(data)
    fnoc = fnoc_winds(data)
    for name, a in (("T", T), ("S", S)):
        if not np.isfinite(a[wet]).all():
            raise DataError(f"built {name} climatology has non-finite values in wet cells")
    q = np.clip(np.round(fnoc / W.FNOC_SCALE_M_S), -127, 127).astype(np.int8)
    arrays = {
        "wet_packed": np.packbits(wet.ravel()),
        "ocean_fraction": np.round(frac * 255).astype(np.uint8),
        "bottom_depth_m": np.round(depth).astype(np.uint16),
        "T_clim": np.where(wet, T, 0.0).astype(np.float16),
        "S_anom": np.where(wet, S - W.SALINITY_OFFSET_PSU, 0.0).astype(np.float16),
        # float16 has a step of 64 Pa near 1e5 Pa and 0.25 K near 300 K: store msl and t2m as
        # offsets from a reference value instead.
        "surface_monthly": (surf - np.asarray(W.SURFACE_OFFSETS)[:, None, None]).astype(np.float16),
        "fnoc_winds_q": q,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    g = Grid.regular(RES, wet=wet)
    return {
        "ocean_fraction": g.ocean_fraction,
        "size_MB": out.stat().st_size / 1e6,
        "wet_cells_level0": int(wet[0].sum()),
        "wet_cells_level22": int(wet[-1].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with the ferret-datasets .cdf files")
    p.add_argument(
        "--out",
        default=str(pathlib.Path(__file__).with_name(W.ASSET_FILE)),
        help="output .npz (default: the package's embedded asset)",
    )
    args = p.parse_args(argv)
    info = build(find_ferret_data(args.data), pathlib.Path(args.out))
    for k, v in info.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
