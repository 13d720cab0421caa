"""The train state and the sharded train step (DESIGN.md decisions 5-7).

The model is split once into ``graphdef`` (static structure) and two plain pytrees of arrays:
``params`` (every `nnx.Param`, nested dicts) and ``other`` (every other variable: RNG streams,
counters). The train state is a dict of pytrees,

    {"params", "other", "opt_state", "step", "rng", "nonfinite", "skipped"}

so `jax.grad`, shardings and Orbax checkpoints all see plain pytrees, and the step is a pure
function ``(train_state, batch) -> (train_state, metrics)`` compiled once with `jax.jit` and
explicit in/out shardings (params replicated, batch over 'data' and longitude over 'x').

Loss of one sample: a K-day rollout from ``batch["state"]`` driven by ``batch["forcing"]``, one
`lax.scan` over the K days (each day rematerialised in the backward pass, so memory does not grow
with K), scored against ``batch["target"]`` by the masked area-weighted MSE, averaged over the K
days. A step whose loss or gradient norm is not finite leaves params and optimizer state
unchanged; it is counted in ``nonfinite`` (consecutive) and ``skipped`` (total).

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

from neuralogcm_jax.constants import SECONDS_PER_DAY
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.physics.params import PAPER_COEFFICIENTS, default_raw
from neuralogcm_jax.train.loss import weighted_mse
from neuralogcm_jax.train.sharding import batch_sharding, replicated

TOY_MODEL = "diffusion_toy"
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

    def step(self, state, forcing_next, doy, *, deterministic: bool = True):
        """``[B, n_ocean, H, W]`` anomaly at day `doy`, forcing ``[B, 4, H, W]`` of day doy+1
        -> ``[B, n_ocean, H, W]`` anomaly at day doy+1 (land exactly 0)."""
        del doy, deterministic
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


# ------------------------------------------------------------------------------ train state
def split_model(model) -> tuple[Any, dict, dict]:
    """``model -> (graphdef, params, other)`` with params/other as nested dicts of arrays."""
    graphdef, params, other = nnx.split(model, nnx.Param, ...)
    return graphdef, params.to_pure_dict(), other.to_pure_dict()


def merge_model(graphdef, params: dict, other: dict):
    """The inverse of `split_model`."""
    return nnx.merge(graphdef, params, other)


def init_train_state(params: dict, other: dict, tx: optax.GradientTransformation, seed: int):
    """A fresh train state (host values; place with `place_train_state`)."""
    return {
        "params": params,
        "other": other,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(seed)),
        "nonfinite": jnp.zeros((), jnp.int32),
        "skipped": jnp.zeros((), jnp.int32),
    }


def abstract_train_state(params: dict, other: dict, tx, seed: int, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the train state: a restore target."""
    shapes = jax.eval_shape(lambda p, o: init_train_state(p, o, tx, seed), params, other)
    sh = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes)


def place_train_state(params: dict, other: dict, tx, seed: int, mesh) -> Any:
    """A fresh train state replicated over `mesh` (identical in every process)."""
    from neuralogcm_jax.train.sharding import replicate

    params = replicate(params, mesh)
    other = replicate(other, mesh)
    sh = replicated(mesh)
    return jax.jit(lambda p, o: init_train_state(p, o, tx, seed), out_shardings=sh)(params, other)


def _rollout_loss(graphdef, params, other, batch, weights, k_steps, deterministic, remat):
    """Mean over K days of the weighted MSE of a K-day rollout, and the updated `other`."""
    state0 = batch["state"]
    forcing = jnp.swapaxes(batch["forcing"][:, :k_steps], 0, 1)  # [K, B, 4, H, W]
    target = jnp.swapaxes(batch["target"][:, :k_steps], 0, 1)  # [K, B, C, H, W]
    # day of year of the input state of each step; wraps like the 366-day climatology
    doys = (batch["doy"][None, :] + jnp.arange(k_steps, dtype=batch["doy"].dtype)[:, None]) % (
        DAYS_IN_CLIMATOLOGY
    )

    def day(carry, xs):
        x, oth = carry
        f, y, d = xs
        model = nnx.merge(graphdef, params, oth)
        nxt = model.step(x, f, d, deterministic=deterministic)
        _, _, oth = nnx.split(model, nnx.Param, ...)
        loss = weighted_mse(nxt, y, weights)
        return (nxt.astype(x.dtype), oth.to_pure_dict()), loss

    if remat:
        day = jax.checkpoint(day)
    (_, other), losses = jax.lax.scan(day, (state0, other), (forcing, target, doys))
    return jnp.mean(losses), other


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
    (consecutive skipped steps). Shardings: state replicated, batch by `batch_spec`."""
    rep = replicated(mesh)
    w = jax.device_put(jnp.asarray(weights, jnp.float32), rep)

    def step(ts, batch):
        def loss_fn(p):
            return _rollout_loss(graphdef, p, ts["other"], batch, w, k_steps, deterministic, remat)

        (loss, other), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts["params"])
        gnorm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, ts["opt_state"], ts["params"])
        params = optax.apply_updates(ts["params"], updates)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)

        def pick(new, old):
            return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

        nonfinite = jnp.where(ok, 0, ts["nonfinite"] + 1).astype(jnp.int32)
        new = {
            "params": pick(params, ts["params"]),
            "other": pick(other, ts["other"]),
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
        }
        return new, metrics

    bsh = {
        "state": batch_sharding(4, mesh),
        "forcing": batch_sharding(5, mesh),
        "target": batch_sharding(5, mesh),
        "doy": batch_sharding(1, mesh),
    }
    return jax.jit(
        step,
        in_shardings=(rep, bsh),
        out_shardings=(rep, rep),
        donate_argnums=(0,) if donate else (),
    )


def make_eval_step(graphdef, weights: np.ndarray, mesh, *, k_steps: int) -> Callable:
    """The jitted ``(params, other, batch) -> loss`` of a deterministic K-day rollout."""
    rep = replicated(mesh)
    w = jax.device_put(jnp.asarray(weights, jnp.float32), rep)

    def ev(params, other, batch):
        loss, _ = _rollout_loss(graphdef, params, other, batch, w, k_steps, True, False)
        return loss

    bsh = {
        "state": batch_sharding(4, mesh),
        "forcing": batch_sharding(5, mesh),
        "target": batch_sharding(5, mesh),
        "doy": batch_sharding(1, mesh),
    }
    return jax.jit(ev, in_shardings=(rep, rep, bsh), out_shardings=rep)


def physics_si(graphdef, params: dict, other: dict) -> dict[str, np.ndarray]:
    """The model's learnable coefficients in SI units (empty if it has none), on the host."""
    model = nnx.merge(graphdef, params, other)
    fn = getattr(model, "physics_coefficients_si", None)
    if fn is None:
        return {}
    return {k: np.asarray(jax.device_get(v)) for k, v in fn().items()}


def model_inputs(batch: dict) -> dict:
    """The arrays of a loader batch the train step reads (``time`` stays on the host)."""
    return {k: batch[k] for k in ("state", "forcing", "target", "doy")}
