"""The train state and the sharded train step (DESIGN.md decisions 5-7).

The model is split once into ``graphdef`` (static structure) and two plain pytrees of arrays:
``params`` (every `nnx.Param`, nested dicts), ``rngs`` (the model's RNG streams) and ``consts``
(every other variable: masks, statistics). The train state is a dict of pytrees,

    {"params", "rngs", "consts", "opt_state", "step", "rng", "nonfinite", "skipped"}

so `jax.grad`, shardings and Orbax checkpoints all see plain pytrees, and the step is a pure
function ``(train_state, batch) -> (train_state, metrics)`` compiled once with `jax.jit` and
explicit in/out shardings (params replicated, batch over 'data' and longitude over 'x').

Loss of one sample: a K-day rollout from ``batch["state"]`` driven by ``batch["forcing"]``, one
`lax.scan` over the K days (each day rematerialised in the backward pass, so memory does not grow
with K), scored against ``batch["target"]`` by the masked area-weighted MSE, averaged over the K
days. A step whose loss or gradient norm is not finite leaves params and optimizer state
unchanged; it is counted in ``nonfinite`` (consecutive) and ``skipped`` (total), and its metrics
say which parameter groups (`param_group`) had non-finite gradients.

Also here: `DiffusionForecaster`, the smallest model that honours the `Forecaster` contract
(learnable Laplacian diffusion plus a pointwise linear corrector), used to test and benchmark the
training machinery independently of the production networks, and `build_forecaster`, which
builds any model named in the config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from neuralogcm_jax import checkpointing
from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, default_raw
from neuralogcm_jax.train.loss import weighted_mse
from neuralogcm_jax.train.sharding import batch_sharding, replicated

TOY_MODEL = "diffusion_toy"  # = config.TOY_MODEL_NAME
BATCH_KEYS = ("state", "forcing", "target", "doy", "target_doy")
BATCH_RANKS = {"state": 4, "forcing": 5, "target": 5, "doy": 1, "target_doy": 2}
DAYS_IN_CLIMATOLOGY = 366


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


def build_forecaster(model_cfg, grid: Grid, stats: Stats | None, *, seed: int):
    """The model named ``model_cfg.name``: the toy here, anything else from
    ``neuralogcm_jax.model.build_model``."""
    if model_cfg.name == TOY_MODEL:
        layout = stats.layout if stats is not None else ChannelLayout.with_levels(grid.n_levels)
        return DiffusionForecaster(
            grid,
            layout,
            physics_coefficients=dict(getattr(model_cfg, "physics_coefficients", {}) or {}),
            per_level=bool(getattr(model_cfg, "per_level_coefficients", False)),
            rngs=nnx.Rngs(seed),
        )
    try:
        from neuralogcm_jax.model import build_model
    except ImportError as e:
        raise ConfigError(
            f"model.name = {model_cfg.name!r} needs neuralogcm_jax.model.build_model ({e}); "
            f"only {TOY_MODEL!r} is built without it"
        ) from e
    return build_model(model_cfg, grid, stats, seed=seed)


def _build_toy_from_stored(model_config: dict, grid: Grid, stats: Stats, seed: int):
    from neuralogcm_jax.train.config import StandInModelConfig, from_dict

    return build_forecaster(from_dict(StandInModelConfig, model_config, "model"), grid, stats,
                            seed=seed)


checkpointing.register_model_builder(TOY_MODEL, _build_toy_from_stored)


# ------------------------------------------------------------------------------ train state
def split_model(model) -> tuple[Any, dict, dict, dict]:
    """``model -> (graphdef, params, rngs, consts)`` as nested dicts of arrays.

    `params`: every `nnx.Param` (what the optimizer moves); `rngs`: the model's RNG streams
    (dropout), which advance every step; `consts`: every other variable (masks, statistics),
    constant during training."""
    graphdef, params, rngs, consts = nnx.split(model, nnx.Param, nnx.RngState, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rngs), nnx.to_pure_dict(consts)


def merge_model(graphdef, params: dict, rngs: dict, consts: dict):
    """The inverse of `split_model`."""
    return nnx.merge(graphdef, params, rngs, consts)


def init_train_state(model_vars: tuple[dict, dict, dict], tx, seed: int):
    """A fresh train state from ``(params, rngs, consts)`` of `split_model`."""
    params, rngs, consts = model_vars
    return {
        "params": params,
        "rngs": rngs,
        "consts": consts,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(seed)),
        "nonfinite": jnp.zeros((), jnp.int32),
        "skipped": jnp.zeros((), jnp.int32),
    }


# What a checkpoint's ``state`` item holds: everything but ``consts`` (masks and normalisation
# statistics, which the model rebuilds from the grid and stats of the checkpoint's ``model`` item).
CHECKPOINT_KEYS = ("params", "rngs", "opt_state", "step", "rng", "nonfinite", "skipped")


def checkpoint_view(ts: dict) -> dict:
    """The part of a train state (or of its abstract target) that checkpoints hold."""
    return {k: ts[k] for k in CHECKPOINT_KEYS}


def abstract_train_state(model_vars, tx, seed: int, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the train state: a restore target."""
    shapes = jax.eval_shape(lambda v: init_train_state(v, tx, seed), model_vars)
    sh = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes)


