"""Shared network pieces on the latitude-longitude grid, in Flax NNX.

Every convolution in this package pads explicitly before a ``padding="VALID"`` convolution:

* longitude is **periodic** (wrap padding), so a feature at 179.25 E sees its neighbour at
  179.25 W and there is no seam at the date line;
* latitude is **reflected** at the outermost rows (the rows next to the poles or the southern
  ice edge), which keeps the grid's N-S orientation and adds no artificial zero boundary.

With this padding a stride-``s`` convolution commutes with a roll of the input by any multiple
``k`` of ``s`` longitudes (output column ``j`` reads input columns ``s*j - p ... s*j + p`` modulo
the width, so rolling the input by ``s*m`` rolls the output by exactly ``m``). A roll by a ``k``
that is *not* a multiple of the total stride moves the input relative to the sampling lattice of
the strided layers, so the downsampled features differ (aliasing): equivariance holds only for
``k`` a multiple of the network's total stride.

Grids whose number of rows does not divide by the total stride (e.g. 30 rows and stride 4) are
handled by :func:`pad_rows_to_multiple` (reflection rows added at both ends) and cropped back
with :func:`crop_rows` at the end of the network. The number of longitudes must divide by the
total stride, because padding a periodic axis would break the periodicity; a grid that does not
raises :class:`~neuralogcm_jax.errors.ConfigError` (checked by the networks' shared constructor,
:class:`~neuralogcm_jax.nn.network.GridNetwork`).

Arrays inside the networks are channels-last ``[batch, lat, lon, channel]`` (what ``nnx.Conv``
expects); the public network interface is channels-first ``[batch, channel, lat, lon]`` like
the data.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.errors import ConfigError, LayoutError
from neuralogcm_jax.nn import initializers as init
from neuralogcm_jax.nn.conv import conv_general_dilated

Dtype = jnp.dtype | type

# --------------------------------------------------------------------------------------------
# layout helpers


def nchw_to_nhwc(x: jax.Array) -> jax.Array:
    """``[batch, channel, lat, lon]`` -> ``[batch, lat, lon, channel]``."""
    return jnp.transpose(x, (0, 2, 3, 1))


def nhwc_to_nchw(x: jax.Array) -> jax.Array:
    """``[batch, lat, lon, channel]`` -> ``[batch, channel, lat, lon]``."""
    return jnp.transpose(x, (0, 3, 1, 2))


def check_input(x: jax.Array, in_channels: int, grid_shape: tuple[int, int], name: str) -> None:
    """Raise LayoutError unless ``x`` is ``[batch, in_channels, H, W]`` with ``(H, W) == grid_shape``."""
    if x.ndim != 4 or x.shape[1] != in_channels or tuple(x.shape[2:]) != tuple(grid_shape):
        raise LayoutError(
            f"{name}: expected input [batch, {in_channels}, {grid_shape[0]}, {grid_shape[1]}] "
            f"(channels-first), got shape {tuple(x.shape)}"
        )


def norm_groups(channels: int, preferred: int) -> int:
    """The largest divisor of ``channels`` not above ``preferred`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, max(1, min(preferred, channels)) + 1) if channels % g == 0)


# --------------------------------------------------------------------------------------------
# padding on the sphere


def pad_sphere(x: jax.Array, pad_lat: tuple[int, int], pad_lon: tuple[int, int]) -> jax.Array:
    """Pad ``x`` ``[batch, lat, lon, channel]``: reflect in latitude, wrap in longitude.

    Args:
      x: field on the grid, channels-last.
      pad_lat: rows added (north, south); mirrored from the outermost rows, edge row excluded.
      pad_lon: columns added (west, east); copied from the other side of the periodic axis.

    Returns:
      ``[batch, lat + sum(pad_lat), lon + sum(pad_lon), channel]``.
    """
    if pad_lon[0] or pad_lon[1]:
        x = jnp.pad(x, ((0, 0), (0, 0), tuple(pad_lon), (0, 0)), mode="wrap")
    if pad_lat[0] or pad_lat[1]:
        # "reflect" when there are enough rows; "symmetric" (edge repeated) handles a pad as
        # large as the row count on tiny grids.
        mode = "reflect" if max(pad_lat) < x.shape[1] else "symmetric"
        x = jnp.pad(x, ((0, 0), tuple(pad_lat), (0, 0), (0, 0)), mode=mode)
    return x


def rows_to_pad(n_rows: int, multiple: int) -> tuple[int, int]:
    """Rows (north, south) to add so that ``n_rows`` becomes a multiple of ``multiple``."""
    extra = (-n_rows) % multiple
    return extra // 2, extra - extra // 2


def pad_rows_to_multiple(x: jax.Array, multiple: int) -> tuple[jax.Array, tuple[int, int]]:
    """Reflect-pad rows of ``x`` ``[batch, lat, lon, channel]`` to a multiple of ``multiple``.

    Returns the padded array and the ``(north, south)`` row counts to hand to :func:`crop_rows`.
    """
    pads = rows_to_pad(x.shape[1], multiple)
    return pad_sphere(x, pads, (0, 0)), pads


def crop_rows(x: jax.Array, pads: tuple[int, int]) -> jax.Array:
    """Undo :func:`pad_rows_to_multiple` on ``[batch, lat, lon, channel]``."""
    return x[:, pads[0] : x.shape[1] - pads[1]]


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Depth to space: ``[B, h, w, C*f*f]`` -> ``[B, h*f, w*f, C]`` (output cell ``f*j + r`` from input ``j``)."""
    b, h, w, c = x.shape
    co = c // (factor * factor)
    x = x.reshape(b, h, w, factor, factor, co)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(b, h * factor, w * factor, co)


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
    """Space to depth: ``[B, h*f, w*f, C]`` -> ``[B, h, w, C*f*f]`` (inverse of :func:`pixel_shuffle`)."""
    b, hh, ww, c = x.shape
    h, w = hh // factor, ww // factor
    x = x.reshape(b, h, factor, w, factor, c)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(b, h, w, factor * factor * c)


# --------------------------------------------------------------------------------------------
# convolutions


class PeriodicConv(nnx.Module):
    """2-D convolution with sphere padding: wrap in longitude, reflection in latitude.

    For an odd ``kernel_size`` k and stride s the output has ``ceil(H/s) x ceil(W/s)`` cells
    (``(k-1)/2`` cells padded on each side); output cell ``(i, j)`` is centred on input cell
    ``(s*i, s*j)``. Input and output ``[batch, lat, lon, channel]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        use_bias: bool = True,
        kernel_init: nnx.Initializer | None = None,
        bias_init: nnx.Initializer | None = None,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        if kernel_size % 2 != 1:
            raise ConfigError(f"PeriodicConv: kernel_size must be odd, got {kernel_size}")
        self.pad = (kernel_size - 1) // 2
        extra = {"kernel_init": init.lecun_normal if kernel_init is None else kernel_init}
        if bias_init is not None:
            extra["bias_init"] = bias_init
        self.conv = nnx.Conv(
            in_features,
            out_features,
            kernel_size=(kernel_size, kernel_size),
            strides=(stride, stride),
            padding="VALID",
            feature_group_count=groups,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=jnp.float32,
            # the same convolution, with a backward pass that stays fast inside a rollout's scan
            conv_general_dilated=conv_general_dilated,
            rngs=rngs,
            **extra,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.pad
        return self.conv(pad_sphere(x, (p, p), (p, p)))


class ConvSC(nnx.Module):
    """Conv block (periodic conv, GroupNorm, SiLU), optionally 2x down- or up-sampling.

    * ``sampling="same"``: stride-1 3x3 conv.
    * ``sampling="down"``: stride-2 3x3 conv, ``[B, H, W, C]`` -> ``[B, H/2, W/2, C']``.
    * ``sampling="up"``: 3x3 conv to ``4*C'`` channels then depth-to-space, ``[B, H, W, C]`` ->
      ``[B, 2H, 2W, C']`` (sub-pixel upsampling: no transposed-conv checkerboard, and each output
      cell depends on one input cell's neighbourhood, which keeps the roll equivariance exact).

    The conv has no bias: the GroupNorm that follows carries the shift.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        sampling: str = "same",
        *,
        kernel_size: int = 3,
        groups: int = 8,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        if sampling not in ("same", "down", "up"):
            raise ConfigError(f"ConvSC: sampling must be 'same', 'down' or 'up', got {sampling!r}")
        self.sampling = sampling
        conv_out = out_features * 4 if sampling == "up" else out_features
        stride = 2 if sampling == "down" else 1
        self.conv = PeriodicConv(
            in_features, conv_out, kernel_size, stride, use_bias=False, rngs=rngs, dtype=dtype
        )
        self.norm = nnx.GroupNorm(
            out_features, num_groups=norm_groups(out_features, groups), dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x)
        if self.sampling == "up":
            y = pixel_shuffle(y, 2)
        return jax.nn.silu(self.norm(y))


def sampling_plan(n_blocks: int, n_down: int) -> list[bool]:
    """Which of ``n_blocks`` encoder blocks downsample by 2: the first ``n_down`` odd-indexed ones.

    ``sampling_plan(4, 2) == [False, True, False, True]`` as in the SimVP encoder: the first
    block keeps the resolution (its output is the decoder's skip connection) and every strided
    block is followed by, or ends, a level.
    """
    if n_down < 0 or n_blocks < max(1, 2 * n_down):
        raise ConfigError(
            f"encoder needs n_blocks >= 2 * n_down >= 0 and n_blocks >= 1, got n_blocks={n_blocks}, "
            f"n_down={n_down}"
        )
    return [i % 2 == 1 and i < 2 * n_down for i in range(n_blocks)]


class ConvEncoder(nnx.Module):
    """Stack of ConvSC blocks, ``n_down`` of them strided: ``[B, H, W, C_in] -> [B, H/2^n, W/2^n, width]``.

    Returns ``(latent, skip)``, ``skip`` the full-resolution output of the first block
    ``[B, H, W, width]``, fed to the decoder's last block.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        n_blocks: int,
        n_down: int,
        *,
        groups: int = 8,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        plan = sampling_plan(n_blocks, n_down)
        blocks = []
        for i, down in enumerate(plan):
            blocks.append(
                ConvSC(
                    in_features if i == 0 else width,
                    width,
                    "down" if down else "same",
                    groups=groups,
                    rngs=rngs,
                    dtype=dtype,
                )
            )
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = self.blocks[0](x)
        skip = x
        for blk in self.blocks[1:]:
            x = blk(x)
        return x, skip


class ConvDecoder(nnx.Module):
    """Mirror of :class:`ConvEncoder`: ``[B, h, w, width] -> [B, h*2^n, w*2^n, width]``.

    The encoder skip ``[B, H, W, width]`` is added before the last (full-resolution) block, so
    fine-scale structure (coastlines, fronts) does not have to pass through the bottleneck.
    """

    def __init__(
        self,
        width: int,
        n_blocks: int,
        n_up: int,
        *,
        groups: int = 8,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        plan = list(reversed(sampling_plan(n_blocks, n_up)))
        self.blocks = nnx.List(
            [
                ConvSC(width, width, "up" if up else "same", groups=groups, rngs=rngs, dtype=dtype)
                for up in plan
            ]
        )

    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.blocks[-1](x + skip)


# --------------------------------------------------------------------------------------------
# attention


class SelfAttention(nnx.Module):
    """Multi-head self-attention over all tokens, ``[B, N, C] -> [B, N, C]``.

    Queries and values have a bias, keys do not: a key bias adds ``q . b_k`` to every logit
    of a query alike, which the softmax cancels, so it would be a parameter with zero gradient.
    Logits and softmax are evaluated in (at least) float32 also when the compute dtype is bfloat16.

    `query_chunk`: the queries are processed in chunks of about this many tokens (`lax.map`), each
    forming only its own ``heads x chunk x N`` logits and normalising after the weighted sum of
    values (one pass fewer over the weights). The result equals the one-shot softmax to round-off;
    on a CPU, where the one-shot ``heads x N x N`` logits (104 MB per sample and block at 1.5 deg)
    do not fit in cache, it is faster (`benchmarks/bench_networks.py`, figures in
    `benchmarks/BENCHMARKS.md`). None: all queries at once. ``"auto"``
    (default): 128 on a CPU backend, None on GPU/TPU. Attention-weight dropout (`attn_dropout`
    > 0, in training) always uses the one-shot path.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        query_chunk: int | str | None = "auto",
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        if dim % num_heads != 0:
            raise ConfigError(f"SelfAttention: dim {dim} must be a multiple of num_heads {num_heads}")
        if query_chunk not in (None, "auto") and (
            isinstance(query_chunk, str) or int(query_chunk) < 1
        ):
            raise ConfigError(
                f"SelfAttention: query_chunk must be >= 1, None or 'auto', got {query_chunk!r}"
            )
        self.query_chunk = query_chunk
        self.attn_dropout_rate = float(attn_dropout)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        kw = dict(dtype=dtype, param_dtype=jnp.float32, kernel_init=init.lecun_normal, rngs=rngs)
        self.query = nnx.Linear(dim, dim, **kw)
        self.key = nnx.Linear(dim, dim, use_bias=False, **kw)
        self.value = nnx.Linear(dim, dim, **kw)
        self.out = nnx.Linear(dim, dim, **kw)
        self.attn_drop = nnx.Dropout(attn_dropout, rngs=rngs)
        self.proj_drop = nnx.Dropout(proj_dropout, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        b, n, c = x.shape

        def heads(t):
            return t.reshape(b, n, self.num_heads, self.head_dim)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # At least float32 for the logits (float64 stays float64 for gradient checks).
        acc = jnp.promote_types(q.dtype, jnp.float32)
        chunk = self.query_chunk
        if chunk == "auto":
            chunk = 128 if jax.default_backend() == "cpu" else None
        use_dropout = self.attn_dropout_rate > 0 and not deterministic
        if chunk is not None and n > chunk and not use_dropout:
            y = chunked_attention(q, k, v, int(chunk), acc).reshape(b, n, c)
            return self.proj_drop(self.out(y), deterministic=deterministic)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=acc)
        weights = jax.nn.softmax(logits / math.sqrt(self.head_dim), axis=-1).astype(v.dtype)
        weights = self.attn_drop(weights, deterministic=deterministic)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, c)
        return self.proj_drop(self.out(y), deterministic=deterministic)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int, acc) -> jax.Array:
    """Softmax attention ``[B, N, heads, d] -> [B, N, heads, d]`` over query chunks of at most
    `chunk` tokens (padded to equal chunks); logits and normaliser in dtype `acc`."""
    b, n, h, d = q.shape
    n_chunks = -(-n // chunk)
    size = -(-n // n_chunks)  # as even as possible: 1800 by 128 -> 15 x 120
    q = jnp.pad(q, ((0, 0), (0, n_chunks * size - n), (0, 0), (0, 0)))
    qs = jnp.moveaxis(q.reshape(b, n_chunks, size, h, d), 1, 0)
    kt, vt = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)  # [B, heads, N, d]: contiguous per head
    scale = 1.0 / math.sqrt(d)

    def one(qc):
        logits = jnp.einsum("bqhd,bhkd->bhqk", qc, kt, preferred_element_type=acc) * scale
        e = jnp.exp(logits - jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True)))
        num = jnp.einsum("bhqk,bhkd->bqhd", e.astype(v.dtype), vt, preferred_element_type=acc)
        return (num / jnp.swapaxes(e.sum(axis=-1), 1, 2)[..., None]).astype(v.dtype)

    out = jax.lax.map(one, qs)  # [n_chunks, B, size, heads, d]
    return jnp.moveaxis(out, 0, 1).reshape(b, n_chunks * size, h, d)[:, :n]


class Mlp(nnx.Module):
    """Token-wise MLP ``C -> hidden -> C`` with GELU and dropout, ``[..., C] -> [..., C]``."""

    def __init__(
        self, dim: int, hidden: int, *, dropout: float = 0.0, rngs: nnx.Rngs, dtype: Dtype = jnp.float32
    ):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, kernel_init=init.lecun_normal, rngs=rngs)
        self.fc1 = nnx.Linear(dim, hidden, **kw)
        self.fc2 = nnx.Linear(hidden, dim, **kw)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = self.drop(jax.nn.gelu(self.fc1(x)), deterministic=deterministic)
        return self.drop(self.fc2(x), deterministic=deterministic)


class DropPath(nnx.Module):
    """Stochastic depth: drop a whole residual branch per sample with probability ``rate``.

    Works on ``[batch, ...]`` with ``ndim`` axes in all; the kept samples are scaled by
    ``1/(1-rate)``. Identity when ``deterministic`` or ``rate == 0``.
    """

    def __init__(self, rate: float, *, ndim: int = 3, rngs: nnx.Rngs):
        self.rate = float(rate)
        # One Bernoulli draw per sample, broadcast over every other axis.
        self.drop = nnx.Dropout(self.rate, broadcast_dims=tuple(range(1, ndim)), rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        if self.rate == 0.0 or deterministic:
            return x
        return self.drop(x, deterministic=False)


class AttentionBlock(nnx.Module):
    """Uniformer-style global attention block on a feature map ``[B, h, w, C] -> [B, h, w, C]``.

    ``x = x + pos(x)`` (a 3x3 depthwise periodic convolution as position embedding, so the
    block knows where it is relative to its neighbours but has no absolute position that a
    longitude roll would break); then over the ``h*w`` tokens
    ``x = x + drop_path(attn(LayerNorm(x)))`` and ``x = x + drop_path(mlp(LayerNorm(x)))``.
    Attention is global: every token attends to every other, cost ``O((h w)^2 C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        self.pos = PeriodicConv(dim, dim, 3, groups=dim, rngs=rngs, dtype=dtype)
        self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.attn = SelfAttention(dim, num_heads, proj_dropout=dropout, rngs=rngs, dtype=dtype)
        self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout, rngs=rngs, dtype=dtype)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = x + self.pos(x)
        b, h, w, c = x.shape
        t = x.reshape(b, h * w, c)
        t = t + self.drop_path(self.attn(self.norm1(t), deterministic=deterministic), deterministic=deterministic)
        t = t + self.drop_path(self.mlp(self.norm2(t), deterministic=deterministic), deterministic=deterministic)
        return t.reshape(b, h, w, c)
