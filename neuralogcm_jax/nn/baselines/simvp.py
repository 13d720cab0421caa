"""SimVP baseline (Gao et al. 2022): a one-step forecaster ``[B, C_in, H, W] -> [B, C_out, H, W]``.

One input frame -> one output frame::

    x -> spatial encoder: N_S ConvSC blocks (periodic conv, GroupNorm, SiLU), n_down of them
         stride 2 (1.5 deg: 120x240 -> 30x60), width hid_S
      -> translator: an Inception U-Net of 2*N_T Inception modules at the latent resolution
         (1x1 bottleneck, then grouped periodic convolutions with kernels 3, 5, 7, 11, each
         followed by GroupNorm and LeakyReLU, summed); the decoder half concatenates the encoder
         half's outputs. With one frame the translator's channels are hid_S (= T * hid_S, T = 1),
         widened to hid_T inside.
      -> spatial decoder: mirror of the encoder, skip from its first block -> 1x1 readout

hid_S = 64 follows the NeuralOGCM baseline description; hid_T = 256, N_S = 4 and the Inception
kernels follow SimVP's defaults; N_T = 4 (SimVP uses 8 on Moving MNIST) is ours, to keep a 1.5 deg
forward pass near a second on a laptop CPU. Every conv is periodic in longitude, so the network
commutes with rolls by multiples of the total stride ``2**n_down``.

Cost note: XLA's CPU backend differentiates grouped convolutions slowly (figures in
`benchmarks/BENCHMARKS.md`); on CPU, ``groups=1`` trades 8x more branch FLOPs for
dense-convolution kernels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.nn.layers import ConvDecoder, ConvEncoder, Dtype, PeriodicConv, norm_groups
from neuralogcm_jax.nn.network import (
    GridNetwork,
    NetworkConfig,
    at_least_one,
    encoder_plan,
    int_tuple,
    reject,
)


@dataclasses.dataclass(frozen=True)
class SimVPConfig(NetworkConfig):
    """Sizes of the SimVP baseline.

    Attributes:
      hid_S: width of the spatial encoder/decoder. Default 64.
      hid_T: width inside the Inception translator. Default 256.
      N_S: ConvSC blocks in the spatial encoder and in the decoder. Default 4.
      N_T: Inception modules in each half of the translator (2*N_T in all); >= 2. Default 4.
      n_down: stride-2 blocks in the encoder (total stride ``2**n_down``). Default 2.
      incep_kernels: odd kernel sizes of the Inception branches. Default (3, 5, 7, 11).
      groups: channel groups of the branch convolutions and their GroupNorm (1 where the
        widths do not divide). Default 8.
      norm_groups: preferred GroupNorm group count in encoder/decoder. Default 8.
    """

    rules = (
        int_tuple("incep_kernels"),
        at_least_one("hid_S", "hid_T", "N_S", "groups", "norm_groups"),
        reject(lambda c: c.N_T < 2, lambda c: f"SimVPConfig.N_T must be >= 2, got {c.N_T}"),
        reject(lambda c: c.hid_T < 2, lambda c: f"SimVPConfig.hid_T must be >= 2, got {c.hid_T}"),
        reject(lambda c: not c.incep_kernels or any(k < 1 or k % 2 == 0 for k in c.incep_kernels),
               lambda c: f"SimVPConfig.incep_kernels must be odd sizes, got {c.incep_kernels}"),
        encoder_plan("N_S", "n_down"),
    )

    hid_S: int = 64
    hid_T: int = 256
    N_S: int = 4
    N_T: int = 4
    n_down: int = 2
    incep_kernels: tuple[int, ...] = (3, 5, 7, 11)
    groups: int = 8
    norm_groups: int = 8


class GroupConvBlock(nnx.Module):
    """Grouped periodic conv, GroupNorm, LeakyReLU(0.2): ``[B, h, w, C_in] -> [B, h, w, C_out]``."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int, *, rngs: nnx.Rngs, dtype: Dtype):
        g = groups if cin % groups == 0 and cout % groups == 0 else 1
        self.conv = PeriodicConv(cin, cout, kernel, groups=g, use_bias=False, rngs=rngs, dtype=dtype)
        self.norm = nnx.GroupNorm(cout, num_groups=norm_groups(cout, g), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.leaky_relu(self.norm(self.conv(x)), 0.2)


class Inception(nnx.Module):
    """1x1 bottleneck to ``C_hid``, then the sum of GroupConvBlocks with several kernel sizes."""

    def __init__(
        self, cin: int, chid: int, cout: int, kernels: tuple[int, ...], groups: int, *, rngs: nnx.Rngs, dtype: Dtype
    ):
        self.reduce = PeriodicConv(cin, chid, 1, rngs=rngs, dtype=dtype)
        self.branches = nnx.List([GroupConvBlock(chid, cout, k, groups, rngs=rngs, dtype=dtype) for k in kernels])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.reduce(x)
        return sum(b(x) for b in self.branches)


class InceptionTranslator(nnx.Module):
    """SimVP's mid network: N_T Inception modules down, N_T up with U-Net concatenations.

    ``[B, h, w, C] -> [B, h, w, C]``, width ``C_hid`` inside.
    """

    def __init__(self, c: int, chid: int, n_t: int, kernels, groups: int, *, rngs: nnx.Rngs, dtype: Dtype):
        half = max(1, chid // 2)
        mk = lambda i, o: Inception(i, half, o, kernels, groups, rngs=rngs, dtype=dtype)  # noqa: E731
        self.enc = nnx.List([mk(c, chid)] + [mk(chid, chid) for _ in range(n_t - 1)])
        self.dec = nnx.List([mk(chid, chid)] + [mk(2 * chid, chid) for _ in range(n_t - 2)] + [mk(2 * chid, c)])

    def __call__(self, x: jax.Array) -> jax.Array:
        skips = []
        for i, layer in enumerate(self.enc):
            x = layer(x)
            if i < len(self.enc) - 1:
                skips.append(x)
        x = self.dec[0](x)
        for layer in self.dec[1:]:
            x = layer(jnp.concatenate([x, skips.pop()], axis=-1))
        return x


class SimVP(GridNetwork, label="SimVP", config_type=SimVPConfig,
            stride=lambda cfg: 2**cfg.n_down):
    """SimVP baseline ``[B, C_in, H, W] -> [B, C_out, H, W]`` (see the module docstring).

    Constructor arguments: those of `GridNetwork`."""

    def build(self, cfg: SimVPConfig, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        in_channels, out_channels = self.in_channels, self.out_channels
        self.encoder = ConvEncoder(in_channels, cfg.hid_S, cfg.N_S, cfg.n_down, groups=cfg.norm_groups, rngs=rngs, dtype=dtype)
        self.translator = InceptionTranslator(
            cfg.hid_S, cfg.hid_T, cfg.N_T, cfg.incep_kernels, cfg.groups, rngs=rngs, dtype=dtype
        )
        self.decoder = ConvDecoder(cfg.hid_S, cfg.N_S, cfg.n_down, groups=cfg.norm_groups, rngs=rngs, dtype=dtype)
        self.readout = PeriodicConv(cfg.hid_S, out_channels, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Next-state (or tendency) channels ``[B, C_out, H, W]`` of input ``[B, C_in, H, W]``."""
        del deterministic  # no dropout in this network
        x, pads = self.to_padded(x)
        latent, skip = self.encoder(x)
        y = self.decoder(self.translator(latent), skip)
        return self.from_padded(self.readout(y), pads)
