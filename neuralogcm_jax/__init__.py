"""neuralogcm_jax: a JAX/Flax hybrid ocean general circulation model.

Differentiable ocean physics with learnable coefficients, composed with a neural corrector,
rolled out with `lax.scan`, sharded over a device mesh.
"""

__version__ = "0.1.0"

from neuralogcm_jax.errors import (  # noqa: F401
    CheckpointError,
    ConfigError,
    DataError,
    GridError,
    LayoutError,
    NeuralOGCMError,
    StateError,
)
