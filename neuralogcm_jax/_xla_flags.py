"""XLA settings the package needs before JAX creates its CPU backend.

YNNPACK reduce fusions. The XLA CPU compiler of jaxlib 0.10.2 turns reductions into YNNPACK
library fusions by default. Some of them read memory they never wrote when a reduced array has a
leading axis of length 1, so the result depends on whatever the buffer held before: the float32
gradient of the learnable coefficients through one checkpointed (`jax.checkpoint`) SSP Runge-Kutta
substep of a batch of one came out NaN or ~1e30, while the same gradient of an unbatched state, of
a batch of two, with `jax.disable_jit`, or in float64 was right. Batch size 1 is the demo's and,
per device, that of any data-parallel run with one sample per device, so every training update of
the demo was skipped. `tests/test_gradients.py::test_checkpointed_substep_of_a_batch_of_one`
holds the smallest case found (a linear term plus the metric terms, three stages) and fails
without this setting.

``--xla_cpu_experimental_ynn_fusion_type=-reduce`` removes the reduce fusions from the default list
and leaves the other library fusions alone. It is appended to ``XLA_FLAGS`` when the package is
imported, unless the variable already names a YNN fusion setting (a user's explicit choice wins).
XLA reads the variable once, when the first computation creates the backend: `apply` reports
whether it came too late for this process.
"""

from __future__ import annotations

import os
import sys

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_SETTING = f"{YNN_FLAG}=-reduce"


def _backend_started() -> bool:
    """True if this process has already created a JAX backend (the flags are then fixed)."""
    if "jax" not in sys.modules:
        return False
    try:
        # imported here, once JAX is loaded: `import neuralogcm_jax` must not import JAX
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # pragma: no cover - private API moved: assume the worst is not known
        return False


def apply() -> bool:
    """Add `YNN_SETTING` to ``XLA_FLAGS`` unless a YNN setting is there; True if it takes effect
    in this process (no backend created yet), False if it comes too late."""
    flags = os.environ.get("XLA_FLAGS", "")
    if YNN_FLAG in flags:
        return not _backend_started() or YNN_SETTING in flags
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_SETTING}".strip()
    return not _backend_started()
