"""Multi-process start-up: one `jax.distributed.initialize` call, wherever the job runs.

* SLURM (``SLURM_JOB_ID`` and ``SLURM_NTASKS`` > 1 in the environment): JAX reads the node list,
  task count and rank itself; no arguments are needed.
* TPU pods and other managed clusters: JAX auto-detects them; set
  ``NEURALOGCM_DISTRIBUTED_AUTO=1`` (``launch/tpu_pod.sh`` does) to initialise without arguments.
* Anything else (several processes on one machine, hand-made clusters): pass
  ``coordinator="host:port"``, ``num_processes`` and ``process_id``, or set
  ``NEURALOGCM_COORDINATOR``, ``NEURALOGCM_NUM_PROCESSES`` and ``NEURALOGCM_PROCESS_ID``
  (what ``launch/local_multiprocess.sh`` does).

On CPU, cross-process collectives go through gloo (`jax_cpu_collectives_implementation`), which
must be set before the backend starts; `initialize_distributed` does it.

A process that dies leaves the others blocked in their next collective (gloo does not notice a
closed peer there). JAX's coordination service ends them (abort, status 134) once the dead
process has missed its heartbeats for ``heartbeat_timeout_seconds``: JAX's default 100 s,
``NEURALOGCM_HEARTBEAT_TIMEOUT_S`` or `heartbeat_timeout_s` to change it. When process 0, which
hosts the service, dies, the others end within seconds. ``launch/local_multiprocess.sh`` sets
30 s and, sooner, stops the others itself when one exits with an error.
"""

from __future__ import annotations

import os

import jax

from neuralogcm_jax.errors import ConfigError

ENV_COORDINATOR = "NEURALOGCM_COORDINATOR"
ENV_NUM_PROCESSES = "NEURALOGCM_NUM_PROCESSES"
ENV_PROCESS_ID = "NEURALOGCM_PROCESS_ID"
ENV_AUTO = "NEURALOGCM_DISTRIBUTED_AUTO"  # "1": call jax.distributed.initialize() without args
ENV_HEARTBEAT = "NEURALOGCM_HEARTBEAT_TIMEOUT_S"  # seconds before a silent process counts as dead

_initialized = False


def in_slurm_job() -> bool:
    """True inside a multi-task SLURM step (``srun``), where JAX finds its peers itself."""
    return "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an integer") from None


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    cpu_collectives: str = "gloo",
    auto_detect: bool | None = None,
    heartbeat_timeout_s: int | None = None,
) -> bool:
    """Join the job's processes into one JAX runtime. Returns True if it did (False when this is
    a single-process run and nothing was asked).

    Explicit arguments win over the ``NEURALOGCM_*`` environment variables; with neither,
    SLURM/TPU environments are auto-detected (`auto_detect` None: when SLURM says there are
    several tasks or ``NEURALOGCM_DISTRIBUTED_AUTO=1``; True: always call
    ``jax.distributed.initialize()`` without arguments). `heartbeat_timeout_s` (or
    ``NEURALOGCM_HEARTBEAT_TIMEOUT_S``; None: JAX's default, 100 s): how long a process may
    be silent before the coordination service declares it dead and terminates the others."""
    global _initialized
    if _initialized:
        return True
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _int_env(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _int_env(ENV_PROCESS_ID)

    explicit = coordinator is not None or num_processes is not None or process_id is not None
    if explicit:
        missing = [
            n for n, v in (("coordinator", coordinator), ("num_processes", num_processes),
                           ("process_id", process_id)) if v is None
        ]
        if missing:
            raise ConfigError(
                f"distributed start needs coordinator, num_processes and process_id; missing "
                f"{missing} (flags --coordinator/--num_processes/--process_id or {ENV_COORDINATOR}"
                f"/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(
                f"process_id {process_id} is not in 0 .. num_processes-1 = {num_processes - 1}"
            )
        if num_processes == 1:
            return False
    elif auto_detect is None:
        auto_detect = in_slurm_job() or os.environ.get(ENV_AUTO, "") == "1"
    if not explicit and not auto_detect:
        return False

    # gloo is the CPU collective backend that works across processes; it has to be chosen before
    # the CPU client exists.
    try:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    except Exception:  # pragma: no cover - option renamed in some future JAX
        pass
    kwargs = {}
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    if heartbeat_timeout_s is None:
        heartbeat_timeout_s = _int_env(ENV_HEARTBEAT)
    if heartbeat_timeout_s is not None:
        if heartbeat_timeout_s < 1:
            raise ConfigError(
                f"heartbeat timeout {heartbeat_timeout_s} s ({ENV_HEARTBEAT}): must be >= 1"
            )
        kwargs["heartbeat_timeout_seconds"] = int(heartbeat_timeout_s)
    if explicit:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            **kwargs,
        )
    else:
        jax.distributed.initialize(**kwargs)
    _initialized = True
    return True


def is_main_process() -> bool:
    """Process 0 writes logs, metrics and config files."""
    return jax.process_index() == 0
