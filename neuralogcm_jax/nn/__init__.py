"""Neural networks in Flax NNX: the STE corrector and the four baselines.

Every network is built as ``Net(cfg, in_channels, out_channels, grid_shape=(H, W), rngs=...,
dtype=...)`` and called as ``net(x, deterministic=True)`` with ``x`` ``[batch, channel, lat, lon]``,
returning ``[batch, out_channels, lat, lon]`` in the compute ``dtype`` (parameters are float32).
Convolutions are periodic in longitude (see :mod:`neuralogcm_jax.nn.layers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.nn.baselines import (
    ConvLSTM,
    ConvLSTMConfig,
    FourCastNet,
    FourCastNetConfig,
    SimVP,
    SimVPConfig,
    UNet,
    UNetConfig,
)
from neuralogcm_jax.nn.ste import STE, STEConfig

#: name -> (network class, its config dataclass)
NETWORKS: dict[str, tuple[type[nnx.Module], type]] = {
    "ste": (STE, STEConfig),
    "unet": (UNet, UNetConfig),
    "convlstm": (ConvLSTM, ConvLSTMConfig),
    "simvp": (SimVP, SimVPConfig),
    "fourcastnet": (FourCastNet, FourCastNetConfig),
}


def network_config(name: str, cfg: Any = None):
    """The config dataclass of network ``name`` from None (defaults), an instance, or a mapping.

    A mapping (e.g. from YAML) may hold any subset of the dataclass fields; an unknown key raises
    ConfigError naming it and the known fields. Lists become tuples for tuple-valued fields.
    """
    if name not in NETWORKS:
        raise ConfigError(f"unknown network {name!r}; known networks: {sorted(NETWORKS)}")
    cls = NETWORKS[name][1]
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, Mapping):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in the {name!r} network config; known keys: {sorted(fields)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        return cls(**values)
    raise ConfigError(
        f"config of network {name!r} must be a {cls.__name__}, a mapping or None, got {type(cfg).__name__}"
    )


def build_network(
    name: str,
    cfg: Any,
    in_channels: int,
    out_channels: int,
    grid_shape: tuple[int, int],
    rngs: nnx.Rngs,
    dtype=jnp.float32,
) -> nnx.Module:
    """Build network ``name`` (a key of :data:`NETWORKS`) with config ``cfg`` (see :func:`network_config`).

    Raises:
      ConfigError: unknown name (the message lists the known ones), bad config, or a grid the
        network cannot run on.
    """
    net_cls = NETWORKS[name][0] if name in NETWORKS else None
    cfg = network_config(name, cfg)
    return net_cls(cfg, in_channels, out_channels, grid_shape, rngs=rngs, dtype=dtype)


__all__ = [
    "NETWORKS",
    "build_network",
    "network_config",
    "STE",
    "STEConfig",
    "UNet",
    "UNetConfig",
    "ConvLSTM",
    "ConvLSTMConfig",
    "SimVP",
    "SimVPConfig",
    "FourCastNet",
    "FourCastNetConfig",
]
