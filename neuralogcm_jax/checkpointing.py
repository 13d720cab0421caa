"""Self-contained model checkpoints: what a saved model holds, and `load_model`.

A saved model needs nothing but its own folder: no data root, no trainer, any working directory.
Two kinds of folder are read:

* a **training checkpoint directory** (written by `neuralogcm_jax.train.checkpoint`): one
  sub-directory per step, each with the Orbax items

    - ``state``  -- train state (params, optimizer state, ...), read here for ``params`` only;
    - ``data``   -- the data-iterator position (trainer only);
    - ``meta``   -- JSON, `make_metadata`: format version, package versions, step, the resolved
      config, the effective model config, the channel layout's depths, a grid fingerprint;
    - ``model``  -- arrays, `model_arrays`: ``grid`` (``lat``, ``lon``, ``depth``, ``wet``) and
      ``stats`` (``mean``, ``std``, ``clim_harmonics``, the compact climatology of
      `neuralogcm_jax.data.normalize`);

* an **export** (`write_export`, ``neuralogcm export``): ``config.yaml`` (resolved config),
  ``metadata.json`` (as ``meta`` plus ``export_format_version``), ``grid.npz``, ``stats.npz``
  and ``params/`` (an Orbax PyTree of the parameters, no optimizer state).

Format history: version 1 (both kinds) stored neither statistics nor, in training checkpoints,
the grid; they were rebuilt from the run's ``data.root``. Such a folder loads only with an
explicit ``stats=`` or ``data_root=`` (see `load_model`). A folder of a newer format than this
program knows is refused.

This module imports nothing from ``neuralogcm_jax.train``, ``.eval`` or ``.cli`` (a test holds
that): the trainer uses it, never the reverse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.errors import CheckpointError, DataError, GridError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.paths import check_local, output_path

FORMAT_VERSION = 2
EXPORT_FORMAT_VERSION = 2
MODEL_ITEM = "model"
GRID_KEYS = ("lat", "lon", "depth", "wet")
STATS_KEYS = ("mean", "std", "clim_harmonics")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain", "h5py")


# ------------------------------------------------------------------------------ metadata
def package_versions() -> dict[str, str]:
    """Installed versions of this package and of the libraries its checkpoints depend on."""
    import neuralogcm_jax

    out = {"neuralogcm_jax": neuralogcm_jax.__version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def grid_fingerprint(grid: Grid) -> dict:
    """What must match between a checkpoint and the grid it is used on."""
    h = hashlib.sha256()
    for a in (grid.lat, grid.lon, grid.depth):
        h.update(np.ascontiguousarray(np.round(np.asarray(a, np.float64), 6)).tobytes())
    h.update(np.packbits(np.asarray(grid.wet, bool)).tobytes())
    return {
        "shape": [int(s) for s in grid.shape],
        "n_levels": int(grid.n_levels),
        "lat_range": [float(grid.lat[0]), float(grid.lat[-1])],
        "lon_range": [float(grid.lon[0]), float(grid.lon[-1])],
        "sha256": h.hexdigest(),
    }


def make_metadata(cfg_dict: dict, grid: Grid, layout: ChannelLayout, *, step: int,
                  metrics: dict | None = None, model_config: dict | None = None) -> dict:
    """The ``meta`` item of a training checkpoint (see the module docstring).

    `cfg_dict`: the resolved run config as a dict; `model_config`: the model section as the
    model was built (run precision applied), default ``cfg_dict["model"]``."""
    import neuralogcm_jax

    model_config = dict(model_config if model_config is not None else cfg_dict.get("model", {}))
    return {
        "format_version": FORMAT_VERSION,
        "package": "neuralogcm_jax",
        "package_version": neuralogcm_jax.__version__,
        "package_versions": package_versions(),
        "step": int(step),
        "model_name": str(model_config.get("name", "")),
        "model_config": model_config,
        "seed": int(cfg_dict.get("train", {}).get("seed", 0)),
        "layout_depths_m": [float(d) for d in layout.depths_m],
        "grid": grid_fingerprint(grid),
        "config": cfg_dict,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }


def check_format(version: Any, known: int, where: str, what: str = "checkpoint") -> int:
    """`version` as an int; `CheckpointError` if missing or newer than `known`."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{where}: {what} format version {version!r} is not a version of "
                              f"this program's formats (1 .. {known})")
    if version > known:
        raise CheckpointError(
            f"{where}: {what} format version {version} is newer than this program reads "
            f"({known}); upgrade neuralogcm_jax"
        )
    return version


