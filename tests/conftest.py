"""Test setup: float64 available, 8 faked CPU devices for sharding tests, absl flags parsed,
the tests' toy model and array dataset format registered (`tests/toy.py`), in this process and,
through ``NEURALOGCM_PLUGINS`` and ``PYTHONPATH``, in the command-line runs of child processes.

The device count must be fixed before the first JAX call, hence at import time here.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
if REPO not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
os.environ["NEURALOGCM_PLUGINS"] = "tests.toy"
import tests.toy  # noqa: E402,F401  (registers the toy model and the .npz array dataset)

try:  # grain reads absl flags; pytest never parses them.
    from absl import flags

    flags.FLAGS.mark_as_parsed()
except Exception:  # pragma: no cover
    pass


import early  # noqa: E402  (tests/ is on sys.path: pytest put it there to import this file)


# `make test` runs two pytest-xdist workers, one module at a time each (`--dist loadfile
# --no-loadscope-reorder`): the modules go out in this order, the longest first (their wall
# time in the default run, 2026-12-04), so that the last to finish is a short one; the rest
# follow in their usual order.
LONGEST_MODULES_FIRST = (
    "test_skill.py", "test_multiprocess.py", "test_model.py", "test_portable.py",
    "test_primitive.py", "test_networks.py", "test_balanced.py", "test_gradients.py",
    "test_twin.py", "test_evaluate.py", "test_train_loop.py", "test_physics_paper.py",
)


def _module_rank(item) -> int:
    name = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return LONGEST_MODULES_FIRST.index(name) if name in LONGEST_MODULES_FIRST else len(
        LONGEST_MODULES_FIRST)


def pytest_collection_modifyitems(session, config, items):
    """Start the children of `tests/early.py` whose tests were selected, beside the session.

    Under pytest-xdist every worker collects every test, so a worker starts a child only when
    its test runs (`early.result`; the other worker keeps the second core busy meanwhile), and
    the modules are ordered longest first (`LONGEST_MODULES_FIRST`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_module_rank)  # stable: the order within a module is kept
    else:
        early.start_selected(items)


def pytest_sessionfinish(session, exitstatus):
    early.stop_all()
