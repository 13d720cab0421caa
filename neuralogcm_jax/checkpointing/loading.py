"""`load_model`: a model rebuilt from its checkpoint or export folder alone.

`load` reads the folder's metadata and config, the stored grid and statistics (format 2), or those
of an explicit data root (format 1), builds the model of the stored model section
(`build_from_config`) and restores its parameters onto it, each step's errors naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml
from flax import nnx

from neuralogcm_jax import schema
from neuralogcm_jax.checkpointing.arrays import grid_from_arrays, stats_from_arrays
from neuralogcm_jax.checkpointing.folders import (
    is_export,
    list_steps,
    read_npz,
    read_step_metadata,
    resolve_checkpoint_dir,
    restore_tree,
)
from neuralogcm_jax.checkpointing.metadata import (
    EXPORT_FORMAT_VERSION,
    FORMAT_VERSION,
    MODEL_ITEM,
    check_compatible,
    check_format,
    check_same_grid,
    layout_of_metadata,
    stats_differences,
)
from neuralogcm_jax.data import h5format
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import CheckpointError, DataError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import ModelConfig, build_model
from neuralogcm_jax.paths import check_local, output_path


def effective_model_config(meta: dict, config: dict) -> dict:
    """The model section as the model was built: stored, or (format 1) derived from the run
    config with the run's precision applied as the trainer does."""
    mc = meta.get("model_config")
    if mc is not None:
        return dict(mc)
    mc = dict(config.get("model") or {})
    if (config.get("train") or {}).get("precision") == "bf16":
        mc["dtype"] = "bfloat16"
    return mc


def build_from_config(model_config: dict, grid: Grid, stats, *, seed: int = 0):
    """The model described by a stored model section (built-in, or one registered with
    `neuralogcm_jax.model.register_model`)."""
    cfg = schema.from_dict(ModelConfig, model_config, "model")
    return build_model(cfg, grid, stats, seed=seed)


def _single_device_abstract(tree):
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=dev), tree)


