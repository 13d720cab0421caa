"""Checkpoint format and metadata: versions, the ``meta`` item, compatibility checks.

`make_metadata` writes what `check_compatible` (and `neuralogcm_jax.checkpointing.loading`) read
back: format version, package versions, the resolved and the effective model config, the channel
layout's depths and a fingerprint of the grid. `grid_differences` and `stats_differences` say in
words what differs between two grids/layouts or two `Stats`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from typing import Any

import numpy as np

import neuralogcm_jax
from neuralogcm_jax.errors import CheckpointError, LayoutError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import FORCING_VARIABLES, ChannelLayout

FORMAT_VERSION = 2
EXPORT_FORMAT_VERSION = 2
MODEL_ITEM = "model"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain", "h5py")


def package_versions() -> dict[str, str]:
    """Installed versions of this package and of the libraries its checkpoints depend on."""
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
        "layout_forcing_variables": list(layout.forcing_variables),
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


def layout_of_metadata(meta: dict, where: str) -> ChannelLayout:
    """The channel layout a checkpoint or export was trained on: its depths and forcing channels
    (metadata written before the optional freshwater channels has the four of
    `layout.FORCING_VARIABLES`)."""
    try:
        return ChannelLayout.from_forcing_variables(
            tuple(meta["layout_depths_m"]),
            meta.get("layout_forcing_variables", FORCING_VARIABLES))
    except KeyError:
        raise CheckpointError(f"{where}: metadata has no 'layout_depths_m'") from None
    except (LayoutError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: metadata's channel layout: {e}") from None


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
    got_forcing = list(meta.get("layout_forcing_variables", FORCING_VARIABLES))
    if got_forcing != list(layout.forcing_variables):
        raise CheckpointError(
            f"{where}: checkpoint has the forcing channels {' '.join(got_forcing)}, the data "
            f"have {' '.join(layout.forcing_variables)}"
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
    if ref_layout.forcing_variables != layout.forcing_variables:
        out.append(f"forcing channels {' '.join(ref_layout.forcing_variables)} vs "
                   f"{' '.join(layout.forcing_variables)}")
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
