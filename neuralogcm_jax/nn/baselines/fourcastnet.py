"""FourCastNet baseline (Pathak et al. 2022): Adaptive Fourier Neural Operator (AFNO) blocks.

``[B, C_in, H, W] -> [B, C_out, H, W]``::

    x -> rows reflect-padded to a multiple of patch_size (and, only if W does not divide,
         longitudes wrap-padded on the east, see below)
      -> patch embedding: a patch x patch convolution with stride patch (1.5 deg, patch 4:
         30 x 60 tokens of embed_dim) + learned position embedding
      -> depth AFNO blocks:  x = x + Filter(LayerNorm(x));  x = x + DropPath(MLP(LayerNorm(x)))
      -> linear head to out_channels * patch**2 per token, depth-to-space, crop -> output

The AFNO filter mixes tokens globally in Fourier space: ``rfft2`` over (lat, lon), a
block-diagonal two-layer complex MLP over channels (``num_blocks`` blocks, the same weights for
every wavenumber), soft-thresholding of the result (sparsity ``lambda``), ``irfft2`` back, plus
the filter's input (the filter's own skip). The longitude FFT is periodic, so mixing crosses the
date line as it should; the latitude FFT treats the pole-to-pole axis as periodic too, as in
FourCastNet (a wrap-around between the northern and southern rows that the learned filter and the
position embedding have to live with). All Fourier modes are kept (no hard thresholding).

FFTs and the spectral MLP run in float32 also when the compute dtype is bfloat16 (``jnp.fft``
has no bfloat16 and the spectra need the range).

Grids whose longitude count does not divide by patch_size are wrap-padded on the east and
cropped back: this works but the FFT then sees a period of the padded width, so the seam is no
longer exactly continuous; prefer ``W % patch_size == 0`` (true for 1.5 deg, 240 / 4).

Sizes: patch 4 and embed_dim 256 follow the NeuralOGCM baseline description; depth 8 (FourCastNet
uses 12 blocks of width 768 at patch 8 on 0.25 deg), 8 blocks, MLP ratio 4 and lambda 0.01 are
ours or FourCastNet's defaults.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuralogcm_jax.nn import initializers as init
from neuralogcm_jax.nn.conv import conv_general_dilated
from neuralogcm_jax.nn.layers import (
    DropPath,
    Dtype,
    Mlp,
    check_input,
    nchw_to_nhwc,
    nhwc_to_nchw,
    pad_sphere,
    pixel_shuffle,
    rows_to_pad,
)
from neuralogcm_jax.nn.network import GridNetwork, NetworkConfig, at_least_one, multiple_of, rates, reject


@dataclasses.dataclass(frozen=True)
class FourCastNetConfig(NetworkConfig):
    """Sizes of the FourCastNet (AFNO) baseline.

    Attributes:
      patch_size: side of the square patches that become tokens. Default 4.
      embed_dim: token width. Default 256.
      depth: AFNO blocks. Default 8.
      num_blocks: diagonal blocks of the spectral channel MLP; must divide embed_dim. Default 8.
      mlp_ratio: hidden width / embed_dim of the token MLP. Default 4.0.
      spectral_hidden_factor: hidden width factor of the spectral MLP. Default 1.
      sparsity_threshold: soft-thresholding level lambda on the filtered spectrum. Default 0.01.
      dropout: dropout in the token MLP when not deterministic. Default 0.0.
      drop_path: stochastic depth of the last block (linear from 0). Default 0.0.
    """

    rules = (
        at_least_one("patch_size", "embed_dim", "depth", "num_blocks", "spectral_hidden_factor"),
        multiple_of("embed_dim", "num_blocks"),
        reject(lambda c: c.mlp_ratio <= 0 or c.sparsity_threshold < 0,
               lambda c: f"FourCastNetConfig: mlp_ratio must be > 0 and sparsity_threshold >= 0, got "
                         f"{c.mlp_ratio}, {c.sparsity_threshold}"),
        rates("dropout", "drop_path"),
    )

    patch_size: int = 4
    embed_dim: int = 256
    depth: int = 8
    num_blocks: int = 8
    mlp_ratio: float = 4.0
    spectral_hidden_factor: int = 1
    sparsity_threshold: float = 0.01
    dropout: float = 0.0
    drop_path: float = 0.0


def soft_threshold(x: jax.Array, lam: float) -> jax.Array:
    """Soft-thresholding ``sign(x) max(|x| - lam, 0)`` (sparsifies the filtered spectrum)."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