def place_train_state(model_vars, tx, seed: int, mesh) -> Any:
    """A fresh train state replicated over `mesh` (identical in every process)."""
    from neuralogcm_jax.train.sharding import replicate

    model_vars = replicate(model_vars, mesh)
    sh = replicated(mesh)
    return jax.jit(lambda v: init_train_state(v, tx, seed), out_shardings=sh)(model_vars)


def day_of_year_sequence(batch: dict, k_steps: int) -> tuple[jax.Array, jax.Array]:
    """``(doy, doy_next)``, each ``[K, B]``: day-of-year index of each step's input and output.

    From the loader's calendar (``target_doy [B, K]``) when present; otherwise by counting,
    where index 364 is followed by 0 (a common year)."""
    doy0 = batch["doy"].astype(jnp.int32)
    if "target_doy" in batch:
        nxt = jnp.swapaxes(batch["target_doy"][:, :k_steps].astype(jnp.int32), 0, 1)
    else:
        seq = [doy0]
        for _ in range(k_steps):
            seq.append(jnp.where(seq[-1] >= 364, 0, seq[-1] + 1))
        nxt = jnp.stack(seq[1:])
    cur = jnp.concatenate([doy0[None], nxt[:-1]], axis=0)
    return cur, nxt


def _rollout_loss(graphdef, params, rngs, consts, batch, weights, k_steps, deterministic, remat):
    """Mean over K days of the weighted MSE of a K-day rollout, and the advanced RNG streams."""
    state0 = batch["state"]
    forcing = jnp.swapaxes(batch["forcing"][:, :k_steps], 0, 1)  # [K, B, 4, H, W]
    target = jnp.swapaxes(batch["target"][:, :k_steps], 0, 1)  # [K, B, C, H, W]
    doys, doys_next = day_of_year_sequence(batch, k_steps)

    def day(carry, xs):
        x, r = carry
        f, y, d, dn = xs
        model = nnx.merge(graphdef, params, r, consts)
        nxt = model.step(x, f, d, doy_next=dn, deterministic=deterministic)
        _, _, r, _ = nnx.split(model, nnx.Param, nnx.RngState, ...)
        loss = weighted_mse(nxt, y, weights)
        return (nxt.astype(x.dtype), nnx.to_pure_dict(r)), loss

    if remat:
        day = jax.checkpoint(day)
    (_, rngs), losses = jax.lax.scan(day, (state0, rngs), (forcing, target, doys, doys_next))
    return jnp.mean(losses), rngs


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def param_group(path) -> str:
    """The group of a parameter at pytree `path`: its first two keys, dot-joined.

    So each physics coefficient is its own group (``physics_params.nu_m``) and each network is
    grouped by its top-level modules (``corrector.encoder``, ``corrector.head``, ``net.down``); a
    parameter right at the top level is its own group."""
    return ".".join(_key_name(k) for k in path[:2])


