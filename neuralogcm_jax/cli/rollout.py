"""`neuralogcm rollout`: a long free-running rollout, checked for stability and drift
(`neuralogcm_jax.long_rollout`). Prints the summary; exit status 1 when the run leaves the bounds
or turns non-finite."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuralogcm_jax import argtypes
from neuralogcm_jax.data.h5format import open_dataset
from neuralogcm_jax.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=argtypes.existing_dir, required=True,
                   help="checkpoint or export folder")
    p.add_argument("--data_root", type=argtypes.existing_dir,
                   help="data root (default: the one the model was trained on)")
    p.add_argument("--split", type=argtypes.split_name, default="test")
    p.add_argument("--days", type=argtypes.positive_int, default=3650)
    p.add_argument("--start", type=argtypes.nonnegative_int, default=0,
                   help="initial day index in the split")
    p.add_argument("--chunk", type=argtypes.positive_int, default=30,
                   help="days per compiled scan")
    p.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm rollout --help` must not import JAX
    from neuralogcm_jax.eval.evaluate import check_compatible, load_split
    from neuralogcm_jax.long_rollout import data_root_of, long_rollout, summarize, write_outputs
    from neuralogcm_jax.rollout import load_model

    root = args.data_root or data_root_of(args.checkpoint)
    n_days = open_dataset(root, splits=[args.split]).split(args.split).n_days
    if args.start >= n_days:
        raise ConfigError(
            f"--start {args.start} is outside split {args.split!r} of {str(root)!r} "
            f"(days 0 .. {n_days - 1})"
        )
    model = load_model(args.checkpoint)
    data = load_split(root, args.split)
    check_compatible(model, data, f"data root {str(root)!r}")
    rows, bad = long_rollout(model, data, args.days, args.start, args.chunk)
    summary = summarize(model.name, rows, bad, args.days)
    write_outputs(Path(args.out), rows, summary)
    print(json.dumps({k: summary[k] for k in ("days_run", "bounded", "first_violation",
                                              "drift_T_degC_per_year", "drift_S_psu_per_year")}))
    return 0 if bad is None else 1
