"""`neuralogcm demo`: the main job on the embedded default world, end to end
(`neuralogcm_jax.demo.run_demo`); prints the verdict and where the report is."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neuralogcm_jax.argtypes import model_name, positive_int, seed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="output folder")
    p.add_argument("--seed", type=seed, default=0, help="dataset and training seed")
    p.add_argument("--baseline", type=model_name, default="unet",
                   help="the baseline trained beside NeuralOGCM")
    p.add_argument("--fresh", action="store_true", help="rebuild the dataset too")
    p.add_argument("--max_lead", type=positive_int, default=90, help="evaluation lead (days)")
    p.add_argument("--init_every", type=positive_int, default=15,
                   help="days between initial dates")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config key for both models")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm demo --help` must not import JAX
    from neuralogcm_jax.demo import run_demo, verdict_lines

    t_start = time.perf_counter()
    res = run_demo(args.out, seed=args.seed, baseline=args.baseline, fresh=args.fresh,
                   max_lead=args.max_lead, init_every=args.init_every, overrides=args.set)
    print("\n".join(verdict_lines(res["results"], res["meta"])))
    print(f"report: {Path(args.out) / 'report.md'}  ({time.perf_counter() - t_start:.0f} s in all)")
    return 0
