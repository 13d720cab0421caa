"""The training configuration: frozen dataclasses are the schema; YAML files and overrides fill it.

A run's configuration is built in three layers, later ones winning:

1. the dataclass defaults below (every field documented with its unit and default);
2. a YAML file, nested like the dataclasses: a path, or the name of a config shipped with the
   package (``neuralogcm``, ``unet``, ``demo``, ...: ``neuralogcm_jax/configs/NAME.yaml``);
3. ``--set a.b.c=value`` overrides (the value is parsed as a YAML scalar, so ``1e-4``, ``true``,
   ``[1, 2]`` and ``null`` mean what they say); ``neuralogcm train``'s short flags become such
   overrides (`neuralogcm_jax.cli.train`).

An unknown key or a value of the wrong type raises `ConfigError` naming the full dotted key
(``optim.lr``, ``model.physics_coefficients.nu_m``). The conversion dataclass <-> dict is generic
(`to_dict`, `from_dict`), so the nested configs of the model (physics, corrector, baselines) need
no special case here. The resolved configuration is written as ``config.yaml`` next to every run
and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from neuralogcm_jax.errors import ConfigError
from neuralogcm_jax.model import ModelConfig
from neuralogcm_jax.paths import (  # noqa: F401  (the config-file lookup, re-exported)
    CONFIG_DIR,
    output_path,
    packaged_configs,
    resolve_config_path,
)

# dataclass <-> dict conversion lives in `neuralogcm_jax.schema` (the model side reads stored
# configs without importing the trainer); re-exported here.
from neuralogcm_jax.schema import _convert, _type_name, from_dict, to_dict  # noqa: F401



# ---------------------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training data are and how batches are read."""

    root: str = "data"
    """Dataset root holding ``train/``, ``valid/``, ``test/`` and the stats files."""
    train_split: str = "train"
    """Sub-directory of `root` used for training."""
    val_split: str = "valid"
    """Sub-directory of `root` used for validation."""
    k_steps: int = 1
    """Rollout length K (days) of each training sample when no curriculum is given."""
    batch_size: int = 2
    """Samples per device (the global batch is this times the number of devices)."""
    read_threads: int = 4
    """Threads reading HDF5 files per process."""
    worker_count: int = 0
    """Grain worker processes per process (0 = read in the main process)."""
    prefetch: int = 2
    """Batches prefetched ahead of the train step."""
    shuffle: bool = True
    """Shuffle training windows (seeded by ``train.seed`` and the epoch)."""
    val_max_batches: int | None = None
    """Cap on validation batches per evaluation (None = the whole split)."""


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with warmup + cosine decay, gradient clipping, a separate physics learning rate."""

    lr: float = 5e-4
    """Peak learning rate of the network parameters (1/step, Adam units)."""
    physics_lr: float = 1e-2
    """Peak learning rate of the raw physics coefficients (``physics_params``)."""
    weight_decay: float = 0.05
    """Decoupled weight decay of the network parameters."""
    physics_weight_decay: float = 0.0
    """Decoupled weight decay of the raw physics coefficients (0: no pull towards softplus(0))."""
    warmup_steps: int = 100
    """Linear warmup from 0 to the peak learning rate (steps)."""
    clip_norm: float | None = 1.0
    """Clip the global gradient norm to this value (None = no clipping)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Decay after warmup: cosine to ``min_lr_ratio * lr`` at the last step, or constant."""
    min_lr_ratio: float = 0.01
    """Final learning rate as a fraction of the peak (cosine schedule)."""
    b1: float = 0.9
    """Adam first-moment decay."""
    b2: float = 0.999
    """Adam second-moment decay."""
    trainable: Literal["all", "physics", "network"] = "all"
    """Which parameters move: all, only the physics coefficients, or only the networks."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: length, curriculum, precision, logging, robustness."""

    epochs: int = 50
    """Number of passes over the training split."""
    curriculum: list[list[int]] = dataclasses.field(default_factory=lambda: [[0, 1]])
    """``[[epoch, K], ...]`` or ``[[epoch, K, P], ...]``: from `epoch` on, train on K-day
    rollouts (sorted by epoch). With P > 0 ("pushforward") each sample first runs the model P
    days from the window's first day without gradient, and the K-day rollout that is trained
    starts from that forecast, against the truth of days P+1..P+K: the model learns to correct
    states of its own making, not only the truth's (windows of P + K days). An empty list uses
    ``data.k_steps`` throughout, without pushforward."""
    steps_per_epoch: int | None = None
    """Cap on optimizer steps per epoch (None = one pass over the split)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (None = run all epochs)."""
    seed: int = 0
    """Seed of parameter initialisation, shuffling and dropout."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Network compute precision (bf16 sets the model dtype); loss and parameters stay fp32."""
    var_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    """Loss weight per variable ("S", "U", "V", "T", "SSH"); missing ones weigh 1."""
    deterministic: bool = False
    """Disable dropout during training."""
    remat: bool = True
    """Rematerialise each rollout step in the backward pass (memory ~ O(1) in K)."""
    val_every: int = 1
    """Validate every this many epochs."""
    log_every: int = 10
    """Write metrics every this many steps."""
    nonfinite_patience: int = 5
    """Skipped updates (non-finite loss or gradient) in a row before restoring the last good
    checkpoint."""
    out_dir: str = "runs/default"
    """Run directory: config.yaml, metrics.jsonl, TensorBoard events, checkpoints/."""
    resume: Literal["auto", "never", "required"] = "auto"
    """What a run does with the checkpoints already in its checkpoint directory: "auto" resumes
    the latest complete one if there is one and starts fresh otherwise (so a preempted job is
    restarted with the identical command); "never" refuses a directory holding checkpoints;
    "required" refuses one holding none."""
    compilation_cache_dir: str | None = None
    """JAX persistent compilation cache (a folder shared by restarts and runs; None = off).
    Compilations that take longer than JAX's threshold (1 s by default; environment variable
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS) are stored and reused."""


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh with axes ('data', 'x'): batch over 'data', longitude over 'x'."""

    data: int = -1
    """Devices along the batch axis (-1 = all devices / x)."""
    x: int = 1
    """Devices along longitude (the last array axis); 1 = no spatial sharding."""


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpoints of the run."""

    dir: str | None = None
    """Checkpoint directory (None = ``<train.out_dir>/checkpoints``)."""
    keep: int = 3
    """Most recent checkpoints kept (the best one is kept in addition)."""
    save_every: int = 1000
    """Save every this many optimizer steps (and at every epoch end and on exit)."""
    async_save: bool = True
    """Write checkpoints in a background thread while training goes on."""
    best_metric: str | None = "val_loss"
    """Metric (lower is better) deciding the kept best checkpoint; None = keep latest only."""


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole run. Sections: model, data, optim, train, mesh, checkpoint."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)

    @property
    def out_dir(self):
        """``train.out_dir`` as a path (`epath.Path` for URLs such as gs://bucket/run)."""
        return output_path(self.train.out_dir)

    @property
    def checkpoint_dir(self):
        """``checkpoint.dir`` (default ``<train.out_dir>/checkpoints``) as a path."""
        return output_path(self.checkpoint.dir) if self.checkpoint.dir else (
            self.out_dir / "checkpoints")

    def k_at_epoch(self, epoch: int) -> int:
        """Rollout length K (days) of training samples at `epoch` under the curriculum."""
        return self.stage_at_epoch(epoch)[0]

    def pushforward_at_epoch(self, epoch: int) -> int:
        """Days P the model runs without gradient before its K trained days, at `epoch`."""
        return self.stage_at_epoch(epoch)[1]

    def stage_at_epoch(self, epoch: int) -> tuple[int, int]:
        """``(K, P)`` of the curriculum at `epoch` (see `TrainConfig.curriculum`)."""
        k, p = self.data.k_steps, 0
        for item in sorted(self.train.curriculum):
            if epoch >= item[0]:
                k, p = item[1], (item[2] if len(item) > 2 else 0)
        return int(k), int(p)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], value parsed as a YAML scalar)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key!r}: value {raw!r} is not valid YAML: {e}") from e
    return key.split("."), value


