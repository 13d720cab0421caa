"""Paths of outputs (local folders or object-store URLs) and of data roots (local only).

Checkpoint and output directories may be URLs such as ``gs://bucket/runs/x``: they become
`etils.epath.Path` objects, which keep the scheme (`pathlib.Path` collapses ``gs://b`` into the
local folder ``gs:/b``) and reach the store through epath's backends (gcsfs or TensorFlow for
GCS), as Orbax does. Local paths stay `pathlib.Path`. Data roots are read with h5py and numpy
memory maps, which need a file system: a URL there is a `ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from etils import epath

from neuralogcm_jax.errors import ConfigError


def is_url(path: Any) -> bool:
    """True for ``scheme://...`` (gs://, s3://, az://, http://, ...)."""
    return "://" in os.fspath(path) if isinstance(path, (str, os.PathLike)) else False


def output_path(path: str | os.PathLike):
    """A checkpoint/output directory: `epath.Path` for URLs, `pathlib.Path` otherwise."""
    if is_url(path):
        return epath.Path(os.fspath(path))
    return Path(path)


def check_local(path: Any, what: str) -> None:
    """`ConfigError` naming `what` if `path` is a URL (data roots must be local or mounted)."""
    if path is not None and is_url(path):
        raise ConfigError(
            f"{what} {os.fspath(path)!r} is a URL; data roots are read with h5py and memory "
            f"maps and must be a local or mounted folder (copy the data to local disk, or mount "
            f"the bucket, e.g. with gcsfuse)"
        )


CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: shipped in the wheel


def packaged_configs() -> list[str]:
    """Names of the training configs shipped with the package (``--config NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(value: str | os.PathLike) -> Path:
    """A ``--config`` value -> a YAML file: an existing path, else a packaged config's name
    (``neuralogcm`` or ``neuralogcm.yaml``). ConfigError naming both if neither exists."""
    path = Path(value)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and (CONFIG_DIR / f"{name}.yaml").is_file():
        return CONFIG_DIR / f"{name}.yaml"
    raise ConfigError(
        f"config {str(value)!r} is neither a file nor a packaged config "
        f"(packaged: {', '.join(packaged_configs())})"
    )
