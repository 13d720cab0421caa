"""ConvLSTM baseline (Shi et al. 2015): a one-step forecaster ``[B, C_in, H, W] -> [B, C_out, H, W]``.

The baselines forecast one day from one input frame. The network is::

    x -> ConvEncoder (periodic ConvSC blocks, total stride 2**n_down; 1.5 deg: 120x240 -> 30x60)
      -> a stack of ``num_layers`` ConvLSTM cells run from a zero hidden and cell state,
         the latent frame fed ``n_iterations`` times (each layer reads the hidden state of the
         layer below)
      -> ConvDecoder (sub-pixel upsampling, skip from the encoder's first block) -> 1x1 head

One step from a zero state (``n_iterations=1``, the default, as in a sequence model given one
frame) is exactly: gates ``i, g, o`` from the input only, cell ``c = sigma(i) tanh(g)``, hidden
``h = sigma(o) tanh(c)``; the recurrent convolution (applied to ``h = 0``) and the forget gate
(applied to ``c = 0``) contribute nothing and receive no gradient, so in this mode they are not
built. ``n_iterations > 1`` builds the full cell (input and recurrent 5x5 convolutions, forget
gate) and iterates it on the same latent frame, letting the hidden state refine itself.

Sizes are ours (the paper names the baseline only): width 64, 3 cells with 5x5 kernels at the
stride-4 latent resolution (full resolution would cost 16x more per cell for little gain at a
daily step).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.nn.layers import ConvDecoder, ConvEncoder, Dtype, PeriodicConv
from neuralogcm_jax.nn.network import GridNetwork, NetworkConfig, at_least_one, encoder_plan, reject


@dataclasses.dataclass(frozen=True)
class ConvLSTMConfig(NetworkConfig):
    """Sizes of the ConvLSTM baseline.

    Attributes:
      hid_channels: width of encoder, cells and decoder. Default 64.
      n_conv_blocks: ConvSC blocks in the encoder and in the decoder. Default 4.
      n_down: stride-2 blocks in the encoder (total stride ``2**n_down``). Default 2.
      num_layers: stacked ConvLSTM cells. Default 3.
      kernel_size: odd kernel of the cell convolutions. Default 5.
      n_iterations: times the latent frame is fed to the cell stack; 1 = one step from the zero
        state (no recurrent weights built). Default 1.
      norm_groups: preferred GroupNorm group count in encoder/decoder. Default 8.
    """

    rules = (
        at_least_one("hid_channels", "n_conv_blocks", "num_layers", "n_iterations", "norm_groups"),
        reject(lambda c: c.kernel_size < 1 or c.kernel_size % 2 == 0,
               lambda c: f"ConvLSTMConfig.kernel_size must be odd and >= 1, got {c.kernel_size}"),
        encoder_plan("n_conv_blocks", "n_down"),
    )

    hid_channels: int = 64
    n_conv_blocks: int = 4
    n_down: int = 2
    num_layers: int = 3
    kernel_size: int = 5
    n_iterations: int = 1
    norm_groups: int = 8


class ConvLSTMCell(nnx.Module):
    """One ConvLSTM cell on ``[B, h, w, C]`` maps; state ``(h, c)`` each ``[B, h, w, hid]``.

    With ``recurrent=False`` the cell only ever starts from the zero state (one step) and holds
    the input convolution for gates (i, g, o) alone; with ``recurrent=True`` it holds the input
    convolution (with bias) and the recurrent convolution (no bias) for gates (i, f, g, o).
    """

    def __init__(
        self, cin: int, hid: int, kernel_size: int, *, recurrent: bool, rngs: nnx.Rngs, dtype: Dtype
    ):
        self.hid, self.recurrent = hid, recurrent
        n_gates = 4 if recurrent else 3
        self.conv_x = PeriodicConv(cin, n_gates * hid, kernel_size, rngs=rngs, dtype=dtype)
        self.conv_h = (
            PeriodicConv(hid, 4 * hid, kernel_size, use_bias=False, rngs=rngs, dtype=dtype)
            if recurrent
            else None
        )

    def __call__(self, x: jax.Array, state: tuple[jax.Array, jax.Array] | None):
        """Advance the cell one step: returns the new ``(h, c)``; ``state=None`` is the zero state."""
        gates = self.conv_x(x)
        if not self.recurrent:
            i, g, o = jnp.split(gates, 3, axis=-1)
            c = jax.nn.sigmoid(i) * jnp.tanh(g)
        else:
            if state is not None:
                gates = gates + self.conv_h(state[0])
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c = jax.nn.sigmoid(i) * jnp.tanh(g)
            if state is not None:
                c = c + jax.nn.sigmoid(f) * state[1]
        return jax.nn.sigmoid(o) * jnp.tanh(c), c


class ConvLSTM(GridNetwork, label="ConvLSTM", config_type=ConvLSTMConfig,
               stride=lambda cfg: 2**cfg.n_down):
    """ConvLSTM baseline ``[B, C_in, H, W] -> [B, C_out, H, W]`` (see the module docstring).

    Constructor arguments: those of `GridNetwork`."""

    def build(self, cfg: ConvLSTMConfig, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        in_channels, out_channels = self.in_channels, self.out_channels
        self.n_iterations = cfg.n_iterations
        hid = cfg.hid_channels
        self.encoder = ConvEncoder(
            in_channels, hid, cfg.n_conv_blocks, cfg.n_down, groups=cfg.norm_groups, rngs=rngs, dtype=dtype
        )
        self.cells = nnx.List(
            [
                ConvLSTMCell(hid, hid, cfg.kernel_size, recurrent=cfg.n_iterations > 1, rngs=rngs, dtype=dtype)
                for _ in range(cfg.num_layers)
            ]
        )
        self.decoder = ConvDecoder(hid, cfg.n_conv_blocks, cfg.n_down, groups=cfg.norm_groups, rngs=rngs, dtype=dtype)
        self.head = PeriodicConv(hid, out_channels, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Next-state (or tendency) channels ``[B, C_out, H, W]`` of input ``[B, C_in, H, W]``."""
        del deterministic  # no dropout in this network
        x, pads = self.to_padded(x)
        latent, skip = self.encoder(x)
        states = [None] * len(self.cells)
        for _ in range(self.n_iterations):
            inp = latent
            for k, cell in enumerate(self.cells):
                states[k] = cell(inp, states[k])
                inp = states[k][0]
        y = self.decoder(states[-1][0], skip)
        return self.from_padded(self.head(y), pads)
