"""The STE corrector: the neural tendency of the hybrid model.

Architecture (after the NeuralOGCM description: encoder -> 3 spatio-temporal attention blocks ->
decoder, skip from encoder to decoder)::

    x [B, C_in, H, W]
      -> rows reflect-padded to a multiple of the total stride 2**n_down
      -> encoder: n_conv_blocks ConvSC blocks (periodic 3x3 conv, GroupNorm, SiLU),
                  n_down of them stride 2                       -> [B, H/4, W/4, hid]
      -> n_attention_blocks AttentionBlocks (depthwise-conv position embedding, LayerNorm,
                  global multi-head self-attention, MLP, residuals, drop-path)
      -> decoder: mirror of the encoder (sub-pixel upsampling), encoder's first-block output
                  added before its last block (the skip)          -> [B, H, W, hid]
      -> 1x1 projection to C_out, kernel and bias initialised at ZERO
      -> rows cropped back                                        -> [B, C_out, H, W]

The zero-initialised projection makes the untrained corrector output exactly zero, so an untrained
hybrid model is pure physics; the first optimiser step moves the projection off zero (its gradient
is the decoder features times the loss gradient, which is not zero) and only then do the upstream
layers start to receive gradient.

Sizes. The paper publishes none of them; every default here is ours, chosen so a forward pass at
1.5 degrees runs in well under a second on a laptop CPU and fits one accelerator at batch 2:
width ``hid_channels=64``, ``n_down=2`` (120x240 -> 30x60, 16 cells merged into one token),
``n_conv_blocks=4`` (SimVP's N_S=4), 3 attention blocks (the paper's count), 8 heads of 8
channels, MLP ratio 4, drop-path 0.1 rising linearly over the blocks.

Cost at 1.5 degrees (120 x 240, total stride 4): 30 x 60 = 1800 tokens. Each block's attention
forms 8 heads x 1800 x 1800 = 2.6e7 weights (104 MB in float32 per sample, kept for the backward
pass in training) and spends about 4 N^2 C = 0.83 GFLOP on ``QK^T`` and ``AV`` per sample, against
about 0.18 GFLOP for its projections and MLP. At 0.25 degrees (720 x 1440) the same stride gives
64 800 tokens and 4.2e9 weights per head: use a larger ``n_down`` there.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from neuralogcm_jax.nn.layers import AttentionBlock, ConvDecoder, ConvEncoder, Dtype, PeriodicConv
from neuralogcm_jax.nn.network import (
    GridNetwork,
    NetworkConfig,
    at_least_one,
    encoder_plan,
    multiple_of,
    rates,
    reject,
)


@dataclasses.dataclass(frozen=True)
class STEConfig(NetworkConfig):
    """Sizes of the STE corrector (all ours: the paper publishes none).

    Attributes:
      hid_channels: feature width of encoder, attention blocks and decoder. Default 64.
      n_conv_blocks: ConvSC blocks in the encoder and in the decoder. Default 4.
      n_down: stride-2 blocks among them; total stride ``2**n_down``. Default 2 (1.5 deg:
        120x240 -> 30x60 tokens). The grid's longitude count must divide by the total stride.
      n_attention_blocks: global attention blocks between encoder and decoder. Default 3.
      num_heads: attention heads; must divide ``hid_channels``. Default 8.
      mlp_ratio: MLP hidden width / ``hid_channels`` in the attention blocks. Default 4.0.
      dropout: dropout rate on attention output and MLP, active when not deterministic. Default 0.0.
      drop_path: stochastic-depth rate of the last attention block (0 for the first, linear
        in between). Default 0.1.
      norm_groups: preferred GroupNorm group count (largest divisor of the width not above it).
        Default 8.
    """

    rules = (
        at_least_one("hid_channels", "n_conv_blocks", "num_heads", "norm_groups", "n_attention_blocks"),
        multiple_of("hid_channels", "num_heads"),
        encoder_plan("n_conv_blocks", "n_down"),
        rates("dropout", "drop_path"),
        reject(lambda c: c.mlp_ratio <= 0, lambda c: f"STEConfig.mlp_ratio must be > 0, got {c.mlp_ratio!r}"),
    )

    hid_channels: int = 64
    n_conv_blocks: int = 4
    n_down: int = 2
    n_attention_blocks: int = 3
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.1
    norm_groups: int = 8


class STE(GridNetwork, label="STE", config_type=STEConfig,
          stride=lambda cfg: 2**cfg.n_down):
    """STE corrector: ``[B, C_in, H, W] -> [B, C_out, H, W]``, exactly zero until trained.

    Args:
      cfg: sizes (``STEConfig()`` when None).
      in_channels: input channels (97 in the hybrid: 93 normalised ocean channels at day t and
        4 normalised forcing channels at day t+1).
      out_channels: output channels (93: the normalised tendency of every ocean channel).
      grid_shape: ``(H, W)`` = (latitudes, longitudes) of the grid the network runs on.
      rngs: parameter (and dropout) random streams.
      dtype: compute dtype (float32, or bfloat16 for mixed precision); parameters stay float32.
    """

    def build(self, cfg: STEConfig, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        in_channels, out_channels = self.in_channels, self.out_channels
        self.encoder = ConvEncoder(
            in_channels, cfg.hid_channels, cfg.n_conv_blocks, cfg.n_down,
            groups=cfg.norm_groups, rngs=rngs, dtype=dtype,
        )
        rates = np.linspace(0.0, cfg.drop_path, cfg.n_attention_blocks)
        self.blocks = nnx.List(
            [
                AttentionBlock(
                    cfg.hid_channels, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                    drop_path=float(r), rngs=rngs, dtype=dtype,
                )
                for r in rates
            ]
        )
        self.decoder = ConvDecoder(
            cfg.hid_channels, cfg.n_conv_blocks, cfg.n_down,
            groups=cfg.norm_groups, rngs=rngs, dtype=dtype,
        )
        # Zero kernel and bias: an untrained corrector adds nothing to the physics.
        self.head = PeriodicConv(
            cfg.hid_channels, out_channels, 1,
            kernel_init=nnx.initializers.zeros_init(), bias_init=nnx.initializers.zeros_init(),
            rngs=rngs, dtype=dtype,
        )

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array, tuple[int, int]]:
        """``[B, C_in, H, W]`` -> (latent ``[B, h, w, hid]``, skip ``[B, H', W, hid]``, row pads)."""
        x, pads = self.to_padded(x)
        latent, skip = self.encoder(x)
        return latent, skip, pads

    def decode(self, latent: jax.Array, skip: jax.Array, pads: tuple[int, int]) -> jax.Array:
        """Latent ``[B, h, w, hid]`` + skip -> output ``[B, C_out, H, W]`` (head included)."""
        y = self.head(self.decoder(latent, skip))
        return self.from_padded(y, pads)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Corrector tendency ``[B, C_out, H, W]`` (in the compute dtype) of input ``[B, C_in, H, W]``."""
        latent, skip, pads = self.encode(x)
        for blk in self.blocks:
            latent = blk(latent, deterministic=deterministic)
        return self.decode(latent, skip, pads)
