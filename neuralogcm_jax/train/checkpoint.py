"""Orbax checkpoints of a training run (DESIGN.md decision 8). Never pickle.

A checkpoint directory holds one sub-directory per saved step, each with three items:

* ``state`` -- the train state pytree (params, the model's RNG streams, optimizer state, step,
  rng, non-finite counters; not the model's constant masks and statistics, which are rebuilt from
  the data's stats), arrays written with Orbax's PyTree handler (tensorstore); JAX PRNG key
  arrays are stored as their raw ``uint32`` data;
* ``data`` -- the data-iterator state (JSON), so a resumed run reads the same batches;
* ``meta`` -- JSON: format version, package version, step, the resolved config, the model name,
  the channel layout's depths and a fingerprint of the grid, and the metrics of the save.

Saves are asynchronous (training goes on while tensorstore writes), the ``keep`` most recent
steps are kept plus the best one by validation loss. Orbax writes each step into a temporary
directory and renames it when complete, so a killed run never leaves a half-written step that
looks finished. Restoring takes an abstract target carrying the *new* shardings, so a checkpoint
written on 8 devices restores onto 2 or 1, or onto a different mesh shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

import neuralogcm_jax
from neuralogcm_jax.errors import CheckpointError

FORMAT_VERSION = 1
ITEMS = ("state", "data", "meta")


# ------------------------------------------------------------------------------ fingerprints
def grid_fingerprint(grid) -> dict:
    """What must match between a checkpoint and the grid it is restored onto."""
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


def make_metadata(cfg_dict: dict, grid, layout, *, step: int, metrics: dict | None = None) -> dict:
    """The ``meta`` item: everything needed to check compatibility and rebuild the model."""
    return {
        "format_version": FORMAT_VERSION,
        "package": "neuralogcm_jax",
        "package_version": neuralogcm_jax.__version__,
        "step": int(step),
        "model_name": str(cfg_dict.get("model", {}).get("name", "")),
        "layout_depths_m": [float(d) for d in layout.depths_m],
        "grid": grid_fingerprint(grid),
        "config": cfg_dict,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }


def check_compatible(meta: dict, *, model_name: str, grid, layout, where: str) -> None:
    """`CheckpointError` unless a checkpoint's metadata matches the model, layout and grid."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {meta.get('format_version')!r}, this program "
            f"reads version {FORMAT_VERSION}"
        )
    if meta.get("model_name") != model_name:
        raise CheckpointError(
            f"{where}: checkpoint is of model {meta.get('model_name')!r}, the config asks for "
            f"{model_name!r} (set model.name to match, or start a fresh run elsewhere)"
        )
    depths = [float(d) for d in layout.depths_m]
    if not np.allclose(meta.get("layout_depths_m", []), depths, rtol=1e-6) or len(
        meta.get("layout_depths_m", [])
    ) != len(depths):
        raise CheckpointError(
            f"{where}: checkpoint channel layout has depths {meta.get('layout_depths_m')}, the "
            f"data have {depths}"
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


def _encode_data_state(data_state: Any) -> dict:
    if data_state is None:
        return {"kind": "none"}
    if isinstance(data_state, bytes):
        return {"kind": "bytes", "value": data_state.decode("utf-8")}
    if isinstance(data_state, str):
        return {"kind": "str", "value": data_state}
    try:
        json.dumps(data_state)
    except TypeError as e:
        raise CheckpointError(f"data-iterator state is not JSON-serialisable: {e}") from e
    return {"kind": "json", "value": data_state}


def _decode_data_state(d: dict) -> Any:
    kind = d.get("kind")
    if kind == "none":
        return None
    if kind == "bytes":
        return d["value"].encode("utf-8")
    if kind in ("str", "json"):
        return d["value"]
    raise CheckpointError(f"unknown data-iterator state kind {kind!r} in checkpoint")


# ------------------------------------------------------------------------------ manager
def list_steps(directory: str | os.PathLike) -> list[int]:
    """Finished checkpoint steps in `directory` (temporary, unfinished saves are ignored)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if p.is_dir() and p.name.isdigit() and (p / "meta").exists():
            out.append(int(p.name))
    return sorted(out)


class Checkpointer:
    """An Orbax `CheckpointManager` with the items of this project.

    Args:
      directory: where step sub-directories go (created unless `read_only`).
      keep: most recent steps kept.
      async_save: write in a background thread.
      keep_best: also keep the step with the lowest ``val_loss`` metric.
      read_only: never write or delete (restore, export, inspect).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 3,
        async_save: bool = True,
        keep_best: bool = True,
        best_metric: str = "val_loss",
        read_only: bool = False,
    ):
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {str(self.directory)!r} does not exist")
        policies = [pp.LatestN(n=max(int(keep), 1))]
        if keep_best:
            policies.append(
                pp.BestN(
                    get_metric_fn=lambda m: float(m.get(best_metric, np.inf)),
                    reverse=True,  # sorted descending, the last (kept) one is the lowest
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=async_save,
            preservation_policy=pp.AnyPreservationPolicy(policies),
            cleanup_tmp_directories=not read_only,
        )
        handlers = {
            "state": ocp.PyTreeCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        try:
            self.manager = ocp.CheckpointManager(
                self.directory, options=options, item_names=ITEMS, item_handlers=handlers
            )
        except Exception as e:  # unreadable/unwritable directory
            raise CheckpointError(
                f"cannot open checkpoint directory {str(self.directory)!r}: {e}"
            ) from e

    # -- queries
    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def _resolve(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise CheckpointError(
                f"no checkpoint of step {step} in {str(self.directory)!r}; steps: {steps}"
            )
        return step

    def read_metadata(self, step: int | None = None) -> dict:
        """The ``meta`` item of `step` (latest if None)."""
        step = self._resolve(step)
        path = self.directory / str(step) / "meta" / "metadata"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise CheckpointError(f"checkpoint {str(path.parent.parent)!r} has no metadata") from e
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint metadata {str(path)!r} is corrupt: {e}") from e
        if not isinstance(meta, dict) or "format_version" not in meta:
            raise CheckpointError(f"checkpoint metadata {str(path)!r} is not of this program")
        return meta

    # -- save / restore
    def save(
        self,
        step: int,
        train_state: Any,
        data_state: Any,
        metadata: dict,
        *,
        metrics: dict | None = None,
        force: bool = True,
    ) -> bool:
        """Start saving `step` (asynchronously unless configured otherwise)."""
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(to_storable(train_state)),
            data=ocp.args.JsonSave(_encode_data_state(data_state)),
            meta=ocp.args.JsonSave(metadata),
        )
        m = {k: float(v) for k, v in (metrics or {}).items()} or None
        return self.manager.save(step, args=args, metrics=m, force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, int]:
        """``(train_state, data_state, step)`` restored onto the shardings of `abstract_state`
        (a pytree of `jax.ShapeDtypeStruct` with ``sharding``). Raises `CheckpointError` if the
        checkpoint does not hold that structure or its files are damaged."""
        step = self._resolve(step)
        target = storable_abstract(abstract_state)
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(target, restore_args=restore_args),
                    data=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:
            raise CheckpointError(
                f"cannot restore step {step} from {str(self.directory)!r} (corrupt, or not a "
                f"checkpoint of this model and optimizer): {type(e).__name__}: {e}"
            ) from e
        state = from_storable(out["state"], abstract_state)
        _check_structure(state, abstract_state, self.directory / str(step))
        return state, _decode_data_state(out["data"] or {"kind": "none"}), step

    def restore_params(self, abstract_params: Any, step: int | None = None) -> Any:
        """Only ``state["params"]`` of `step` onto `abstract_params`' shardings (partial
        restore: the optimizer state is not read)."""
        step = self._resolve(step)
        target = {"params": storable_abstract(abstract_params)}
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        target, restore_args=restore_args, partial_restore=True
                    )
                ),
            )
        except Exception as e:
            raise CheckpointError(
                f"cannot restore parameters of step {step} from {str(self.directory)!r}: "
                f"{type(e).__name__}: {e}"
            ) from e
        params = out["state"]["params"]
        _check_structure(params, abstract_params, self.directory / str(step))
        return params

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _check_structure(tree, abstract, where) -> None:
    got = jax.tree_util.tree_structure(tree)
    want = jax.tree_util.tree_structure(abstract)
    if got != want:
        raise CheckpointError(f"checkpoint {str(where)!r} holds another tree structure than the model")
    for path, a, s in zip(
        jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(tree), jax.tree.leaves(abstract)
    ):
        if tuple(np.shape(a)) != tuple(s.shape):
            raise CheckpointError(
                f"checkpoint {str(where)!r}: {jax.tree_util.keystr(path[0])} has shape "
                f"{tuple(np.shape(a))}, the model expects {tuple(s.shape)}"
            )
