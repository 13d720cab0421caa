"""The training loss: masked, area-weighted mean squared error in normalised-anomaly space.

For a prediction ``p`` and target ``y`` (both ``[B, n_ocean, H, W]``, normalised anomalies),

    loss = sum_{b,c,h,w} w_c A_h m_chw (p - y)^2 / (B sum_{c,h,w} w_c A_h m_chw)

with ``A_h`` the cell area (m^2; the rows near the poles are small and must not count as much
as the tropics), ``m_chw`` the wet mask of channel c (land never enters the loss, and the wet
area shrinks with depth) and ``w_c`` the per-variable weight (1 unless configured). The loss is
a weighted mean: a prediction off by one standard deviation everywhere scores 1 whatever the
weights. Computed in float32 whatever the network precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OCEAN_3D_VARIABLES, ChannelLayout

Array = Any


def loss_weights(
    grid: Grid,
    layout: ChannelLayout,
    var_weights: Mapping[str, float] | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """``[n_ocean, H, W]`` weights ``w_c A_h m_chw``, normalised to sum to 1.

    `var_weights` maps variable names ("S", "U", "V", "T", "SSH") to non-negative weights."""
    var_weights = dict(var_weights or {})
    known = OCEAN_3D_VARIABLES + ("SSH",)
    for k, v in var_weights.items():
        if k not in known:
            raise ConfigError(f"train.var_weights.{k}: unknown variable; known: {list(known)}")
        if not (v >= 0 and np.isfinite(v)):
            raise ConfigError(f"train.var_weights.{k} = {v}: must be finite and >= 0")
    if grid.n_levels != layout.n_levels:
        raise ConfigError(
            f"grid has {grid.n_levels} levels but the channel layout has {layout.n_levels}"
        )
    wet = layout.wet_channels(grid.wet)[: layout.n_ocean].astype(np.float64)
    per_channel = np.ones(layout.n_ocean)
    for var in known:
        per_channel[layout.var_slice(var)] = var_weights.get(var, 1.0)
    w = per_channel[:, None, None] * grid.area[None, :, None] * wet
    total = w.sum()
    if total <= 0:
        raise ConfigError("loss weights are all zero (no wet cell, or all variable weights 0)")
    return (w / total).astype(dtype)


def weighted_mse(pred: Array, target: Array, weights: Array) -> Array:
    """Weighted MSE of ``[B, C, H, W]`` arrays with ``[C, H, W]`` weights summing to 1: the batch
    mean of ``sum w (p - y)^2``, in float32 (float64 when `pred` is float64, for gradient checks)."""
    dtype = jnp.promote_types(pred.dtype, jnp.float32)
    d = pred.astype(dtype) - target.astype(dtype)
    per_sample = jnp.sum(weights.astype(dtype) * d * d, axis=(-3, -2, -1))
    return jnp.mean(per_sample)
