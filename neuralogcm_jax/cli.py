"""`neuralogcm`: the command-line entry point.

Each subcommand lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches. Any `NeuralOGCMError` becomes one line on stderr
and exit status 2; so does a bad argument, refused while parsing by the ``type=`` functions of
`neuralogcm_jax.argtypes` before anything is computed. `main` returns the exit status.

Plugins: the environment variable ``NEURALOGCM_PLUGINS`` may name modules (comma-separated) that
`main` imports first, so that models and data formats they register
(`neuralogcm_jax.model.register_model`, `neuralogcm_jax.train.loop.register_data_format`) are
known to every command; the tests use it for their toy model and in-memory dataset format.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from neuralogcm_jax.errors import NeuralOGCMError

PLUGINS_ENV = "NEURALOGCM_PLUGINS"

# name -> (module, one-line help)
COMMANDS = {
    "demo": ("neuralogcm_jax.demo", "build the demo dataset, train, evaluate and write a report"),
    "make-data": ("neuralogcm_jax.data.twin", "generate a twin dataset in the real data layout"),
    "convert-glorys": ("neuralogcm_jax.data.convert", "GLORYS12/ERA5 netCDF -> the HDF5 layout"),
    "train": ("neuralogcm_jax.train.loop", "train a model (sharded, checkpointed)"),
    "export": ("neuralogcm_jax.train.export", "write a params-only inference checkpoint"),
    "evaluate": ("neuralogcm_jax.eval.evaluate", "rollout skill against a data split"),
    "rollout": ("neuralogcm_jax.rollout_cli", "long free-running rollout with drift report"),
    "physics-demo": ("neuralogcm_jax.physics_demo", "run the physics core on the embedded world"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {k: v for k, v in COMMANDS.items() if importlib.util.find_spec(v[0]) is not None}


def load_plugins() -> None:
    """Import the modules named in ``NEURALOGCM_PLUGINS`` (comma-separated)."""
    for name in os.environ.get(PLUGINS_ENV, "").split(","):
        if name.strip():
            importlib.import_module(name.strip())


def main(argv: list[str] | None = None) -> int:
    load_plugins()
    parser = argparse.ArgumentParser(prog="neuralogcm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (modname, help_) in _available().items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        modules[name] = mod
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0), or a bad argument (2, already printed)
        return int(e.code or 0)
    try:
        return int(modules[args.command].run(args) or 0)
    except NeuralOGCMError as e:
        print(f"neuralogcm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralogcm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