def param_groups(params) -> list[str]:
    """The sorted group names (`param_group`) of a params pytree."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sorted({param_group(path) for path, _ in leaves})


def finite_by_group(tree) -> dict[str, jax.Array]:
    """``group -> bool scalar``: every entry of every leaf of that group is finite."""
    out: dict[str, jax.Array] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        g = param_group(path)
        ok = jnp.all(jnp.isfinite(leaf))
        out[g] = ok if g not in out else out[g] & ok
    return out


def _select(ok, new, old):
    """`new` where `ok` else `old`, leaf by leaf (PRNG key leaves: their raw data)."""

    def sel(a, b):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            data = jnp.where(ok, jax.random.key_data(a), jax.random.key_data(b))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
        return jnp.where(ok, a, b)

    return jax.tree.map(sel, new, old)


def batch_shardings(mesh) -> dict:
    """NamedSharding of every batch key the step reads (see `sharding.batch_spec`)."""
    return {k: batch_sharding(r, mesh) for k, r in BATCH_RANKS.items()}


def _jit_by_batch_keys(fn, mesh, jit_kwargs) -> Callable:
    """`fn(train_state, batch)` jitted with the batch shardings of the keys it is given (the
    loader may or may not supply ``target_doy``); one compilation per key set."""
    all_sh = batch_shardings(mesh)
    cache: dict = {}

    def jitted(batch):
        """The `jax.jit` object for the key set of `batch` (for ahead-of-time lowering)."""
        keys = tuple(sorted(batch))
        if keys not in cache:
            unknown = [k for k in keys if k not in all_sh]
            if unknown:
                raise ConfigError(f"batch has unknown keys {unknown}; expected {list(all_sh)}")
            cache[keys] = jax.jit(fn, **jit_kwargs({k: all_sh[k] for k in keys}))
        return cache[keys]

    def call(ts, batch):
        return jitted(batch)(ts, batch)

    call.cache = cache
    call.jitted = jitted
    return call


def make_train_step(
    graphdef,
    tx: optax.GradientTransformation,
    weights: np.ndarray,
    mesh,
    *,
    k_steps: int,
    deterministic: bool = False,
    remat: bool = True,
    donate: bool = True,
) -> Callable:
    """The jitted ``(train_state, batch) -> (train_state, metrics)`` for K-day rollouts.

    `metrics`: loss (float32), grad_norm, finite (1 if the update was applied), nonfinite
    (consecutive skipped steps), loss_finite (1 if the loss was finite) and grad_finite
    (``{group: 1 if every gradient entry of that group was finite}``, groups of `param_group`).
    Shardings: state replicated, batch by `batch_spec`."""
    rep = replicated(mesh)
    w = jax.device_put(jnp.asarray(weights, jnp.float32), rep)

    def step(ts, batch):
        def loss_fn(p):
            return _rollout_loss(
                graphdef, p, ts["rngs"], ts["consts"], batch, w, k_steps, deterministic, remat
            )

        (loss, rngs), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts["params"])
        gnorm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, ts["opt_state"], ts["params"])
        params = optax.apply_updates(ts["params"], updates)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)

        def pick(new, old):
            return _select(ok, new, old)

        nonfinite = jnp.where(ok, 0, ts["nonfinite"] + 1).astype(jnp.int32)
        new = {
            "params": pick(params, ts["params"]),
            "rngs": pick(rngs, ts["rngs"]),
            "consts": ts["consts"],
            "opt_state": pick(opt_state, ts["opt_state"]),
            "step": ts["step"] + 1,
            "rng": jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(ts["rng"]), 1)),
            "nonfinite": nonfinite,
            "skipped": ts["skipped"] + (~ok).astype(jnp.int32),
        }
        metrics = {
            "loss": loss.astype(jnp.float32),
            "grad_norm": gnorm.astype(jnp.float32),
            "finite": ok.astype(jnp.int32),
            "nonfinite": nonfinite,
            "loss_finite": jnp.isfinite(loss).astype(jnp.int32),
            "grad_finite": {g: v.astype(jnp.int32) for g, v in finite_by_group(grads).items()},
        }
        return new, metrics

    return _jit_by_batch_keys(
        step,
        mesh,
        lambda bsh: dict(
            in_shardings=(rep, bsh),
            out_shardings=(rep, rep),
            donate_argnums=(0,) if donate else (),
        ),
    )


def make_eval_step(graphdef, weights: np.ndarray, mesh, *, k_steps: int) -> Callable:
    """The jitted ``(train_state, batch) -> loss`` of a deterministic K-day rollout."""
    rep = replicated(mesh)
    w = jax.device_put(jnp.asarray(weights, jnp.float32), rep)

    def ev(ts, batch):
        loss, _ = _rollout_loss(
            graphdef, ts["params"], ts["rngs"], ts["consts"], batch, w, k_steps, True, False
        )
        return loss

    return _jit_by_batch_keys(
        ev, mesh, lambda bsh: dict(in_shardings=(rep, bsh), out_shardings=rep)
    )


def physics_si(graphdef, ts: dict) -> dict[str, np.ndarray]:
    """The model's learnable coefficients in SI units (empty if it has none), on the host."""
    model = nnx.merge(graphdef, ts["params"], ts["rngs"], ts["consts"])
    fn = getattr(model, "physics_coefficients_si", None)
    if fn is None:
        return {}
    return {k: np.asarray(jax.device_get(v)) for k, v in fn().items()}


def model_inputs(batch: dict) -> dict:
    """The arrays of a loader batch the train step reads (``time`` stays on the host)."""
    return {k: batch[k] for k in BATCH_KEYS if k in batch}
