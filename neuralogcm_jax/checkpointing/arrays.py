"""The arrays a checkpoint stores beside the parameters, and how they are stored.

The ``model`` item (`model_arrays`: the grid and the normalisation statistics) is read back,
every shape and value checked, by `grid_from_arrays` and `stats_from_arrays`. JAX PRNG key arrays
are stored as their raw ``uint32`` data (`to_storable`); `storable_abstract` is the restore target
of such a tree and `from_storable` makes keys of them again.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.checkpointing.metadata import grid_fingerprint
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import CheckpointError, DataError, GridError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout

GRID_KEYS = ("lat", "lon", "depth", "wet")
SEA_FLOOR_KEY = "sea_floor_m"  # an optional grid entry
STATS_KEYS = ("mean", "std", "clim_harmonics")


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
    """The ``model`` item: ``{"grid": {lat, lon, depth, wet[, sea_floor_m]}, "stats": {mean,
    std, clim_harmonics}}`` as numpy arrays (what, with the config, rebuilds the model);
    ``sea_floor_m`` only for a grid with one (`Grid.sea_floor_m`)."""
    g = {"lat": np.asarray(grid.lat, np.float64), "lon": np.asarray(grid.lon, np.float64),
         "depth": np.asarray(grid.depth, np.float64), "wet": np.asarray(grid.wet, np.uint8)}
    if grid.sea_floor_m is not None:
        g[SEA_FLOOR_KEY] = np.asarray(grid.sea_floor_m, np.float64)
    return {
        "grid": g,
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
        if SEA_FLOOR_KEY in arrays:
            grid = grid.with_sea_floor(_need(arrays, (SEA_FLOOR_KEY,), where)[SEA_FLOOR_KEY])
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
