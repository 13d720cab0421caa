"""`neuralogcm export`: a params-only inference folder from a training checkpoint
(`neuralogcm_jax.train.export.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralogcm_jax.argtypes import nonnegative_int
from neuralogcm_jax.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to create")
    parser.add_argument("--step", type=nonnegative_int, help="step to export (default: latest)")
    parser.add_argument("--data_root", help="only for checkpoints of format 1: the run's data")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm export --help` must not import JAX
    from neuralogcm_jax.train.export import export

    if not Path(args.checkpoint).is_dir():
        raise ConfigError(f"--checkpoint {args.checkpoint!r} is not a directory")
    out = export(args.checkpoint, args.out, args.step, data_root=args.data_root)
    print(f"neuralogcm export: wrote {out}")
    return 0
