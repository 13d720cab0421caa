"""The tests' scaffolding: a toy model and an in-memory dataset format, registered with the
package as a plugin would be.

* `DiffusionForecaster` (model name ``diffusion_toy``): the smallest model that honours the
  `Forecaster` contract (learnable Laplacian diffusion plus a pointwise linear corrector), on
  which the training machinery (sharding, checkpoints, the physics learning rate) is tested
  independently of the production networks;
* the "array dataset": a ``.npz`` file written by `write_array_dataset` (normalised fields per
  split, grid coordinates and wet mask, identity statistics), which ``data.root`` may name.

Importing this module registers both (`neuralogcm_jax.model.register_model`,
`neuralogcm_jax.train.loop.register_data_format`). `conftest.py` imports it, and sets
``NEURALOGCM_PLUGINS=tests.toy`` so that the command-line runs the tests start in child
processes import it too.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuralogcm_jax.calendar import iso_date
from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError, DataError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import register_model
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, default_raw
from neuralogcm_jax.train.loop import TrainData, register_data_format

TOY_MODEL = "diffusion_toy"


# ------------------------------------------------------------------------------ toy model
class DiffusionForecaster(nnx.Module):
    """One daily step = Laplacian diffusion with learnable coefficients + a linear corrector.

    ``next = D(state) + W [state; forcing_next]`` where D integrates ``d a / dt = nu lap(a)``
    over one day (86400 s) with explicit sub-steps under the stability limit, ``nu = nu_m``
    (m^2/s) for the velocity channels and ``nu_t`` for S, T and SSH, and W is a pointwise
    (1x1) linear map of the ocean and forcing channels. The Laplacian is the flux form on the
    grid's metric (zonal width clamped at half the meridional height so the polar rows do not
    set the sub-step), with no flux through land faces; land stays exactly 0.

    A deliberately small stand-in for the production models: the training machinery (sharding,
    checkpoints, the physics learning rate) is tested on it.
    """

    def __init__(
        self,
        grid: Grid,
        layout: ChannelLayout,
        *,
        physics_coefficients: dict[str, float] | None = None,
        per_level: bool = False,
        nu_max_m2_s: float = 2.5e5,
        corrector: bool = True,
        rngs: nnx.Rngs,
    ):
        if grid.n_levels != layout.n_levels:
            raise ConfigError(
                f"grid has {grid.n_levels} levels, channel layout {layout.n_levels}"
            )
        self.grid = grid
        self.layout = layout
        specs = PAPER_COEFFICIENTS
        raw = default_raw(specs, physics_coefficients, per_level, layout.n_levels)
        self.physics_params = nnx.Dict({k: nnx.Param(jnp.asarray(v)) for k, v in raw.items()})
        self.nu_max = float(nu_max_m2_s)
        c_in = layout.n_ocean + layout.n_forcing
        self.corrector = (
            nnx.Linear(c_in, layout.n_ocean, kernel_init=nnx.initializers.normal(1e-3), rngs=rngs)
            if corrector
            else None
        )
        wet = layout.wet_channels(grid.wet)[: layout.n_ocean]
        self._wet = wet
        self._fmx = wet & np.roll(wet, -1, axis=-1)
        self._fmy = wet[:, 1:] & wet[:, :-1]  # face between rows j and j+1
        self._dx = np.maximum(grid.dx, 0.5 * grid.dy)  # [H]
        inv = 2.0 * (1.0 / self._dx.min() ** 2 + 1.0 / grid.dy**2)
        # explicit diffusion is stable for dt <= 1 / (2 nu (1/dx^2 + 1/dy^2))
        self.n_substeps = max(1, math.ceil(SECONDS_PER_DAY * self.nu_max * inv / 0.9))

    def physics_coefficients_si(self) -> dict[str, jax.Array]:
        """The learnable coefficients in SI units (m^2/s), unclipped."""
        return {k: PAPER_COEFFICIENTS[k].to_si(v.get_value()) for k, v in self.physics_params.items()}

    def _nu_per_channel(self, dtype) -> jax.Array:
        si = self.physics_coefficients_si()
        L = self.layout
        nu_m = jnp.broadcast_to(jnp.minimum(si["nu_m"], self.nu_max), (L.n_levels,))
        nu_t = jnp.broadcast_to(jnp.minimum(si["nu_t"], self.nu_max), (L.n_levels,))
        # channel order S, U, V, T, SSH
        return jnp.concatenate([nu_t, nu_m, nu_m, nu_t, nu_t[:1]]).astype(dtype)

    def laplacian(self, a: jax.Array) -> jax.Array:
        """``[..., C, H, W]`` -> flux-form Laplacian (1/m^2 times a's units), no flux into land."""
        dt = a.dtype
        dx = jnp.asarray(self._dx, dt)[:, None]
        dy = jnp.asarray(self.grid.dy, dt)
        fx = (jnp.roll(a, -1, axis=-1) - a) / dx * jnp.asarray(self._fmx, dt)
        div_x = (fx - jnp.roll(fx, 1, axis=-1)) / dx
        fy = (a[..., 1:, :] - a[..., :-1, :]) / dy * jnp.asarray(self._fmy, dt)
        zero = jnp.zeros_like(fy[..., :1, :])
        fy = jnp.concatenate([zero, fy, zero], axis=-2)
        div_y = (fy[..., 1:, :] - fy[..., :-1, :]) / dy
        return div_x + div_y

    def step(self, state, forcing_next, doy, *, doy_next=None, deterministic: bool = True):
        """``[B, n_ocean, H, W]`` anomaly at day `doy`, forcing ``[B, 4, H, W]`` of day doy+1
        -> ``[B, n_ocean, H, W]`` anomaly at day doy+1 (land exactly 0)."""
        del doy, doy_next, deterministic
        dtype = state.dtype
        nu = self._nu_per_channel(dtype)[:, None, None]
        h = jnp.asarray(SECONDS_PER_DAY / self.n_substeps, dtype)
        wet = jnp.asarray(self._wet, dtype)

        def sub(_, a):
            return a + h * nu * self.laplacian(a)

        out = jax.lax.fori_loop(0, self.n_substeps, sub, state * wet)
        if self.corrector is not None:
            x = jnp.concatenate([state, forcing_next.astype(dtype)], axis=-3)
            x = jnp.moveaxis(x, -3, -1)
            out = out + jnp.moveaxis(self.corrector(x), -1, -3).astype(dtype)
        return out * wet


def build_toy(model_cfg, grid: Grid, stats: Stats | None, seed: int) -> DiffusionForecaster:
    """The toy for a ``model`` config section named ``diffusion_toy``."""
    layout = stats.layout if stats is not None else ChannelLayout.with_levels(grid.n_levels)
    return DiffusionForecaster(
        grid,
        layout,
        physics_coefficients=dict(model_cfg.physics_coefficients),
        per_level=bool(model_cfg.per_level_coefficients),
        rngs=nnx.Rngs(seed),
    )


# ------------------------------------------------------------------------------ array dataset
def write_array_dataset(
    path: str | os.PathLike,
    grid: Grid,
    splits: dict[str, tuple[np.ndarray, ...]],
) -> Path:
    """Write an in-memory dataset: per split ``(fields [T, C, H, W] normalised, doy [T] int)``,
    optionally ``(fields, doy, year [T] int)`` to give the days calendar dates.

    Ocean channels are anomalies, forcing channels normalised; statistics are the identity."""
    path = Path(path)
    arrays = {
        "lat": grid.lat, "lon": grid.lon, "depth": grid.depth, "wet": grid.wet,
    }
    for name, (fields, doy, *year) in splits.items():
        arrays[f"{name}__fields"] = np.asarray(fields, np.float32)
        arrays[f"{name}__doy"] = np.asarray(doy, np.int32)
        if year:
            arrays[f"{name}__year"] = np.asarray(year[0], np.int32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


class ArrayLoader:
    """Batches of K-day windows of an in-memory trajectory, laid out like the HDF5 pipeline.

    Epoch ``e`` visits the windows in permutation ``(seed, e)``; process ``p`` of ``P`` takes
    positions ``p, p + P, ...`` and batches them, dropping the remainder, so the processes' batches
    together form the same global batches whatever ``P``."""

    def __init__(self, fields, doy, *, k_steps, batch_size, seed, shuffle, shard_index,
                 shard_count, n_ocean):
        self.fields, self.doy = fields, doy
        self.k, self.batch_size, self.n_ocean = k_steps, batch_size, n_ocean
        n = fields.shape[0] - k_steps
        if n < 1:
            raise DataError(f"{fields.shape[0]} days cannot make one window of {k_steps + 1}")
        order = np.random.default_rng([seed, 0]).permutation(n) if shuffle else np.arange(n)
        self.mine = order[shard_index::shard_count]
        self.batches_per_epoch = len(self.mine) // batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"{n} windows over {shard_count} process(es) cannot fill one batch of {batch_size}"
            )

    def _sample(self, t: int) -> dict:
        f, k, n = self.fields, self.k, self.n_ocean
        return {
            "state": f[t, :n],
            "forcing": f[t + 1 : t + 1 + k, n:],
            "target": f[t + 1 : t + 1 + k, :n],
            "doy": self.doy[t],
            "target_doy": self.doy[t + 1 : t + 1 + k],
            "time": np.int64(t),
        }

    def __iter__(self):
        return _ArrayIterator(self, 0)

    def restore(self, state: str):
        return _ArrayIterator(self, int(json.loads(state)["batch"]))

    def iterator_after(self, batches: int):
        """Past the first `batches` batches of this shard (see `pipeline.Loader.iterator_after`)."""
        return _ArrayIterator(self, int(batches))


class _ArrayIterator:
    def __init__(self, loader: ArrayLoader, batch: int):
        self.loader, self.batch = loader, batch

    def __iter__(self):
        return self

    def __next__(self):
        L = self.loader
        if self.batch >= L.batches_per_epoch:
            raise StopIteration
        idx = L.mine[self.batch * L.batch_size : (self.batch + 1) * L.batch_size]
        self.batch += 1
        samples = [L._sample(int(t)) for t in idx]
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}

    def get_state(self) -> str:
        return json.dumps({"batch": self.batch})


