"""`neuralogcm export`: a params-only inference checkpoint from a training checkpoint.

    neuralogcm export --checkpoint runs/x/checkpoints [--step N] --out models/x

The exported directory (format version `EXPORT_FORMAT_VERSION`) holds

* ``config.yaml`` -- the resolved training configuration (its ``model`` section rebuilds the
  model; ``data.root`` says where the normalisation statistics were);
* ``metadata.json`` -- format version, package version, step, model name, layout depths, grid
  fingerprint, and the metrics of the exported step;
* ``grid.npz`` -- the grid's ``lat``, ``lon``, ``depth`` and ``wet`` arrays (no pickle);
* ``params/`` -- an Orbax PyTree checkpoint of the model parameters (nested dicts of arrays),
  without optimizer state.

`load_model` reads such a directory, or a training checkpoint directory directly, and returns
the model ready to roll out. Nothing is written into the source checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from neuralogcm_jax.argtypes import nonnegative_int
from neuralogcm_jax.errors import CheckpointError, ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.train import checkpoint as ckpt_lib
from neuralogcm_jax.train import config as config_lib

EXPORT_FORMAT_VERSION = 1


def _model_and_vars(cfg: config_lib.Config, grid: Grid, stats):
    from neuralogcm_jax.train import state as st
    from neuralogcm_jax.train.loop import model_config_for_run

    model = st.build_forecaster(model_config_for_run(cfg), grid, stats, seed=cfg.train.seed)
    return st.split_model(model)


def identity_stats(grid: Grid, layout: ChannelLayout):
    """Statistics that leave normalised values unchanged (mean 0, std 1, no climatology)."""
    from neuralogcm_jax.data.normalize import Stats

    return Stats.build(np.zeros(layout.n_channels), np.ones(layout.n_channels),
                       np.zeros((366, layout.n_ocean) + grid.shape, np.float32), grid.wet,
                       layout)


def stats_for(cfg: config_lib.Config, grid: Grid, layout: ChannelLayout):
    """The normalisation statistics of the run's data root (identity for array datasets)."""
    root = Path(cfg.data.root)
    if root.suffix == ".npz":
        return identity_stats(grid, layout)
    from neuralogcm_jax.data import h5format

    wet = layout.wet_channels(grid.wet)
    return h5format.load_stats(root, layout, wet)


def _single_device_abstract(tree):
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=dev), tree)


def export(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike,
           step: int | None = None) -> Path:
    """Write the inference directory of `step` (latest if None) of a training checkpoint."""
    ck = ckpt_lib.Checkpointer(checkpoint_dir, read_only=True, keep_best=False)
    meta = ck.read_metadata(step)
    step = int(meta["step"]) if step is None else step
    cfg = config_lib.from_dict(config_lib.Config, meta["config"])
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"export directory {str(out)!r} exists and is not empty")
    grid = _grid_from_meta_source(cfg, meta)
    layout = ChannelLayout(tuple(meta["layout_depths_m"]))
    graphdef, params, _, _ = _model_and_vars(cfg, grid, stats_for(cfg, grid, layout))
    params = ck.restore_params(_single_device_abstract(params), step)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config_lib.write_config(cfg, tmp)
    emeta = {**meta, "export_format_version": EXPORT_FORMAT_VERSION, "step": step}
    emeta.pop("config", None)
    (tmp / "metadata.json").write_text(json.dumps(emeta, indent=1))
    np.savez(tmp / "grid.npz", lat=grid.lat, lon=grid.lon, depth=grid.depth, wet=grid.wet)
    with ocp.PyTreeCheckpointer() as c:
        c.save((tmp / "params").absolute(), params)
    ck.close()
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


def _grid_from_meta_source(cfg: config_lib.Config, meta: dict) -> Grid:
    """The grid of the run's data (must match the fingerprint stored in the checkpoint)."""
    from neuralogcm_jax.train.loop import open_data

    data = open_data(cfg)
    fp = ckpt_lib.grid_fingerprint(data.grid)
    if fp["sha256"] != meta["grid"]["sha256"]:
        raise CheckpointError(
            f"the data at {cfg.data.root!r} no longer have the checkpoint's grid "
            f"({meta['grid']['shape']}); cannot rebuild the model"
        )
    return data.grid


def load_model(path: str | os.PathLike, step: int | None = None, *, stats=None) -> Any:
    """The model of an exported directory or of a training checkpoint (latest `step` if None).

    `stats`: normalisation statistics to build the model with; default: read from the run's
    ``data.root`` (identity statistics for array datasets)."""
    path = Path(path)
    if (path / "metadata.json").is_file() and (path / "params").is_dir():
        meta = json.loads((path / "metadata.json").read_text())
        if meta.get("export_format_version") != EXPORT_FORMAT_VERSION:
            raise CheckpointError(
                f"{str(path)!r}: export format {meta.get('export_format_version')!r}, this "
                f"program reads {EXPORT_FORMAT_VERSION}"
            )
        cfg = config_lib.load_config(path / "config.yaml")
        z = np.load(path / "grid.npz", allow_pickle=False)
        grid = Grid.from_coords(z["lat"], z["lon"], z["depth"], z["wet"])
        reader = None
    else:
        reader = ckpt_lib.Checkpointer(path, read_only=True, keep_best=False)
        meta = reader.read_metadata(step)
        cfg = config_lib.from_dict(config_lib.Config, meta["config"])
        grid = _grid_from_meta_source(cfg, meta)
    layout = ChannelLayout(tuple(meta["layout_depths_m"]))
    if stats is None:
        stats = stats_for(cfg, grid, layout)
    from neuralogcm_jax.train import state as st

    graphdef, params, rngs, consts = _model_and_vars(cfg, grid, stats)
    abstract = _single_device_abstract(params)
    if reader is None:
        try:
            with ocp.PyTreeCheckpointer() as c:
                params = c.restore(
                    (path / "params").absolute(),
                    args=ocp.args.PyTreeRestore(
                        abstract,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                    ),
                )
        except Exception as e:
            raise CheckpointError(f"cannot read parameters from {str(path / 'params')!r}: {e}") from e
    else:
        params = reader.restore_params(abstract, step)
        reader.close()
    return st.merge_model(graphdef, params, rngs, consts)


# ---------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to create")
    parser.add_argument("--step", type=nonnegative_int, help="step to export (default: latest)")


def run(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).is_dir():
        raise ConfigError(f"--checkpoint {args.checkpoint!r} is not a directory")
    out = export(args.checkpoint, args.out, args.step)
    print(f"neuralogcm export: wrote {out}")
    return 0
