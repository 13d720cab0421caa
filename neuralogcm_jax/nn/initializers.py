"""Random parameter initialisers that compile once per size class instead of once per shape.

`jax.random.normal` and `jax.random.truncated_normal` are jitted with the shape static, so every
weight of a new shape compiles its own XLA program (the threefry rounds, and the inverse error
function of the truncated normal): 0.3-0.8 s each on the CPU, and a network has tens of distinct
shapes (building a small SimVP took 17 CPU-s on a quiet machine, almost all of it in these
compilations; BENCHMARKS.md, "networks: model build"). Every process that builds a model pays it
again: each test process, each command-line run, each child of a multi-process launch.

With the partitionable threefry (`jax_threefry_partitionable`, JAX's default) the bits of
element ``i`` of a draw depend only on the key and ``i``, so the first ``n`` values of a longer
flat draw are the values of any ``n``-element shape in row-major order. The initialisers here
draw a flat vector whose length is the next power of two (at least `MIN_DRAW`) and cut it: the
values of the JAX initialisers they replace, bit for bit (tests/test_networks.py checks it), with
one compilation per power of two in a process. Without the partitionable threefry they draw the
shape itself (the values are then those of that setting too).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = Any
MIN_DRAW = 1024  # the shortest flat draw: the small weights (biases, norms) share one program
# The standard deviation of a standard normal truncated to (-2, 2).
_TRUNCATED_STD = 0.87962566103423978


def _draw_length(n: int) -> int:
    return max(MIN_DRAW, 1 << max(n - 1, 0).bit_length())


def _cut(draw: Callable[[Array, tuple[int, ...]], Array], key: Array,
         shape: tuple[int, ...]) -> Array:
    """``draw(key, shape)``, made from a flat draw of `_draw_length` values."""
    shape = tuple(int(s) for s in shape)
    if not jax.config.jax_threefry_partitionable:
        return draw(key, shape)
    n = math.prod(shape)
    return draw(key, (_draw_length(n),))[:n].reshape(shape)


def normal(key: Array, shape, dtype=jnp.float32) -> Array:
    """`jax.random.normal(key, shape, dtype)`, bit for bit."""
    return _cut(lambda k, s: jax.random.normal(k, s, dtype), key, shape)


def truncated_normal(key: Array, lower: float, upper: float, shape, dtype=jnp.float32) -> Array:
    """`jax.random.truncated_normal(key, lower, upper, shape, dtype)`, bit for bit."""
    return _cut(lambda k, s: jax.random.truncated_normal(k, lower, upper, s, dtype), key, shape)


def lecun_normal(key: Array, shape, dtype=jnp.float32) -> Array:
    """`jax.nn.initializers.lecun_normal()` (truncated normal, variance 1 / fan-in, the input
    axis -2 and the output axis -1, any others the receptive field), bit for bit: the default
    kernel initialiser of `nnx.Conv` and `nnx.Linear`."""
    if len(shape) < 2:
        raise ValueError(f"lecun_normal: a weight needs an input and an output axis, got shape "
                         f"{tuple(shape)}")
    fan_in = math.prod(shape[:-1])
    stddev = jnp.sqrt(jnp.array(1.0 / fan_in, dtype)) / jnp.array(_TRUNCATED_STD, dtype)
    return truncated_normal(key, -2, 2, shape, dtype) * stddev
