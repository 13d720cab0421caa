"""Exceptions: one family, so a CLI can turn any of them into one clear line and exit 2.

Every message names the file, key, shape or value at fault.
"""


class NeuralOGCMError(ValueError):
    """Base class of every error this package raises on bad input."""


class GridError(NeuralOGCMError):
    """A grid that is not self-consistent (shapes, spacing, depths)."""


class LayoutError(NeuralOGCMError):
    """An array that does not fit the channel layout."""


class StateError(NeuralOGCMError):
    """A model state that is not usable (NaN in ocean cells, wrong grid)."""


class DataError(NeuralOGCMError):
    """Missing, corrupt or inconsistent data files."""


class ConfigError(NeuralOGCMError):
    """Unknown keys, wrong types or unphysical values in a configuration."""


class CheckpointError(NeuralOGCMError):
    """A checkpoint that is missing, corrupt or from an incompatible model."""