def check_compatible(meta: dict, *, model_name: str, grid: Grid, layout: ChannelLayout,
                     where: str) -> None:
    """`CheckpointError` unless a checkpoint's metadata matches the model, layout and grid."""
    check_format(meta.get("format_version"), FORMAT_VERSION, where)
    if meta.get("model_name") != model_name:
        raise CheckpointError(
            f"{where}: checkpoint is of model {meta.get('model_name')!r}, the config asks for "
            f"{model_name!r} (set model.name to match, or start a fresh run elsewhere)"
        )
    depths = [float(d) for d in layout.depths_m]
    got_depths = meta.get("layout_depths_m", [])
    if len(got_depths) != len(depths) or not np.allclose(got_depths, depths, rtol=1e-6):
        raise CheckpointError(
            f"{where}: checkpoint channel layout has depths {got_depths}, the data have {depths}"
        )
    fp = grid_fingerprint(grid)
    got = meta.get("grid", {})
    if got.get("shape") != fp["shape"]:
        raise CheckpointError(
            f"{where}: checkpoint grid is {got.get('shape')} (lat x lon), the data grid is "
            f"{fp['shape']}"
        )
    if got.get("sha256") != fp["sha256"]:
        raise CheckpointError(
            f"{where}: checkpoint grid (coordinates or land mask) differs from the data grid "
            f"of the same shape {fp['shape']}"
        )


def grid_differences(ref: Grid, ref_layout: ChannelLayout, grid: Grid,
                     layout: ChannelLayout) -> list[str]:
    """What differs between two grids and layouts (empty if they match), in words."""
    out = []
    if len(ref_layout.depths_m) != len(layout.depths_m) or not np.allclose(
        ref_layout.depths_m, layout.depths_m, rtol=1e-6
    ):
        out.append(f"channel layout depths {[float(d) for d in ref_layout.depths_m]} vs "
                   f"{[float(d) for d in layout.depths_m]}")
        return out
    if ref.shape != grid.shape:
        out.append(f"grid shape {list(ref.shape)} vs {list(grid.shape)} (lat x lon)")
        return out
    for name in ("lat", "lon", "depth"):
        a, b = np.asarray(getattr(ref, name)), np.asarray(getattr(grid, name))
        if not np.allclose(a, b, rtol=0, atol=1e-6):
            i = int(np.argmax(np.abs(a - b)))
            out.append(f"{name} coordinates ({name}[{i}] = {a[i]:g} vs {b[i]:g})")
    if not np.array_equal(np.asarray(ref.wet, bool), np.asarray(grid.wet, bool)):
        n = int((np.asarray(ref.wet, bool) != np.asarray(grid.wet, bool)).sum())
        out.append(f"land mask ({n} cells differ)")
    return out


def check_same_grid(ref: Grid, ref_layout: ChannelLayout, grid: Grid, layout: ChannelLayout,
                    where: str, what: str = "the model's", error: type = CheckpointError) -> None:
    """`error` naming what differs unless `grid`/`layout` equal `ref`/`ref_layout`."""
    diff = grid_differences(ref, ref_layout, grid, layout)
    if diff:
        raise error(f"{where}: grid or layout differs from {what}: {'; '.join(diff)}")


