"""`neuralogcm make-data`: a twin dataset in the real data layout
(`neuralogcm_jax.data.twin.generate_dataset`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from neuralogcm_jax import argtypes
from neuralogcm_jax.data.twin_spec import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="demo: 6 deg x 23 levels from a 3 deg truth, 4 years; skill: the same, 8 "
                   "years; twin: 1.5 deg x 23 levels, 11 years")
    p.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="random seed (forcing noise)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--mode", choices=["primitive", "paper"], default=None,
                   help="physics of the truth (default: the preset's; paper: the older truth, "
                   "on the model grid)")
    p.add_argument("--freshwater", action="store_true",
                   help="also write the freshwater forcing channels e and tp (bulk evaporation, "
                        "a zonal precipitation profile) and let the truth's salinity feel E - P "
                        "(primitive truth only)")


def run(args: argparse.Namespace) -> int:
    # Imported here, like every command's library: `make-data --help` must not load JAX.
    from neuralogcm_jax.data.twin import generate_dataset

    spec = PRESETS[args.preset]
    if args.mode is not None:
        res = None if args.mode == "paper" else spec.truth.resolution_deg
        spec = dataclasses.replace(
            spec, truth=dataclasses.replace(spec.truth, mode=args.mode, resolution_deg=res))
    if args.freshwater:
        spec = dataclasses.replace(spec, freshwater=True)
    t0 = time.perf_counter()
    out = generate_dataset(args.out, spec, args.seed, overwrite=args.overwrite)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
