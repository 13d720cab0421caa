"""The train state and the sharded train step (see `docs/design.md`).

The model is split once into ``graphdef`` (static structure) and two plain pytrees of arrays:
``params`` (every `nnx.Param`, nested dicts), ``rngs`` (the model's RNG streams) and ``consts``
(every other variable: masks, statistics). The train state is a dict of pytrees,

    {"params", "rngs", "consts", "opt_state", "step", "rng", "nonfinite", "skipped"}

so `jax.grad`, shardings and Orbax checkpoints all see plain pytrees, and the step is a pure
function ``(train_state, batch) -> (train_state, metrics)`` compiled once with `jax.jit` and
explicit in/out shardings (params replicated, batch over 'data' and longitude over 'x').

Loss of one sample: a K-day rollout from ``batch["state"]`` driven by ``batch["forcing"]``, one
`lax.scan` over the K days, the rollout API's (`neuralogcm_jax.rollout.rollout_scan`; each day
rematerialised in the backward pass, so memory does not grow with K), scored against
``batch["target"]`` by the masked area-weighted MSE, averaged over the K days. A step whose loss
or gradient norm is not finite leaves params and optimizer state unchanged; it is counted in
``nonfinite`` (consecutive) and ``skipped`` (total), and its metrics say which parameter groups
(`param_group`) had non-finite gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from neuralogcm_jax import calendar
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.model import ModelConfig, build_model
from neuralogcm_jax.rollout import rollout_scan
from neuralogcm_jax.train.loss import weighted_mse
from neuralogcm_jax.train.sharding import batch_sharding, replicate, replicated

BATCH_KEYS = ("state", "forcing", "target", "doy", "target_doy")
BATCH_RANKS = {"state": 4, "forcing": 5, "target": 5, "doy": 1, "target_doy": 2}


def build_forecaster(model_cfg: ModelConfig, grid: Grid, stats: Stats, *, seed: int):
    """The model named ``model_cfg.name`` (`neuralogcm_jax.model.build_model`)."""
    return build_model(model_cfg, grid, stats, seed=seed)


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
    model_vars = replicate(model_vars, mesh)
    sh = replicated(mesh)
    return jax.jit(lambda v: init_train_state(v, tx, seed), out_shardings=sh)(model_vars)


def day_of_year_sequence(batch: dict, k_steps: int) -> jax.Array:
    """``[B, K+1]``: day-of-year index of the input day and of each of the K days after it.

    From the loader's calendar (``target_doy [B, K]``) when present; otherwise counted by
    `calendar.doy_sequence` (index 364 is followed by 0, a common year)."""
    doy0 = batch["doy"].astype(jnp.int32)
    if "target_doy" not in batch:
        return calendar.doy_sequence(doy0, k_steps)
    nxt = batch["target_doy"][:, :k_steps].astype(jnp.int32)
    return jnp.concatenate([doy0[:, None], nxt], axis=1)


def _rollout_loss(graphdef, params, rngs, consts, batch, weights, k_steps, deterministic, remat,
                  pushforward: int = 0):
    """Mean over K days of the weighted MSE of a K-day rollout (`rollout.rollout_scan`, each
    day's loss taken as it is produced), and the advanced RNG streams.

    With `pushforward` P > 0 the model first runs P days from the window's first day with no
    gradient (deterministic, parameters and result held constant), and the K trained days start
    from that forecast against the truth of window days P+1..P+K (the batch holds P+K days)."""
    doys = day_of_year_sequence(batch, pushforward + k_steps)
    state0 = batch["state"]
    p = int(pushforward)
    if p:
        traj, _ = rollout_scan(
            graphdef, (jax.lax.stop_gradient(params), consts), state0, batch["forcing"][:, :p],
            doys[:, : p + 1], rngs=rngs, deterministic=True,
        )
        state0 = jax.lax.stop_gradient(traj[-1])
    losses, rngs = rollout_scan(
        graphdef, (params, consts), state0, batch["forcing"][:, p: p + k_steps],
        doys[:, p:], targets=batch["target"][:, p: p + k_steps],
        per_step=lambda nxt, y: weighted_mse(nxt, y, weights), rngs=rngs, remat=remat,
        deterministic=deterministic,
    )
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
    pushforward: int = 0,
    deterministic: bool = False,
    remat: bool = True,
    donate: bool = True,
) -> Callable:
    """The jitted ``(train_state, batch) -> (train_state, metrics)`` for K-day rollouts (after
    `pushforward` days without gradient: `_rollout_loss`; the batch then holds P+K days).

    `metrics`: loss (float32), grad_norm, finite (1 if the update was applied), nonfinite
    (consecutive skipped steps), loss_finite (1 if the loss was finite) and grad_finite
    (``{group: 1 if every gradient entry of that group was finite}``, groups of `param_group`).
    Shardings: state replicated, batch by `batch_spec`."""
    rep = replicated(mesh)
    w = jax.device_put(jnp.asarray(weights, jnp.float32), rep)

    def step(ts, batch):
        def loss_fn(p):
            return _rollout_loss(
                graphdef, p, ts["rngs"], ts["consts"], batch, w, k_steps, deterministic, remat,
                pushforward,
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
