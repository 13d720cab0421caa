"""The optimizer: AdamW with linear warmup and cosine decay, global-norm clipping, and its own
learning rate for the physics coefficients (see `docs/design.md`).

Parameters are labelled by where they sit in the model: every `nnx.Param` under an attribute
called ``physics_params`` is "physics", the hybrid's fitted fields (``tendency_correction``,
``heat_offset``) "fitted", everything else "network". `optax.multi_transform` gives each label
its own AdamW (the physics coefficients are raw softplus inputs of order 1, so they need a far
larger step than network weights, and no weight decay); "fitted" is never moved (fitted from
the data before training, `neuralogcm_jax.train.fitted`; the model stops its gradient too, so
it adds nothing to the clipped norm). Clipping acts on the global norm of all gradients together, before the split.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx

from neuralogcm_jax.errors import ConfigError

PHYSICS_KEY = "physics_params"
# The hybrid's fitted fields (`train.fitted`): never trained.
FITTED_KEYS = ("tendency_correction", "heat_offset")
PHYSICS, NETWORK, FITTED = "physics", "network", "fitted"


def _label(path) -> str:
    for k in path:
        name = getattr(k, "key", getattr(k, "name", None))
        if name == PHYSICS_KEY:
            return PHYSICS
        if name in FITTED_KEYS:
            return FITTED
    return NETWORK


def param_labels(params: Any) -> Any:
    """A tree like `params` with "physics" for leaves under ``physics_params``, "fitted" for
    the fitted fields (`FITTED_KEYS`), else "network"."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _label(p), params)


def lr_schedule(peak: float, cfg, total_steps: int) -> optax.Schedule:
    """Linear warmup over ``cfg.warmup_steps`` to `peak`, then cosine to ``min_lr_ratio * peak``
    at `total_steps` (or constant)."""
    warm = max(int(cfg.warmup_steps), 0)
    if cfg.schedule == "constant":
        if warm == 0:
            return optax.constant_schedule(peak)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warm), optax.constant_schedule(peak)], [warm]
        )
    decay = max(int(total_steps), warm + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warm else peak,
        peak_value=peak,
        warmup_steps=warm,
        decay_steps=decay,
        end_value=peak * cfg.min_lr_ratio,
    )


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
    """The full gradient transformation of an `OptimConfig` `cfg` (labels from `param_labels`).

    ``cfg.trainable`` freezes a group ("physics": only the coefficients move; "network": only
    the networks)."""
    for name in ("lr", "physics_lr"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"optim.{name} = {getattr(cfg, name)}: must be >= 0")
    if cfg.clip_norm is not None and cfg.clip_norm <= 0:
        raise ConfigError(f"optim.clip_norm = {cfg.clip_norm}: must be > 0 or null")

    def adamw(peak, wd):
        return optax.adamw(lr_schedule(peak, cfg, total_steps), b1=cfg.b1, b2=cfg.b2,
                           weight_decay=wd)

    transforms = {
        NETWORK: adamw(cfg.lr, cfg.weight_decay),
        PHYSICS: adamw(cfg.physics_lr, cfg.physics_weight_decay),
        FITTED: optax.set_to_zero(),
    }
    if cfg.trainable == "physics":
        transforms[NETWORK] = optax.set_to_zero()
    elif cfg.trainable == "network":
        transforms[PHYSICS] = optax.set_to_zero()
    tx = optax.multi_transform(transforms, param_labels)
    if cfg.clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx


def nnx_optimizer(model, cfg, total_steps: int):
    """An `nnx.Optimizer` over the model's `nnx.Param` leaves with the same transformation
    (for interactive use; the sharded train step works on plain pytrees instead)."""
    return nnx.Optimizer(model, make_optimizer(cfg, total_steps), wrt=nnx.Param)
