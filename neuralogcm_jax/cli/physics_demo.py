"""`neuralogcm physics-demo`: the paper-mode physics core alone on a realistic ocean
(`neuralogcm_jax.physics_demo.run_physics_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralogcm_jax import argtypes
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--days", type=argtypes.positive_int, default=30,
                   help="days to run (default 30)")
    p.add_argument("--resolution", type=argtypes.positive_float, default=1.5,
                   help="grid spacing, deg (default 1.5)")
    p.add_argument("--levels", type=argtypes.int_range(1, len(GLORYS23_DEPTHS_M)), default=23,
                   help="depth levels, 1..23 (default 23)")
    p.add_argument("--nu-m", type=argtypes.positive_float, default=None,
                   help="momentum viscosity, m^2/s")
    p.add_argument("--nu-t", type=argtypes.positive_float, default=None,
                   help="tracer diffusivity, m^2/s")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm physics-demo --help` must not import JAX
    from neuralogcm_jax.physics_demo import run_physics_demo

    run_physics_demo(args.out, days=args.days, resolution=args.resolution, levels=args.levels,
                     nu_m=args.nu_m, nu_t=args.nu_t)
    out = Path(args.out)
    print(f"wrote {out / 'diagnostics.json'} and {out / 'sst_speed.png'}")
    return 0