class AFNOFilter(nnx.Module):
    """Global token mixing in Fourier space, ``[B, h, w, D] -> [B, h, w, D]`` (see module docstring).

    The complex weights are held as (real, imaginary) pairs: ``w1 [2, nb, D/nb, f*D/nb]``,
    ``b1 [2, nb, f*D/nb]``, ``w2 [2, nb, f*D/nb, D/nb]``, ``b2 [2, nb, D/nb]``.
    """

    def __init__(self, dim: int, num_blocks: int, hidden_factor: int, lam: float, *, rngs: nnx.Rngs):
        bs = dim // num_blocks
        hs = bs * hidden_factor
        self.num_blocks, self.lam = num_blocks, float(lam)
        scale = 0.02
        key = rngs.params
        self.w1 = nnx.Param(scale * init.normal(key(), (2, num_blocks, bs, hs), jnp.float32))
        self.b1 = nnx.Param(scale * init.normal(key(), (2, num_blocks, hs), jnp.float32))
        self.w2 = nnx.Param(scale * init.normal(key(), (2, num_blocks, hs, bs), jnp.float32))
        self.b2 = nnx.Param(scale * init.normal(key(), (2, num_blocks, bs), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        b, h, w, d = x.shape
        real = jnp.promote_types(dtype, jnp.float32)  # no bfloat16 FFT; float64 kept for tests
        xf = jnp.fft.rfft2(x.astype(real), axes=(1, 2), norm="ortho")
        xf = xf.reshape(b, h, w // 2 + 1, self.num_blocks, d // self.num_blocks)
        xr, xi = jnp.real(xf), jnp.imag(xf)
        w1, b1, w2, b2 = self.w1[...], self.b1[...], self.w2[...], self.b2[...]

        def cmul(ar, ai, wt):  # (ar + i ai) @ (wt[0] + i wt[1]), per diagonal block
            mm = lambda a, m: jnp.einsum("...ki,kio->...ko", a, m)  # noqa: E731
            return mm(ar, wt[0]) - mm(ai, wt[1]), mm(ai, wt[0]) + mm(ar, wt[1])

        hr, hi = cmul(xr, xi, w1)
        hr, hi = jax.nn.relu(hr + b1[0]), jax.nn.relu(hi + b1[1])
        yr, yi = cmul(hr, hi, w2)
        yr, yi = soft_threshold(yr + b2[0], self.lam), soft_threshold(yi + b2[1], self.lam)
        yf = (yr + 1j * yi).reshape(b, h, w // 2 + 1, d)
        y = jnp.fft.irfft2(yf, s=(h, w), axes=(1, 2), norm="ortho")
        return (y + x.astype(real)).astype(dtype)


class AFNOBlock(nnx.Module):
    """``x = x + Filter(LN(x)); x = x + DropPath(MLP(LN(x)))`` on ``[B, h, w, D]``."""

    def __init__(self, cfg: FourCastNetConfig, drop_path: float, *, rngs: nnx.Rngs, dtype: Dtype):
        d = cfg.embed_dim
        self.norm1 = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)
        self.filter = AFNOFilter(d, cfg.num_blocks, cfg.spectral_hidden_factor, cfg.sparsity_threshold, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio), dropout=cfg.dropout, rngs=rngs, dtype=dtype)
        self.drop_path = DropPath(drop_path, ndim=4, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = x + self.filter(self.norm1(x))
        return x + self.drop_path(self.mlp(self.norm2(x), deterministic=deterministic), deterministic=deterministic)


class FourCastNet(GridNetwork, label="FourCastNet", config_type=FourCastNetConfig):
    """AFNO baseline ``[B, C_in, H, W] -> [B, C_out, H, W]`` (see the module docstring).

    Constructor arguments: those of `GridNetwork`."""

    def build(self, cfg: FourCastNetConfig, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        in_channels, out_channels = self.in_channels, self.out_channels
        p = self.patch = cfg.patch_size
        h, w = self.grid_shape
        self.row_pads = rows_to_pad(h, p)
        self.lon_pad = (-w) % p
        hp, wp = (h + sum(self.row_pads)) // p, (w + self.lon_pad) // p
        self.embed = nnx.Conv(
            in_channels, cfg.embed_dim, (p, p), strides=(p, p), padding="VALID",
            dtype=dtype, param_dtype=jnp.float32, kernel_init=init.lecun_normal, rngs=rngs,
            conv_general_dilated=conv_general_dilated,  # see `neuralogcm_jax.nn.conv`
        )
        self.pos_embed = nnx.Param(
            0.02 * init.truncated_normal(rngs.params(), -2.0, 2.0, (1, hp, wp, cfg.embed_dim), jnp.float32)
        )
        rates = np.linspace(0.0, cfg.drop_path, cfg.depth)
        self.blocks = nnx.List([AFNOBlock(cfg, float(r), rngs=rngs, dtype=dtype) for r in rates])
        self.norm = nnx.LayerNorm(cfg.embed_dim, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(cfg.embed_dim, out_channels * p * p, dtype=dtype, param_dtype=jnp.float32,
                               kernel_init=init.lecun_normal, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Next-state (or tendency) channels ``[B, C_out, H, W]`` of input ``[B, C_in, H, W]``."""
        check_input(x, self.in_channels, self.grid_shape, "FourCastNet")
        h, w = self.grid_shape
        x = pad_sphere(nchw_to_nhwc(x.astype(self.dtype)), self.row_pads, (0, self.lon_pad))
        t = self.embed(x) + self.pos_embed[...].astype(self.dtype)
        for blk in self.blocks:
            t = blk(t, deterministic=deterministic)
        y = pixel_shuffle(self.head(self.norm(t)), self.patch)
        y = y[:, self.row_pads[0] : self.row_pads[0] + h, :w]
        return nhwc_to_nchw(y)
