"""Orbax checkpoints of a training run (see `docs/design.md`). Never pickle.

A checkpoint directory holds one sub-directory per saved step, each with four items:

* ``state`` -- the train state pytree (params, the model's RNG streams, optimizer state, step,
  rng, non-finite counters; not the model's constants, which the ``model`` item rebuilds),
  arrays written with Orbax's PyTree handler (tensorstore); JAX PRNG key arrays are stored as
  their raw ``uint32`` data;
* ``data`` -- the data-iterator state (JSON), so a resumed run reads the same batches;
* ``meta`` -- JSON: format version, package versions, step, the resolved config, the model
  config, the channel layout's depths, a fingerprint of the grid, the metrics of the save;
* ``model`` -- the grid and the normalisation statistics (mean, std, climatology harmonics).

``meta`` and ``model`` make the step self-contained: `neuralogcm_jax.checkpointing.load_model`
rebuilds the model from them without the data root. The format (and everything shared with
exports) is defined in `neuralogcm_jax.checkpointing`; this module adds the manager.

Saves are asynchronous (training goes on while tensorstore writes), the ``keep`` most recent
steps are kept plus the best one by validation loss. Orbax writes each step into a temporary
directory and renames it when complete, so a killed run never leaves a half-written step that
looks finished. Restoring takes an abstract target carrying the *new* shardings, so a checkpoint
written on 8 devices restores onto 2 or 1, or onto a different mesh shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from neuralogcm_jax.checkpointing import (  # noqa: F401  (re-exported for the trainer)
    FORMAT_VERSION,
    MODEL_ITEM,
    check_compatible,
    from_storable,
    grid_fingerprint,
    list_steps,
    make_metadata,
    model_arrays,
    read_step_metadata,
    storable_abstract,
    to_storable,
)
from neuralogcm_jax.errors import CheckpointError
from neuralogcm_jax.paths import output_path

ITEMS = ("state", "data", "meta", MODEL_ITEM)


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
        d = output_path(directory)
        self.directory = d.absolute() if isinstance(d, Path) else d  # gs://... stays a URL
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
            MODEL_ITEM: ocp.PyTreeCheckpointHandler(),
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
        return read_step_metadata(self.directory, self._resolve(step))

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
        model: dict | None = None,
    ) -> bool:
        """Start saving `step` (asynchronously unless configured otherwise). `model`: the
        ``model`` item (`checkpointing.model_arrays`); the trainer always passes it."""
        if step in self.manager.all_steps():
            return False
        items = dict(
            state=ocp.args.PyTreeSave(to_storable(train_state)),
            data=ocp.args.JsonSave(_encode_data_state(data_state)),
            meta=ocp.args.JsonSave(metadata),
        )
        if model is not None:
            items[MODEL_ITEM] = ocp.args.PyTreeSave(model)
        args = ocp.args.Composite(**items)
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
