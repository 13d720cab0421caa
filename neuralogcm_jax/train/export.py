"""`neuralogcm export`: a params-only inference folder from a training checkpoint.

    neuralogcm export --checkpoint runs/x/checkpoints [--step N] --out models/x

The exported folder (format `checkpointing.EXPORT_FORMAT_VERSION`) holds the resolved config,
the metadata, the grid, the normalisation statistics and the parameters, without optimizer
state; see `neuralogcm_jax.checkpointing` for its layout. `load_model` (re-exported here; it
lives in `neuralogcm_jax.checkpointing`) reads it, or a training checkpoint directory directly,
from nothing but that folder. Nothing is written into the source checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flax import nnx

from neuralogcm_jax import checkpointing
from neuralogcm_jax.checkpointing import EXPORT_FORMAT_VERSION, load_model  # noqa: F401
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout


def identity_stats(grid: Grid, layout: ChannelLayout):
    """Statistics that leave normalised values unchanged (mean 0, std 1, no climatology)."""
    return Stats.identity(np.asarray(grid.wet), layout)


def export(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike,
           step: int | None = None, *, data_root: str | os.PathLike | None = None) -> Path:
    """Write the export folder of `step` (latest if None) of a training checkpoint.

    `data_root`: only for checkpoints of format 1, which hold no grid or statistics."""
    if checkpointing.is_export(checkpoint_dir):
        raise ConfigError(f"--checkpoint {str(checkpoint_dir)!r} is an export, not a training "
                          f"checkpoint")
    loaded = checkpointing.load(checkpoint_dir, step, data_root=data_root)
    meta = dict(loaded.meta)
    meta.update(step=int(loaded.step), format_version=checkpointing.FORMAT_VERSION,
                model_config=checkpointing.effective_model_config(meta, loaded.config))
    meta.setdefault("seed", int((loaded.config.get("train") or {}).get("seed", 0)))
    params = nnx.to_pure_dict(nnx.state(loaded.model, nnx.Param))
    return checkpointing.write_export(out_dir, meta=meta, config=loaded.config, grid=loaded.grid,
                                      stats=loaded.stats, params=params)
