"""Gradient health: what training through the physics needs, checked in float32.

The claims: the gradients of a hybrid loss with respect to every parameter are finite, and the
gradients with respect to the physics coefficients agree with central differences of the float64
loss, on the embedded world, from states with realistic currents and coasts inside the
polar-filter band, for the physics configurations a user can choose.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax import _xla_flags


def test_package_import_sets_the_reduce_fusion_flag():
    """Importing the package puts the YNN reduce-fusion setting into XLA_FLAGS (see `_xla_flags`)."""
    assert _xla_flags.YNN_SETTING in os.environ["XLA_FLAGS"]
