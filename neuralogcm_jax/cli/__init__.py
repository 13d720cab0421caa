"""`neuralogcm`: the command-line entry point.

Each subcommand is one module of this package (``neuralogcm_jax.cli.<command>``), which defines
``add_arguments(parser)`` and ``run(args) -> int`` and calls the library; this file only
dispatches, and imports only the chosen command's module, so ``neuralogcm --help`` and
``neuralogcm CMD --help`` import no JAX. Any `NeuralOGCMError` becomes one line on stderr and exit
status 2; so does a bad argument, refused while parsing by the ``type=`` functions of
`neuralogcm_jax.argtypes` before anything is computed. `main` returns the exit status.

Plugins: the environment variable ``NEURALOGCM_PLUGINS`` may name modules (comma-separated) that
`main` imports first, so that models and data formats they register
(`neuralogcm_jax.model.register_model`, `neuralogcm_jax.train.loop.register_data_format`) are
known to every command; the tests use it for their toy model and in-memory dataset format.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from neuralogcm_jax.errors import NeuralOGCMError

PLUGINS_ENV = "NEURALOGCM_PLUGINS"

# name -> (module under neuralogcm_jax.cli, one-line help)
COMMANDS = {
    "demo": ("demo", "build the demo dataset, train, evaluate and write a report"),
    "make-data": ("make_data", "generate a twin dataset in the real data layout"),
    "convert-glorys": ("convert_glorys", "GLORYS12/ERA5 netCDF -> the HDF5 layout"),
    "train": ("train", "train a model (sharded, checkpointed)"),
    "export": ("export", "write a params-only inference checkpoint"),
    "evaluate": ("evaluate", "rollout skill against a data split"),
    "rollout": ("rollout", "long free-running rollout with drift report"),
    "physics-demo": ("physics_demo", "run the physics core on the embedded world"),
}


def load_plugins() -> None:
    """Import the modules named in ``NEURALOGCM_PLUGINS`` (comma-separated)."""
    for name in os.environ.get(PLUGINS_ENV, "").split(","):
        if name.strip():
            importlib.import_module(name.strip())


def _chosen(argv: list[str]) -> str | None:
    """The command named on the command line (its first non-option word), if it is one."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    load_plugins()
    parser = argparse.ArgumentParser(prog="neuralogcm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chosen, module = _chosen(argv), None
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:  # only the chosen command's module is imported
            module = importlib.import_module(f"{__name__}.{modname}")
            module.add_arguments(p)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0), or a bad argument (2, already printed)
        return int(e.code or 0)
    try:
        return int(module.run(args) or 0)
    except NeuralOGCMError as e:
        print(f"neuralogcm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralogcm {args.command}: interrupted", file=sys.stderr)
        return 130