def stats_differences(ref, stats, rtol: float = 1e-5) -> list[str]:
    """What differs between two `Stats` of one layout and grid (empty if equal to `rtol`)."""
    out = []
    for name in ("mean", "std"):
        a, b = np.asarray(getattr(ref, name), np.float64), np.asarray(getattr(stats, name),
                                                                      np.float64)
        bad = ~np.isclose(a, b, rtol=rtol, atol=0)
        if bad.any():
            c = int(np.argmax(bad))
            out.append(f"{name} of channel {c} ({ref.layout.channel_names[c]}) {a[c]:g} vs "
                       f"{b[c]:g}")
    if ref.harmonics.shape != stats.harmonics.shape:
        out.append(f"climatology harmonics of shape {ref.harmonics.shape} vs "
                   f"{stats.harmonics.shape}")
    else:
        a, b = np.asarray(ref.harmonics, np.float64), np.asarray(stats.harmonics, np.float64)
        tol = rtol * max(float(np.abs(a).max(initial=0.0)), 1e-30)
        if not np.allclose(a, b, rtol=rtol, atol=tol):
            k, c, j, i = (int(v) for v in np.unravel_index(np.argmax(np.abs(a - b)), a.shape))
            out.append(f"climatology (harmonic {k} of channel {c} at row {j}, column {i}: "
                       f"{a[k, c, j, i]:g} vs {b[k, c, j, i]:g})")
    return out


# ------------------------------------------------------------------------------ PRNG keys
def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_storable(tree: Any) -> Any:
    """Typed PRNG key arrays -> their raw uint32 data (Orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def storable_abstract(abstract: Any) -> Any:
    """The restore target of `to_storable` of a tree with this abstract structure."""

    def conv(s):
        if _is_key(s):
            shape = jax.eval_shape(jax.random.key_data, s).shape
            return jax.ShapeDtypeStruct(shape, jnp.uint32, sharding=getattr(s, "sharding", None))
        return s

    return jax.tree.map(conv, abstract)


def from_storable(tree: Any, abstract: Any) -> Any:
    """Inverse of `to_storable`, guided by the abstract target's key dtypes."""
    return jax.tree.map(
        lambda x, s: jax.random.wrap_key_data(x, impl=jax.random.key_impl(jnp.zeros((), s.dtype)))
        if _is_key(s)
        else x,
        tree,
        abstract,
    )


# ------------------------------------------------------------------------------ model arrays
def model_arrays(grid: Grid, stats) -> dict[str, dict[str, np.ndarray]]:
    """The ``model`` item: ``{"grid": {lat, lon, depth, wet}, "stats": {mean, std,
    clim_harmonics}}`` as numpy arrays (what, with the config, rebuilds the model)."""
    return {
        "grid": {"lat": np.asarray(grid.lat, np.float64), "lon": np.asarray(grid.lon, np.float64),
                 "depth": np.asarray(grid.depth, np.float64),
                 "wet": np.asarray(grid.wet, np.uint8)},
        "stats": {"mean": np.asarray(stats.mean, np.float32),
                  "std": np.asarray(stats.std, np.float32),
                  "clim_harmonics": np.asarray(stats.harmonics, np.float32)},
    }


