"""`neuralogcm train`: the training loop (`neuralogcm_jax.train.loop.train`).

    neuralogcm train --config neuralogcm [--set optim.lr=1e-4 ...]

The configuration is ``--config`` (a YAML file or a packaged config's name; default: the one
named by ``--model``) <- the short flags of `FLAG_KEYS` <- ``--set KEY=VALUE`` overrides
(`neuralogcm_jax.train.config.load_config`).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import yaml

from neuralogcm_jax.argtypes import nonnegative_float, nonnegative_int, positive_int
from neuralogcm_jax.errors import ConfigError, NeuralOGCMError
from neuralogcm_jax.paths import CONFIG_DIR, packaged_configs, resolve_config_path

# Short flags of the original training script -> dotted keys.
FLAG_KEYS = {
    "model": "model.name",
    "data_root": "data.root",
    "batch_size": "data.batch_size",
    "epochs": "train.epochs",
    "lr": "optim.lr",
    "fourcastnet_embed_dim": "model.fourcastnet.embed_dim",
    "simvp_hid_s": "model.simvp.hid_S",
    "out_dir": "train.out_dir",
}


def config_ref(text: str) -> str:
    """A ``--config`` value: an existing YAML file or a packaged config's name."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    try:
        resolve_config_path(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, repeated ``--set k=v`` and the short flags of `FLAG_KEYS` (counts must be
    >= 1 and ``--config`` an existing file or a packaged config's name, checked while parsing)."""
    parser.add_argument(
        "--config", type=config_ref,
        help="a YAML file, or the name of a packaged config: "
        + ", ".join(packaged_configs()) + " (default: the one named by --model)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    parser.add_argument("--model", help="model name (model.name)")
    parser.add_argument("--data_root", help="dataset root (data.root)")
    parser.add_argument("--batch_size", type=positive_int,
                        help="samples per device (data.batch_size)")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (train.epochs)")
    parser.add_argument("--lr", type=nonnegative_float,
                        help="peak network learning rate (optim.lr)")
    parser.add_argument("--fourcastnet_embed_dim", type=positive_int,
                        help="model.fourcastnet.embed_dim")
    parser.add_argument("--simvp_hid_s", type=positive_int, help="model.simvp.hid_S")
    parser.add_argument("--out_dir", help="run directory (train.out_dir)")


def config_from_args(args: argparse.Namespace):
    """The resolved `Config` of parsed arguments (YAML <- flags <- --set)."""
    # imported here, not at the top: train.config imports the model (JAX), and
    # `neuralogcm train --help` must not
    from neuralogcm_jax.train.config import load_config

    path = getattr(args, "config", None)
    model = getattr(args, "model", None)
    if path is not None:
        path = resolve_config_path(path)
    elif model is not None and (CONFIG_DIR / f"{model}.yaml").is_file():
        path = CONFIG_DIR / f"{model}.yaml"
    overrides = []
    for flag, key in FLAG_KEYS.items():
        v = getattr(args, flag, None)
        if v is not None:
            overrides.append(f"{key}={yaml.safe_dump(v).strip().removesuffix('...').strip()}")
    overrides += list(getattr(args, "overrides", []) or [])
    return load_config(path, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", nargs="?", const="", default=None, metavar="CHECKPOINT_DIR",
        help="require a checkpoint to continue from (of checkpoint.dir, or of CHECKPOINT_DIR); "
        "same as --set train.resume=required. Without it, train.resume (default auto) "
        "resumes when the checkpoint directory holds a checkpoint",
    )
    parser.add_argument("--coordinator", help="host:port of process 0 (multi-process runs)")
    parser.add_argument("--num_processes", type=positive_int, help="number of processes in the job")
    parser.add_argument("--process_id", type=nonnegative_int, help="this process's index")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neuralogcm train --help` must not import JAX
    import jax

    from neuralogcm_jax.train import config as config_lib
    from neuralogcm_jax.train.distributed import initialize_distributed
    from neuralogcm_jax.train.loop import STOPPED_EXIT_STATUS, train

    # before anything touches a JAX backend (the CPU collectives must be chosen first)
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    try:
        cfg = config_from_args(args)
        if args.resume is not None:
            cfg = config_lib.replace(cfg, **{"train.resume": "required"})
            if args.resume:
                cfg = config_lib.replace(cfg, **{"checkpoint.dir": args.resume})
        res = train(cfg, progress=not args.no_progress)
    except BaseException as e:
        if jax.process_count() > 1:
            _exit_now(e, jax.process_index(), jax.process_count())
        raise
    if jax.process_index() == 0:
        loss = res.metrics.get("loss")
        print(
            f"neuralogcm train: step {res.step}"
            + (f", loss {loss:.5g}" if loss is not None else "")
            + (f", val_loss {res.metrics['val_loss']:.5g}" if "val_loss" in res.metrics else "")
            + f", {res.skipped} skipped step{'' if res.skipped == 1 else 's'}"
            + f"; checkpoints in {cfg.checkpoint_dir}",
            flush=True,
        )
    return STOPPED_EXIT_STATUS if res.stopped_by_signal else 0


def _exit_now(e: BaseException, index: int, count: int) -> NoReturn:
    """Report `e` and end this process of a multi-process run at once, with the status the CLI
    would give (2 for a `NeuralOGCMError`, 130 for Ctrl-C, 1 otherwise).

    A normal exit runs JAX's distributed shutdown, a barrier that waits up to 5 minutes for the
    other processes, while they wait, blocked in their next collective, for this one: a failure
    in one process hung the whole job. Exiting without the barrier lets the launcher (or the
    others' heartbeat check, `train.distributed.initialize_distributed`) see the failure now."""
    if isinstance(e, NeuralOGCMError):
        print(f"neuralogcm train: error: {e}", file=sys.stderr)
        status = 2
    elif isinstance(e, KeyboardInterrupt):
        print("neuralogcm train: interrupted", file=sys.stderr)
        status = 130
    elif isinstance(e, SystemExit):
        status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    else:
        traceback.print_exception(e)
        status = 1
    print(f"neuralogcm train: process {index} of {count} exits with status {status} without "
          "waiting for the others", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
