"""Test setup: float64 available, 8 faked CPU devices for sharding tests, absl flags parsed.

The device count must be fixed before the first JAX call, hence at import time here.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

try:  # grain reads absl flags; pytest never parses them.
    from absl import flags

    flags.FLAGS.mark_as_parsed()
except Exception:  # pragma: no cover
    pass
