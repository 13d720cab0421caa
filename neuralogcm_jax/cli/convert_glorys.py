"""`neuralogcm convert-glorys`: GLORYS12 ocean and ERA5 atmosphere netCDF -> the HDF5 layout
(`neuralogcm_jax.data.convert`)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from neuralogcm_jax import argtypes
from neuralogcm_jax.data import h5format
from neuralogcm_jax.data.convert import compute_stats, convert, parse_years
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--glorys", nargs="+", required=True, help="GLORYS12 netCDF files (thetao, so, uo, vo, zos)")
    p.add_argument("--era5", nargs="+", required=True,
                   help="ERA5 netCDF files (u10, v10, t2m, msl; with --freshwater also e, tp)")
    p.add_argument("--freshwater", action="store_true",
                   help="also write ERA5's evaporation e and total precipitation tp as forcing "
                        "channels (the day's totals, m of water; primitive mode's "
                        "freshwater_flux: e_minus_p reads them)")
    p.add_argument("--era5-accumulation-hours", type=argtypes.positive_float, default=1.0,
                   help="with --freshwater: the hours each ERA5 e/tp value accumulates over "
                        "(1 for ERA5's hourly data; 24 for daily totals)")
    p.add_argument("--bathymetry", default=None,
                   help="GLORYS12 static file with 'deptho' (GLO-MFC_001_030_mask_bathy.nc): the "
                        "sea-floor depth, stored in land_mask.h5 (primitive mode's "
                        "barotropic_depth: sea_floor)")
    p.add_argument("--out", required=True, help="data root to write (OUT/SPLIT/YEAR.h5)")
    p.add_argument("--years", nargs="+", required=True, help="years or ranges, e.g. 1993-2017")
    p.add_argument("--split", required=True, choices=h5format.SPLITS)
    p.add_argument("--resolution", type=argtypes.positive_float, default=1.5,
                   help="target grid spacing (deg), N->S")
    p.add_argument("--levels", type=argtypes.int_range(1, 23), default=23,
                   help="first N of the 23 GLORYS12 levels")
    p.add_argument("--vertical", choices=("nearest", "linear"), default="nearest")
    p.add_argument("--wet-fraction", type=float, default=0.5,
                   help="minimum valid-ocean area fraction of a target cell to be ocean")
    p.add_argument("--stats", choices=("auto", "yes", "no"), default="auto",
                   help="compute the statistics from this split (auto: when it is 'train')")
    p.add_argument("--overwrite", action="store_true", help="replace existing year files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    years = parse_years(args.years)
    if not 0 < args.wet_fraction <= 1:
        raise ConfigError(f"--wet-fraction {args.wet_fraction} must lie in (0, 1]")
    layout = ChannelLayout.with_levels(args.levels, freshwater=args.freshwater)
    grid = Grid.regular(args.resolution, layout.depths_m)
    written = convert(
        args.glorys, args.era5, args.out, years, args.split, grid=grid, layout=layout,
        vertical=args.vertical, wet_fraction=args.wet_fraction, overwrite=args.overwrite,
        progress=not args.quiet, bathymetry=args.bathymetry,
        era5_accumulation_hours=args.era5_accumulation_hours,
    )
    if args.stats == "yes" or (args.stats == "auto" and args.split == "train"):
        compute_stats(args.out, args.split, progress=not args.quiet)
    print(f"wrote {len(written)} year file(s) to {Path(args.out) / args.split} "
          f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)")
    return 0
