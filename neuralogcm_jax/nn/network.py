"""What the STE and the four baselines share before their own layers: config checks and constructor.

* `NetworkConfig`: the base of the networks' frozen config dataclasses. A config lists its checks
  as the class attribute `rules`, applied in order after construction; the rules here
  (`at_least_one`, `multiple_of`, `encoder_plan`, `rates`, `int_tuple`, `reject`) each raise
  `ConfigError` naming ``ConfigType.field``.
* `GridNetwork`: the base of the networks themselves, ``[B, C_in, H, W] -> [B, C_out, H, W]`` on
  the grid: the shared constructor (default config, its type, channel counts, grid against the
  total stride, then the subclass's ``build``) and the row-padding entry and exit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.nn.layers import (
    Dtype,
    check_input,
    crop_rows,
    nchw_to_nhwc,
    nhwc_to_nchw,
    pad_rows_to_multiple,
)

Rule = Callable[[Any], None]

# --------------------------------------------------------------------------------------------
# config checks


def check_grid_shape(grid_shape: Sequence[int], total_stride: int, name: str) -> tuple[int, int]:
    """Validate ``grid_shape = (H, W)`` for a network whose strided layers reduce by ``total_stride``.

    The longitude count ``W`` must be a multiple of ``total_stride`` (the periodic axis is never
    padded); any ``H >= 2`` is accepted (rows are padded by reflection and cropped back).
    """
    try:
        h, w = (int(v) for v in grid_shape)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: grid_shape must be (lat, lon), got {grid_shape!r}") from err
    if h < 2 or w < 2:
        raise ConfigError(f"{name}: grid_shape {(h, w)} needs at least 2 rows and 2 longitudes")
    if w % total_stride != 0:
        raise ConfigError(
            f"{name}: the number of longitudes W={w} of grid_shape {(h, w)} must be a multiple of "
            f"the total stride {total_stride} (longitude is periodic and never padded); "
            f"use fewer downsampling levels or another grid"
        )
    return h, w


def check_channels(in_channels: int, out_channels: int, name: str) -> None:
    """Raise ConfigError unless both channel counts are positive integers."""
    for key, val in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ConfigError(f"{name}: {key} must be a positive integer, got {val!r}")


def at_least_one(*keys: str) -> Rule:
    """Rule: each count ``keys`` is >= 1."""

    def rule(cfg) -> None:
        for key in keys:
            if int(getattr(cfg, key)) < 1:
                raise ConfigError(f"{type(cfg).__name__}.{key} must be >= 1, got {getattr(cfg, key)!r}")

    return rule


def multiple_of(key: str, divisor: str) -> Rule:
    """Rule: field `key` is a multiple of field `divisor` (attention heads, AFNO blocks)."""

    def rule(cfg) -> None:
        a, b = getattr(cfg, key), getattr(cfg, divisor)
        if a % b:
            raise ConfigError(f"{type(cfg).__name__}.{key}={a} must be a multiple of {divisor}={b}")

    return rule


def encoder_plan(blocks: str, down: str) -> Rule:
    """Rule: ``blocks >= 2 * down >= 0``, the `ConvEncoder` plan (fields named as in the config)."""

    def rule(cfg) -> None:
        n, d = getattr(cfg, blocks), getattr(cfg, down)
        if d < 0 or n < 2 * d:
            raise ConfigError(
                f"{type(cfg).__name__} needs {blocks} >= 2 * {down} >= 0, got {blocks}={n}, {down}={d}"
            )

    return rule


def rates(*keys: str) -> Rule:
    """Rule: each rate ``keys`` (dropout, drop-path) is in [0, 1)."""

    def rule(cfg) -> None:
        for key in keys:
            if not 0.0 <= float(getattr(cfg, key)) < 1.0:
                raise ConfigError(f"{type(cfg).__name__}.{key} must be in [0, 1), got {getattr(cfg, key)!r}")

    return rule


def int_tuple(key: str) -> Rule:
    """Rule: field `key` (a sequence, e.g. a YAML list) becomes a tuple of ints."""

    def rule(cfg) -> None:
        object.__setattr__(cfg, key, tuple(int(v) for v in getattr(cfg, key)))

    return rule


def reject(when: Callable[[Any], bool], message: Callable[[Any], str]) -> Rule:
    """Rule: ConfigError with ``message(cfg)`` when ``when(cfg)`` holds (a check of one config)."""

    def rule(cfg) -> None:
        if when(cfg):
            raise ConfigError(message(cfg))

    return rule


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Base of the networks' config dataclasses (adds no field): after construction the class's
    `rules` (a tuple of the rules above, a class attribute, not a field) run in order."""

    rules = ()

    def __post_init__(self):
        for rule in self.rules:
            rule(self)


# --------------------------------------------------------------------------------------------
# the shared constructor


class GridNetwork(nnx.Module):
    """Base of the STE and the baselines: ``[B, C_in, H, W] -> [B, C_out, H, W]`` on the grid.

    The shared constructor ``(cfg, in_channels, out_channels, grid_shape, *, rngs, dtype)`` puts
    in the default config when `cfg` is None, checks its type, the channel counts and the grid
    against the total stride, then calls the subclass's ``build(cfg, rngs=..., dtype=...)``.
    Subclasses name, as class keywords, `label` (the name in messages), `config_type` and
    `stride` (cfg -> total stride; absent: no row padding and no ``total_stride`` attribute).
    Constructor: `cfg` (``config_type()`` when None), `in_channels`, `out_channels`,
    ``grid_shape=(H, W)``, `rngs`, compute `dtype` (parameters stay float32)."""

    label: str = "network"
    config_type: type = object

    def __init_subclass__(cls, *, label: str, config_type: type, stride=None, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.label, cls.config_type = label, config_type
        cls.stride = staticmethod(stride or (lambda cfg: None))

    def __init__(
        self,
        cfg,
        in_channels: int,
        out_channels: int,
        grid_shape: tuple[int, int],
        *,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
    ):
        cfg = self.config_type() if cfg is None else cfg
        if not isinstance(cfg, self.config_type):
            raise ConfigError(f"{self.label}: cfg must be a {self.config_type.__name__} "
                              f"(or None), got {type(cfg).__name__}")
        check_channels(in_channels, out_channels, self.label)
        stride = self.stride(cfg)
        if stride is not None:
            self.total_stride = stride
        self.grid_shape = check_grid_shape(grid_shape, 1 if stride is None else stride, self.label)
        self.in_channels, self.out_channels, self.dtype = in_channels, out_channels, dtype
        self.build(cfg, rngs=rngs, dtype=dtype)

    def build(self, cfg, *, rngs: nnx.Rngs, dtype: Dtype) -> None:
        raise NotImplementedError

    def to_padded(self, x: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
        """Checked input ``[B, C_in, H, W]`` -> (``[B, H', W, C_in]`` in the compute dtype, rows
        reflect-padded to the total stride; the row pads)."""
        check_input(x, self.in_channels, self.grid_shape, self.label)
        return pad_rows_to_multiple(nchw_to_nhwc(x.astype(self.dtype)), self.total_stride)

    @staticmethod
    def from_padded(y: jax.Array, pads: tuple[int, int]) -> jax.Array:
        """``[B, H', W, C]`` -> ``[B, C, H, W]`` with the row pads cropped."""
        return nhwc_to_nchw(crop_rows(y, pads))
