"""Checkpoint folders on disk (or a store): training checkpoint directories and exports.

Listing a training directory's finished steps (`list_steps`) and reading a step's ``meta`` item
(`read_step_metadata`) or the run config (`read_config`); writing an export atomically
(`write_export`); reading Orbax PyTrees (`restore_tree`) and ``.npz`` members (`read_npz`) with
errors that name the file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import yaml

from neuralogcm_jax.checkpointing.arrays import model_arrays
from neuralogcm_jax.checkpointing.metadata import EXPORT_FORMAT_VERSION, package_versions
from neuralogcm_jax.errors import CheckpointError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.paths import output_path


def restore_tree(path: Path, target: Any | None = None, *, partial: bool = False) -> Any:
    """The Orbax PyTree at `path` (restored onto `target`'s shapes and shardings if given;
    `partial`: only the entries of `target`)."""
    path = absolute(path)
    with ocp.PyTreeCheckpointer() as c:
        if target is None:
            return c.restore(path)
        args = ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=partial,
        )
        return c.restore(path, args=args)


def absolute(path):
    """`path` as Orbax wants it: absolute (a URL stays as it is)."""
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
    """Write an export folder (see `neuralogcm_jax.checkpointing`) atomically: into
    ``OUT.partial``, renamed when complete. `params`: the pure dict of the model's parameters."""
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
        c.save(absolute(tmp / "params"), jax.device_get(params))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


def read_npz(path) -> dict:
    """The members of the ``.npz`` file `path`; `CheckpointError` naming it if it is missing or
    unreadable."""
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing")
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError, ...
        raise CheckpointError(f"{str(path)!r} is unreadable ({type(e).__name__}: {e})") from None