def _set_path(d: dict, path: list[str], value: Any) -> None:
    node = d
    for i, p in enumerate(path[:-1]):
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            if nxt is not None:
                raise ConfigError(
                    f"override {'.'.join(path)!r}: {'.'.join(path[: i + 1])!r} is not a section"
                )
            nxt = {}
            node[p] = nxt
        node = nxt
    node[path[-1]] = value


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from `path` (ConfigError naming the file if missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
) -> Config:
    """Defaults <- YAML file at `path` (or the mapping `base`) <- ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else dict(base or {})
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(data, keys, value)
    return from_dict(Config, data)


def replace(cfg: Config, **dotted: Any) -> Config:
    """A copy of `cfg` with dotted keys changed: ``replace(cfg, **{"optim.lr": 1e-3})``."""
    data = to_dict(cfg)
    for k, v in dotted.items():
        _set_path(data, k.split("."), v)
    return from_dict(Config, data)


def dump_yaml(cfg: Any) -> str:
    """The resolved configuration as YAML text (round-trips through `load_config`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def write_config(cfg: Config, directory: str | os.PathLike) -> Path:
    """Write ``config.yaml`` (the resolved configuration) into `directory` atomically."""
    directory = output_path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "config.yaml"
    tmp = directory / ".config.yaml.tmp"
    tmp.write_text(dump_yaml(cfg))
    tmp.replace(out)
    return out
