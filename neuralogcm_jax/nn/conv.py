"""The networks' convolution, with a backward pass XLA on CPU runs at full speed inside loops.

Every convolution of the networks is a ``VALID`` convolution of a channels-last input
``[N, H, W, C_in]`` with an ``[kh, kw, C_in / groups, C_out]`` kernel (the padding is explicit,
`layers.pad_sphere`). Autodiff of `jax.lax.conv_general_dilated` writes the input gradient as a
convolution whose kernel is read with its input and output dimensions swapped, and the kernel
gradient as one whose batch and feature dimensions are swapped. In a function XLA compiles as
a whole, its CPU compiler rewrites both into the standard layout (with explicit transposes) and
hands them to its fast convolution kernels; inside the body of a `lax.scan`, which is where a
rollout's days and so every training step run them, they are left as they are and take a slow
generic path. Measured (`benchmarks/BENCHMARKS.md`, "demo training step", and the
``NAME_grad_in_scan`` rows of "networks"): the gradient of one 3x3 64->64 convolution of a 34x62
input 71 ms inside a one-step scan against 4.7 ms outside; the demo corrector's gradient
(6 deg, one day) 0.45-0.54 s inside the rollout against 0.04-0.07 s alone.

`conv_general_dilated` here has the signature of `jax.lax.conv_general_dilated` (`nnx.Conv`
takes it as its ``conv_general_dilated`` argument). For the networks' case it computes the same
forward convolution and defines the backward pass itself, as standard-layout convolutions:

* input gradient: the output cotangent, zero-stuffed between samples by the stride (an interior
  pad) and padded by ``k - 1`` (plus the input rows and columns a strided window never reached),
  convolved with the spatially flipped kernel whose input and output channels are exchanged
  within each group;
* kernel gradient: for each group, the input with its channels as the batch and its batch as
  the channels, convolved with the (stride-dilated) output cotangent as the kernel; a
  depthwise kernel (one input and one output channel per group) is instead a sum over the
  ``kh * kw`` taps of products, which needs no convolution at all.

Any other case (padding other than VALID, dilations, other layouts, batch groups) goes to
`jax.lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_SPEC = ("NHWC", "HWIO", "NHWC")


def _standard(x, w, padding, groups, precision):
    """A stride-1 convolution in the standard layout (what XLA's fast CPU kernels take)."""
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_SPEC,
                                    feature_group_count=groups, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_nhwc(x, w, strides, groups, precision=None):
    """``VALID`` convolution of ``x [N, H, W, C_in]`` with ``w [kh, kw, C_in/groups, C_out]`` at
    `strides` (a pair); ``[N, Ho, Wo, C_out]``. Differentiable in `x` and `w` (see the module
    docstring for how)."""
    return lax.conv_general_dilated(x, w, strides, "VALID", dimension_numbers=_SPEC,
                                    feature_group_count=groups, precision=precision)


def _conv_fwd(x, w, strides, groups, precision):
    return conv_nhwc(x, w, strides, groups, precision), (x, w)


def _dilate(dy, strides):
    """Zero-stuff the output cotangent between samples: ``[N, s*(Ho-1)+1, ...]``."""
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return dy
    zero = jnp.zeros((), dy.dtype)
    return lax.pad(dy, zero, ((0, 0, 0), (0, 0, sh - 1), (0, 0, sw - 1), (0, 0, 0)))


def _kernel_grad_dense(x, dy_dil, kh, kw, precision):
    """``dw[a, b, i, o] = sum_{n, y, z} x[n, y + a, z + b, i] * dy_dil[n, y, z, o]`` for
    ``a < kh, b < kw``: a standard convolution with the channels of `x` as its batch."""
    xt = jnp.transpose(x, (3, 1, 2, 0))  # [C_in, H, W, N]
    kt = jnp.transpose(dy_dil, (1, 2, 0, 3))  # [Hd, Wd, N, C_out] as the kernel
    dw = _standard(xt, kt, "VALID", 1, precision)  # [C_in, kh + rh, kw + rw, C_out]
    return jnp.transpose(dw[:, :kh, :kw, :], (1, 2, 0, 3))


def _conv_bwd(strides, groups, precision, res, dy):
    x, w = res
    kh, kw, ci, c_out = w.shape
    g, co = groups, c_out // groups
    (h, wd), (ho, wo) = x.shape[1:3], dy.shape[1:3]
    sh, sw = strides
    rh, rw = h - (sh * (ho - 1) + kh), wd - (sw * (wo - 1) + kw)  # rows no window reached
    dy_dil = _dilate(dy, strides)

    # input gradient: flipped kernel, input and output channels exchanged within each group
    wt = w.reshape(kh, kw, ci, g, co).transpose(0, 1, 4, 3, 2).reshape(kh, kw, co, g * ci)
    wt = jnp.flip(wt, (0, 1))
    dx = _standard(dy_dil, wt, ((kh - 1, kh - 1 + rh), (kw - 1, kw - 1 + rw)), g, precision)

    # kernel gradient
    if g == 1:
        dw = _kernel_grad_dense(x, dy_dil, kh, kw, precision)
    elif ci == 1 and co == 1:  # depthwise: one product-sum per tap
        hd, wdd = dy_dil.shape[1:3]
        taps = [jnp.sum(x[:, a : a + hd : sh, b : b + wdd : sw, :] * dy, axis=(0, 1, 2))
                for a in range(kh) for b in range(kw)]
        dw = jnp.stack(taps).reshape(kh, kw, 1, c_out)
    else:
        dw = jnp.concatenate(
            [_kernel_grad_dense(x[..., j * ci : (j + 1) * ci], dy_dil[..., j * co : (j + 1) * co],
                                kh, kw, precision) for j in range(g)], axis=-1)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv_nhwc.defvjp(_conv_fwd, _conv_bwd)


def _is_nhwc(dimension_numbers, ndim) -> bool:
    if dimension_numbers is None or ndim != 4:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return dimension_numbers == lax.conv_dimension_numbers(
            (1,) * 4, (1,) * 4, _SPEC)
    return tuple(dimension_numbers) == _SPEC


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         out_sharding=None):
    """`jax.lax.conv_general_dilated`, through `conv_nhwc` in the networks' case (``VALID``,
    no dilation, channels-last, no batch groups, no output sharding or element type)."""
    plain = (isinstance(padding, str) and padding == "VALID"
             and all(d == 1 for d in (lhs_dilation or (1, 1)))
             and all(d == 1 for d in (rhs_dilation or (1, 1)))
             and _is_nhwc(dimension_numbers, jnp.ndim(lhs)) and batch_group_count == 1
             and preferred_element_type is None and out_sharding is None)
    if plain:
        return conv_nhwc(lhs, rhs, tuple(int(s) for s in window_strides),
                         int(feature_group_count), precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type, out_sharding=out_sharding)
