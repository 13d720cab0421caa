"""The device mesh and how arrays are laid out on it (see `docs/design.md`).

The mesh has two axes:

* ``'data'``: the batch is split over it (data parallelism; gradients are all-reduced by XLA
  because parameters are replicated and the loss is a mean over the global batch);
* ``'x'``: the last array axis (longitude) is split over it when ``x > 1``, for grids too big for
  one device. XLA inserts the halo exchanges of the periodic stencils itself.

Both axes are `AxisType.Auto`, so the model code needs no sharding annotations: jit propagates
the input shardings. Parameters and optimizer state are replicated.

Multi-host: every process reads only its own share of the global batch (the data pipeline's
``shard_index = process_index``), and `shard_batch` assembles the global `jax.Array` with
`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neuralogcm_jax.errors import ConfigError

AXES = ("data", "x")


def make_mesh(data: int = -1, x: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ``('data', 'x')`` mesh over `devices` (default: all devices of all processes).

    ``data = -1`` takes every device not used by ``x``. Raises `ConfigError` if the shape does
    not match the device count."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if x < 1 or n % x:
        raise ConfigError(f"mesh.x = {x} does not divide the {n} available devices")
    if data == -1:
        data = n // x
    if data < 1 or data * x != n:
        raise ConfigError(
            f"mesh.data x mesh.x = {data} x {x} = {data * x} does not match the {n} devices"
        )
    auto = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh((data, x), AXES, axis_types=auto, devices=devices)


def mesh_from_config(cfg, devices: Sequence[Any] | None = None) -> Mesh:
    """`make_mesh` from a `MeshConfig` (``cfg.data``, ``cfg.x``)."""
    return make_mesh(cfg.data, cfg.x, devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, P())


def batch_spec(ndim: int, mesh: Mesh) -> P:
    """Partition of a batch array of rank `ndim`: axis 0 over 'data', the last axis
    (longitude) over 'x' for arrays with spatial axes (rank >= 3) when the mesh has ``x > 1``."""
    if ndim == 0:
        return P()
    spec = ["data"] + [None] * (ndim - 1)
    if ndim >= 3 and mesh.shape["x"] > 1:
        spec[-1] = "x"
    return P(*spec)


def batch_sharding(ndim: int, mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(ndim, mesh))


def global_batch_size(per_device: int, mesh: Mesh) -> int:
    """Samples per optimizer step: per-device batch times the devices along 'data'."""
    return per_device * mesh.shape["data"]


def check_batch_layout(global_batch: int, width: int | None, mesh: Mesh) -> None:
    """`ConfigError` unless the global batch splits evenly over 'data' and over the processes,
    and the longitude count over 'x' -- checked before any compute."""
    nd, nx = mesh.shape["data"], mesh.shape["x"]
    if global_batch < 1 or global_batch % nd:
        raise ConfigError(
            f"global batch size {global_batch} does not divide over the {nd} devices of the "
            f"'data' mesh axis (set data.batch_size per device, or mesh.data)"
        )
    nproc = jax.process_count()
    if global_batch % nproc:
        raise ConfigError(
            f"global batch size {global_batch} does not divide over {nproc} processes"
        )
    if width is not None and nx > 1 and width % nx:
        raise ConfigError(
            f"{width} longitudes do not divide over the {nx} devices of the 'x' mesh axis (mesh.x)"
        )


def process_batch_slice(global_batch: int, mesh: Mesh) -> slice:
    """The rows of the global batch this process must supply (in process order)."""
    per = global_batch // jax.process_count()
    i = jax.process_index()
    return slice(i * per, (i + 1) * per)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, global_batch: int | None = None):
    """Process-local numpy batch -> dict of global `jax.Array` sharded by `batch_spec`.

    With one process the local batch is the global batch. With several, each process passes
    its own rows (``global_batch / process_count`` of them) and the arrays are assembled with
    `jax.make_array_from_process_local_data`."""
    out = {}
    nproc = jax.process_count()
    for k, v in batch.items():
        v = np.asarray(v)
        sh = batch_sharding(v.ndim, mesh)
        if nproc == 1:
            out[k] = jax.device_put(v, sh)
        else:
            gb = global_batch if global_batch is not None else v.shape[0] * nproc
            out[k] = jax.make_array_from_process_local_data(sh, v, (gb,) + v.shape[1:])
    return out


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree of arrays replicated on every device of `mesh` (works multi-host:
    every process must pass identical values).

    Typed PRNG key arrays (the models' `nnx.RngState`) cannot become NumPy arrays: they are
    placed through their raw ``uint32`` key data and wrapped again with their own impl."""
    sh = replicated(mesh)
    nproc = jax.process_count()

    def put_plain(x):
        if nproc == 1:
            return jax.device_put(x, sh)
        # every process holds the whole (identical) value; the global array is assembled from
        # the process-local copies without any collective
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sh, x, x.shape)

    def put(x):
        if _is_key(x):
            impl = jax.random.key_impl(x)
            data = put_plain(jax.random.key_data(x))
            return jax.jit(
                lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sh
            )(data)
        return put_plain(x if isinstance(x, jax.Array) else np.asarray(x))

    return jax.tree.map(put, tree)


def abstract_like(tree: Any, sharding: NamedSharding) -> Any:
    """`jax.ShapeDtypeStruct` with `sharding` for every array leaf (a restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree
    )