def _need(arrays: dict, keys: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    out = {}
    for k in keys:
        if k not in arrays:
            raise CheckpointError(f"{where}: no entry {k!r} (has {sorted(arrays)})")
        try:
            out[k] = np.asarray(arrays[k])
        except Exception as e:  # a damaged npz member
            raise CheckpointError(f"{where}: entry {k!r} is unreadable: {e}") from None
    return out


def grid_from_arrays(arrays: dict, meta: dict, where: str) -> Grid:
    """The `Grid` of stored arrays, checked against the fingerprint in `meta`."""
    a = _need(arrays, GRID_KEYS, where)
    try:
        grid = Grid.from_coords(a["lat"], a["lon"], a["depth"], a["wet"].astype(bool))
    except (GridError, ValueError, IndexError) as e:
        raise CheckpointError(f"{where}: the stored grid is invalid: {e}") from None
    want = meta.get("grid", {})
    fp = grid_fingerprint(grid)
    if want.get("sha256") not in (None, fp["sha256"]):
        raise CheckpointError(
            f"{where}: the stored grid {fp['shape']} does not match the fingerprint in the "
            f"metadata ({want.get('shape')}): damaged or mixed-up files"
        )
    return grid


def stats_from_arrays(arrays: dict, grid: Grid, layout: ChannelLayout, where: str):
    """The `Stats` of stored arrays, every shape and value checked (errors name the entry)."""
    from neuralogcm_jax.data.normalize import Stats

    a = _need(arrays, STATS_KEYS, where)
    C, n = layout.n_channels, layout.n_ocean
    for k in ("mean", "std"):
        if a[k].shape != (C,):
            raise CheckpointError(f"{where}: entry {k!r} has shape {a[k].shape}, the checkpoint's "
                                  f"{layout.n_levels}-level layout needs ({C},)")
        if not np.all(np.isfinite(a[k])):
            c = int(np.argmax(~np.isfinite(a[k])))
            raise CheckpointError(f"{where}: entry {k!r} is {a[k][c]} for channel {c} "
                                  f"({layout.channel_names[c]})")
    bad = ~(a["std"] > 0)
    if bad.any():
        c = int(np.argmax(bad))
        raise CheckpointError(f"{where}: entry 'std' is {a['std'][c]} for channel {c} "
                              f"({layout.channel_names[c]}); must be > 0")
    h = a["clim_harmonics"]
    if h.ndim != 4 or h.shape[0] % 2 != 1 or h.shape[1:] != (n,) + grid.shape:
        raise CheckpointError(
            f"{where}: entry 'clim_harmonics' has shape {h.shape}, the checkpoint's grid and "
            f"layout need [2 K + 1, {n}, {grid.shape[0]}, {grid.shape[1]}]"
        )
    if not np.all(np.isfinite(h)):
        k, c, j, i = (int(v) for v in np.argwhere(~np.isfinite(h))[0])
        raise CheckpointError(f"{where}: entry 'clim_harmonics' is {h[k, c, j, i]} at harmonic "
                              f"{k}, channel {c}, row {j}, column {i}")
    try:
        return Stats.build(a["mean"], a["std"], None, grid.wet, layout, harmonics=h)
    except DataError as e:
        raise CheckpointError(f"{where}: {e}") from None


# ------------------------------------------------------------------------------ model building
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
    from neuralogcm_jax import schema
    from neuralogcm_jax.model import ModelConfig, build_model

    cfg = schema.from_dict(ModelConfig, model_config, "model")
    return build_model(cfg, grid, stats, seed=seed)


def _single_device_abstract(tree):
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=dev), tree)


def _params_of(model):
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest, nnx.to_pure_dict(params)


def _with_params(model, pure_params):
    from flax import nnx

    graphdef, params, rest, _ = _params_of(model)
    nnx.replace_by_pure_dict(params, pure_params)
    return nnx.merge(graphdef, params, rest)


def _restore_tree(path: Path, target: Any | None = None, *, partial: bool = False) -> Any:
    import orbax.checkpoint as ocp

    path = _abs(path)
    with ocp.PyTreeCheckpointer() as c:
        if target is None:
            return c.restore(path)
        args = ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=partial,
        )
        return c.restore(path, args=args)


def _abs(path):
    p = output_path(path)
    return p.absolute() if isinstance(p, Path) else p


# ------------------------------------------------------------------------------ training dirs
def list_steps(directory: str | os.PathLike) -> list[int]:
    """Finished checkpoint steps in `directory` (temporary, unfinished saves are ignored)."""
    d = output_path(directory)
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / "meta").exists())


def read_step_metadata(directory: str | os.PathLike, step: int) -> dict:
    """The ``meta`` item of one step of a training checkpoint directory."""
    path = output_path(directory) / str(step) / "meta" / "metadata"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path.parent.parent)!r} has no metadata") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata {str(path)!r} is corrupt: {e}") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CheckpointError(f"checkpoint metadata {str(path)!r} is not of this program")
    return meta