def _params_of(model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest, nnx.to_pure_dict(params)


def _with_params(model, pure_params):
    graphdef, params, rest, _ = _params_of(model)
    nnx.replace_by_pure_dict(params, pure_params)
    return nnx.merge(graphdef, params, rest)


def _from_data_root(data_root, layout: ChannelLayout, where: str):
    """Grid and stats of a data root (format-1 checkpoints): an HDF5 root or an array dataset."""
    check_local(data_root, "data_root")
    root = Path(data_root)
    if root.suffix == ".npz":
        if not root.is_file():
            raise DataError(f"data_root {str(root)!r}: array dataset file does not exist")
        z = read_npz(root)
        grid = Grid.from_coords(z["lat"], z["lon"], z["depth"], z["wet"])
        return grid, Stats.identity(grid.wet, layout)
    dr = h5format.open_dataset(root, layout, nan_check_days=0)
    return dr.grid, dr.load_stats()


def load_model(path: str | os.PathLike, step: int | None = None, *, stats=None,
               data_root: str | os.PathLike | None = None) -> Any:
    """The model of an export folder or of a training checkpoint directory (its latest step,
    or `step`), ready to roll out. Reads only that folder.

    `stats`, `data_root`: only for folders of format 1, which hold no statistics (and, for
    training checkpoints, no grid): the `Stats` to build the model with, or the data root
    (HDF5 root or ``.npz`` array dataset) to read grid and statistics from. Given for a newer
    folder, they must equal what it stores (a `CheckpointError` names what differs)."""
    return load(path, step, stats=stats, data_root=data_root).model


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What `load` read: the model and everything it was rebuilt from."""

    model: Any
    meta: dict
    config: dict
    grid: Grid
    stats: Any
    step: int | None
    path: Path


def load(path: str | os.PathLike, step: int | None = None, *, stats=None,
         data_root: str | os.PathLike | None = None) -> Loaded:
    """`load_model` with its inputs: see there."""
    p = output_path(path)
    if is_export(p):
        return _load_export(p, stats, data_root)
    d = resolve_checkpoint_dir(p)
    steps = list_steps(d)
    if not steps:
        raise CheckpointError(f"no checkpoint in {str(d)!r} (nor an export: no metadata.json "
                              f"and params/)")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"no checkpoint of step {step} in {str(d)!r}; steps: {steps}")
    step_dir = d / str(step)
    meta = read_step_metadata(d, step)
    where = str(step_dir)
    version = check_format(meta.get("format_version"), FORMAT_VERSION, where)
    layout = layout_of_metadata(meta, where)
    if version >= 2:
        item = step_dir / MODEL_ITEM
        if not item.is_dir():
            raise CheckpointError(f"{str(item)!r} is missing (format {version} stores the grid "
                                  f"and statistics there)")
        try:
            arrays = restore_tree(item)
        except Exception as e:
            raise CheckpointError(f"{str(item)!r}: cannot read the stored grid and statistics "
                                  f"({type(e).__name__}: {e})") from None
        grid = grid_from_arrays(dict(arrays.get("grid", {})), meta, f"{item}/grid")
        own = stats_from_arrays(dict(arrays.get("stats", {})), grid, layout, f"{item}/stats")
        stats = _agree(own, stats, data_root, grid, layout, where)
    else:
        if data_root is None:
            raise CheckpointError(
                f"{where}: checkpoint format 1 stores neither grid nor normalisation statistics; "
                f"load it with data_root= (the run's data root; stats= may come in addition)"
            )
        grid, root_stats = _from_data_root(data_root, layout, where)
        check_compatible(meta, model_name=meta.get("model_name"), grid=grid, layout=layout,
                         where=f"{where} with data_root {str(data_root)!r}")
        stats = root_stats if stats is None else stats
        _check_stats_fit(stats, grid, layout, where)
    model = build_from_config(effective_model_config(meta, meta.get("config", {})), grid, stats,
                              seed=int(meta.get("seed", (meta.get("config", {}).get("train") or
                                                         {}).get("seed", 0))))
    _, _, _, pure = _params_of(model)
    abstract = _single_device_abstract(pure)
    try:
        out = restore_tree(step_dir / "state", {"params": abstract}, partial=True)
    except Exception as e:
        raise CheckpointError(f"{str(step_dir / 'state')!r}: cannot restore the parameters "
                              f"({type(e).__name__}: {e})") from None
    model = _with_params(model, _checked_params(out["params"], abstract, step_dir / "state"))
    return Loaded(model, meta, meta.get("config", {}), grid, stats, step, d)


def _load_export(p: Path, stats, data_root):
    try:
        meta = json.loads((p / "metadata.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{str(p / 'metadata.json')!r} is corrupt: {e}") from None
    version = check_format(meta.get("export_format_version"), EXPORT_FORMAT_VERSION, str(p),
                           "export")
    try:
        config = yaml.safe_load((p / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"{str(p / 'config.yaml')!r}: unreadable: {e}") from None
    layout = layout_of_metadata(meta, str(p))
    grid = grid_from_arrays(read_npz(p / "grid.npz"), meta, str(p / "grid.npz"))
    if version >= 2:
        own = stats_from_arrays(read_npz(p / "stats.npz"), grid, layout, str(p / "stats.npz"))
        stats = _agree(own, stats, data_root, grid, layout, str(p))
    else:
        if stats is None and data_root is None:
            raise CheckpointError(
                f"{str(p)!r}: export format 1 stores no normalisation statistics; load it with "
                f"stats= or data_root= (the run's data root)"
            )
        if stats is None:
            root_grid, stats = _from_data_root(data_root, layout, str(p))
            check_same_grid(grid, layout, root_grid, layout, f"data_root {str(data_root)!r}",
                            f"the export {str(p)!r}")
        _check_stats_fit(stats, grid, layout, str(p))
    model = build_from_config(effective_model_config(meta, config), grid, stats,
                              seed=int(meta.get("seed", (config.get("train") or {}).get("seed",
                                                                                         0))))
    _, _, _, pure = _params_of(model)
    abstract = _single_device_abstract(pure)
    try:
        params = restore_tree(p / "params", abstract)
    except Exception as e:
        raise CheckpointError(f"{str(p / 'params')!r}: cannot read the parameters "
                              f"({type(e).__name__}: {e})") from None
    model = _with_params(model, _checked_params(params, abstract, p / "params"))
    return Loaded(model, meta, config, grid, stats, meta.get("step"), p)


def _agree(own, stats, data_root, grid, layout, where):
    """The stored stats; an explicit `stats`/`data_root` must agree with them."""
    if data_root is not None:
        root_grid, root_stats = _from_data_root(data_root, layout, where)
        check_same_grid(grid, layout, root_grid, layout, f"data_root {str(data_root)!r}",
                        f"the checkpoint {where!r}")
        stats = root_stats if stats is None else stats
    if stats is not None:
        _check_stats_fit(stats, grid, layout, where)
        diff = stats_differences(own, stats)
        if diff:
            raise CheckpointError(f"{where}: the given statistics differ from the stored ones: "
                                  f"{'; '.join(diff)}")
    return own


def _check_stats_fit(stats, grid: Grid, layout: ChannelLayout, where: str) -> None:
    if (stats.layout.n_levels, stats.layout.freshwater) != (layout.n_levels, layout.freshwater) \
            or stats.shape != grid.shape:
        raise CheckpointError(
            f"{where}: the given statistics are for {stats.layout.describe()} on "
            f"{list(stats.shape)}, the checkpoint for {layout.describe()} on "
            f"{list(grid.shape)}"
        )


def _checked_params(params, abstract, where: Path):
    got, want = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(abstract)
    if got != want:
        raise CheckpointError(f"{str(where)!r} holds another parameter tree than the model")
    for (kp, a), s in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(abstract)):
        if tuple(np.shape(a)) != tuple(s.shape):
            raise CheckpointError(
                f"{str(where)!r}: {jax.tree_util.keystr(kp)} has shape {tuple(np.shape(a))}, "
                f"the model expects {tuple(s.shape)}"
            )
    return params