def open_array_dataset(cfg) -> TrainData:
    """The `TrainData` of ``cfg.data.root``, an array dataset."""
    root = Path(cfg.data.root)
    pi, pc = jax.process_index(), jax.process_count()
    if not root.is_file():
        raise DataError(f"data.root {str(root)!r}: array dataset file does not exist")
    z = np.load(root, allow_pickle=False)
    grid = Grid.from_coords(z["lat"], z["lon"], z["depth"], z["wet"])
    layout = ChannelLayout(tuple(float(d) for d in z["depth"]))
    splits = {}
    for key in z.files:
        if key.endswith("__fields"):
            name = key[: -len("__fields")]
            splits[name] = (z[key], z[f"{name}__doy"])
    for s in (cfg.data.train_split,):
        if s not in splits:
            raise DataError(f"data.root {str(root)!r}: no split {s!r}; has {sorted(splits)}")
    for name, (f, _) in splits.items():
        layout.check(f, channels="all", where=f"{root}:{name}")
    years = {k[: -len("__year")]: z[k] for k in z.files if k.endswith("__year")}
    n = layout.n_ocean
    stats = Stats.identity(grid.wet, layout)

    def make(split, k, bs, seed, shuffle):
        f, d = splits[split]
        return ArrayLoader(f, d, k_steps=k, batch_size=bs, seed=seed, shuffle=shuffle,
                           shard_index=pi, shard_count=pc, n_ocean=n)

    def array_day_names(split, time, doy):
        y = years.get(split)
        if y is None:
            return [f"day {int(t)} (day of year {int(d) + 1})" for t, d in zip(time, doy)]
        return [iso_date(y[t], d) for t, d in zip(time, doy)]

    return TrainData(grid, layout, stats, make, tuple(splits), array_day_names)


register_model(TOY_MODEL, build_toy)
register_data_format(".npz", open_array_dataset)