def is_export(path: str | os.PathLike) -> bool:
    p = output_path(path)
    return (p / "metadata.json").is_file() and (p / "params").is_dir()


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A training checkpoint directory: `path` itself, or ``path/checkpoints`` of a run dir."""
    p = output_path(path)
    if not p.exists():
        raise CheckpointError(f"{str(p)!r} does not exist")
    if not list_steps(p) and list_steps(p / "checkpoints"):
        return p / "checkpoints"
    return p


def read_config(path: str | os.PathLike, step: int | None = None) -> dict:
    """The resolved run config stored with an export or a training checkpoint."""
    p = output_path(path)
    if is_export(p):
        import yaml

        try:
            return yaml.safe_load((p / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CheckpointError(f"{str(p / 'config.yaml')!r}: unreadable: {e}") from None
    d = resolve_checkpoint_dir(p)
    steps = list_steps(d)
    if not steps:
        raise CheckpointError(f"no checkpoint in {str(d)!r}")
    return read_step_metadata(d, steps[-1] if step is None else step).get("config", {})


# ------------------------------------------------------------------------------ exports
def write_export(out_dir: str | os.PathLike, *, meta: dict, config: dict, grid: Grid, stats,
                 params: Any) -> Path:
    """Write an export folder (see the module docstring) atomically: into ``OUT.partial``,
    renamed when complete. `params`: the pure dict of the model's parameters."""
    import orbax.checkpoint as ocp
    import yaml

    out = output_path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"export directory {str(out)!r} exists and is not empty")
    tmp = out.parent / (out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp) if isinstance(tmp, Path) else tmp.rmtree()
    tmp.mkdir(parents=True)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False,
                                                    default_flow_style=None))
    emeta = {k: v for k, v in meta.items() if k != "config"}
    emeta.update(export_format_version=EXPORT_FORMAT_VERSION,
                 package_versions=package_versions())
    (tmp / "metadata.json").write_text(json.dumps(emeta, indent=1))
    arrays = model_arrays(grid, stats)
    for name in ("grid", "stats"):
        with (tmp / f"{name}.npz").open("wb") as f:
            np.savez(f, **arrays[name])
    with ocp.PyTreeCheckpointer() as c:
        c.save(_abs(tmp / "params"), jax.device_get(params))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


def _read_npz(path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing")
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError, ...
        raise CheckpointError(f"{str(path)!r} is unreadable ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------------ load_model
def _from_data_root(data_root, layout: ChannelLayout, where: str):
    """Grid and stats of a data root (format-1 checkpoints): an HDF5 root or an array dataset."""
    from neuralogcm_jax.data.normalize import Stats

    check_local(data_root, "data_root")
    root = Path(data_root)
    if root.suffix == ".npz":
        if not root.is_file():
            raise DataError(f"data_root {str(root)!r}: array dataset file does not exist")
        z = _read_npz(root)
        grid = Grid.from_coords(z["lat"], z["lon"], z["depth"], z["wet"])
        return grid, Stats.identity(grid.wet, layout)
    from neuralogcm_jax.data import h5format

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
    layout = ChannelLayout(tuple(meta["layout_depths_m"]))
    if version >= 2:
        item = step_dir / MODEL_ITEM
        if not item.is_dir():
            raise CheckpointError(f"{str(item)!r} is missing (format {version} stores the grid "
                                  f"and statistics there)")
        try:
            arrays = _restore_tree(item)
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
        out = _restore_tree(step_dir / "state", {"params": abstract}, partial=True)
    except Exception as e:
        raise CheckpointError(f"{str(step_dir / 'state')!r}: cannot restore the parameters "
                              f"({type(e).__name__}: {e})") from None
    model = _with_params(model, _checked_params(out["params"], abstract, step_dir / "state"))
    return Loaded(model, meta, meta.get("config", {}), grid, stats, step, d)


def _load_export(p: Path, stats, data_root):
    import yaml

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
    layout = ChannelLayout(tuple(meta["layout_depths_m"]))
    grid = grid_from_arrays(_read_npz(p / "grid.npz"), meta, str(p / "grid.npz"))
    if version >= 2:
        own = stats_from_arrays(_read_npz(p / "stats.npz"), grid, layout, str(p / "stats.npz"))
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
        params = _restore_tree(p / "params", abstract)
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
    if stats.layout.n_channels != layout.n_channels or stats.shape != grid.shape:
        raise CheckpointError(
            f"{where}: the given statistics are for {stats.layout.n_levels} levels on "
            f"{list(stats.shape)}, the checkpoint for {layout.n_levels} levels on "
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
