"""`neuralogcm evaluate`: autoregressive forecast skill on a data split
(`neuralogcm_jax.eval.evaluate.run_evaluation`); prints the 10-day paper-convention RMSE."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralogcm_jax import argtypes
from neuralogcm_jax.data.h5format import open_dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", required=True,
                   type=argtypes.existing_dir,
                   help="a checkpoint or export folder (repeat for several models)")
    p.add_argument("--data_root", type=argtypes.existing_dir, required=True,
                   help="data root in the NeuralOGCM layout")
    p.add_argument("--split", type=argtypes.split_name, default="test")
    p.add_argument("--max_lead", type=argtypes.positive_int, default=120, help="days")
    p.add_argument("--init_every", type=argtypes.positive_int, default=5,
                   help="days between initial dates")
    p.add_argument("--batch", type=argtypes.positive_int, default=4,
                   help="initial dates rolled out together")
    p.add_argument("--no_references", action="store_true", help="skip persistence/climatology/physics")
    p.add_argument("--netcdf", action="store_true", help="also write rollouts.nc (needs xarray)")
    p.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm evaluate --help` must not import JAX
    from neuralogcm_jax.eval.evaluate import REFERENCES, run_evaluation
    from neuralogcm_jax.rollout import load_model

    open_dataset(args.data_root, splits=[args.split])  # a missing split fails before any model
    models = {}
    for ck in args.checkpoint:
        m = load_model(ck)
        name = m.name if m.name not in models else f"{m.name}:{Path(ck).name}"
        models[name] = m
    res = run_evaluation(
        models, args.data_root, args.out, split=args.split, max_lead=args.max_lead,
        init_every=args.init_every, batch=args.batch,
        references=() if args.no_references else REFERENCES, netcdf=args.netcdf,
    )
    lead10 = min(10, res["meta"]["max_lead_days"]) - 1
    for name, r in res["results"].items():
        print(f"{name:>12s}: paper-convention RMSE at {lead10 + 1} d = {r['paper_rmse'][lead10]:.3f}")
    print(f"wrote {len(res['files'])} files to {args.out}")
    return 0
