"""neuralogcm_jax: a JAX/Flax hybrid ocean general circulation model.

Differentiable ocean physics with learnable coefficients, composed with a neural corrector,
rolled out with `lax.scan`, sharded over a device mesh.
"""

__version__ = "0.1.0"

import warnings as _warnings

from neuralogcm_jax import _xla_flags

# Before anything creates the JAX backend: XLA's CPU reduce fusions miscompute some reductions
# with a leading axis of one (NaN gradients at batch size 1); see `_xla_flags`.
if not _xla_flags.apply():
    _warnings.warn(
        "neuralogcm_jax was imported after JAX created its backend, so XLA_FLAGS cannot take "
        f"{_xla_flags.YNN_SETTING}; float32 gradients at batch size 1 may be wrong on the CPU. "
        "Import neuralogcm_jax before running any JAX computation, or set the flag yourself.",
        RuntimeWarning,
        stacklevel=2,
    )

from neuralogcm_jax.errors import (  # noqa: F401
    CheckpointError,
    ConfigError,
    DataError,
    GridError,
    LayoutError,
    NeuralOGCMError,
    StateError,
)


def __getattr__(name: str):
    # `from neuralogcm_jax import load_model` without making `import neuralogcm_jax` import
    # JAX, Flax and Orbax
    if name == "load_model":
        from neuralogcm_jax.checkpointing import load_model

        return load_model
    raise AttributeError(f"module 'neuralogcm_jax' has no attribute {name!r}")
