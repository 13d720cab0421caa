"""U-Net baseline: a one-step forecaster ``[B, C_in, H, W] -> [B, C_out, H, W]``.

A classic U-Net (Ronneberger et al. 2015) on the sphere grid: at each level two ConvSC blocks
(periodic 3x3 conv, GroupNorm, SiLU), 2x2 max-pooling between levels, sub-pixel upsampling back,
encoder features concatenated into the decoder at each level, and a 1x1 head. Every conv pads
by wrap in longitude and reflection in latitude (``nn.layers``), so the network has no seam at
the date line and commutes with longitude rolls by multiples of its total stride
``2**(len(channel_mults) - 1)`` (8 by default).

Sizes are ours (the NeuralOGCM paper names the baseline only): ``base_channels=32``,
``channel_mults=(1, 2, 4, 8)``, i.e. 32/64/128/256 channels at 120x240/60x120/30x60/15x30 cells at
1.5 degrees. Rows that do not divide by the total stride are reflect-padded and cropped back; the
longitude count must divide by it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.nn.layers import ConvSC, Dtype, PeriodicConv
from neuralogcm_jax.nn.network import GridNetwork, NetworkConfig, int_tuple, rates, reject


@dataclasses.dataclass(frozen=True)
class UNetConfig(NetworkConfig):
    """Sizes of the U-Net baseline.

    Attributes:
      base_channels: channels at full resolution. Default 32.
      channel_mults: channel multiplier per level, finest first; ``len - 1`` 2x poolings, so the
        total stride is ``2**(len(channel_mults) - 1)``. Default (1, 2, 4, 8): stride 8.
      norm_groups: preferred GroupNorm group count. Default 8.
      dropout: dropout rate at the bottleneck, active when not deterministic. Default 0.0.
    """

    rules = (
        int_tuple("channel_mults"),
        reject(lambda c: c.base_channels < 1 or c.norm_groups < 1,
               lambda c: f"UNetConfig: base_channels and norm_groups must be >= 1, got "
                         f"{c.base_channels}, {c.norm_groups}"),
        reject(lambda c: len(c.channel_mults) < 1 or min(c.channel_mults) < 1,
               lambda c: f"UNetConfig.channel_mults must be positive, got {c.channel_mults}"),
        rates("dropout"),
    )

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    norm_groups: int = 8
    dropout: float = 0.0


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 on ``[B, H, W, C]`` (H, W even) -> ``[B, H/2, W/2, C]``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class DoubleConv(nnx.Module):
    """Two ConvSC blocks at one resolution, ``[B, H, W, C_in] -> [B, H, W, C_out]``."""

    def __init__(self, cin: int, cout: int, *, groups: int, rngs: nnx.Rngs, dtype: Dtype):
        self.a = ConvSC(cin, cout, groups=groups, rngs=rngs, dtype=dtype)
        self.b = ConvSC(cout, cout, groups=groups, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.b(self.a(x))


class UNet(GridNetwork, label="UNet", config_type=UNetConfig,
           stride=lambda cfg: 2 ** (len(cfg.channel_mults) - 1)):
    """U-Net baseline ``[B, C_in, H, W] -> [B, C_out, H, W]`` (see the module docstring).

    Constructor arguments: those of `GridNetwork`."""

    def build(self, cfg: UNetConfig, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        in_channels, out_channels = self.in_channels, self.out_channels
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        g = cfg.norm_groups
        self.down = nnx.List(
            [
                DoubleConv(in_channels if i == 0 else widths[i - 1], w, groups=g, rngs=rngs, dtype=dtype)
                for i, w in enumerate(widths)
            ]
        )
        # Level i+1 -> level i: upsample to widths[i], concatenate the skip, two convs.
        self.up = nnx.List(
            [ConvSC(widths[i + 1], widths[i], "up", groups=g, rngs=rngs, dtype=dtype) for i in range(len(widths) - 1)]
        )
        self.merge = nnx.List(
            [DoubleConv(2 * widths[i], widths[i], groups=g, rngs=rngs, dtype=dtype) for i in range(len(widths) - 1)]
        )
        self.drop = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.head = PeriodicConv(widths[0], out_channels, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Next-state (or tendency) channels ``[B, C_out, H, W]`` of input ``[B, C_in, H, W]``."""
        x, pads = self.to_padded(x)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else max_pool_2x2(x))
            skips.append(x)
        x = self.drop(skips.pop(), deterministic=deterministic)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](jnp.concatenate([self.up[i](x), skips[i]], axis=-1))
        return self.from_padded(self.head(x), pads)
