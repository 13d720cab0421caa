"""Baseline forecasters of the NeuralOGCM comparison, each ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

from neuralogcm_jax.nn.baselines.convlstm import ConvLSTM, ConvLSTMConfig
from neuralogcm_jax.nn.baselines.fourcastnet import FourCastNet, FourCastNetConfig
from neuralogcm_jax.nn.baselines.simvp import SimVP, SimVPConfig
from neuralogcm_jax.nn.baselines.unet import UNet, UNetConfig

__all__ = [
    "ConvLSTM",
    "ConvLSTMConfig",
    "FourCastNet",
    "FourCastNetConfig",
    "SimVP",
    "SimVPConfig",
    "UNet",
    "UNetConfig",
]
