"""The training configuration: frozen dataclasses are the schema; YAML files and overrides fill it.

A run's configuration is built in three layers, later ones winning:

1. the dataclass defaults below (every field documented with its unit and default);
2. a YAML file (``configs/*.yaml``), nested like the dataclasses;
3. ``--set a.b.c=value`` overrides (the value is parsed as a YAML scalar, so ``1e-4``, ``true``,
   ``[1, 2]`` and ``null`` mean what they say) and the short flags of `add_arguments`.

An unknown key or a value of the wrong type raises `ConfigError` naming the full dotted key
(``optim.lr``, ``model.physics_coefficients.nu_m``). The conversion dataclass <-> dict is generic
(`to_dict`, `from_dict`), so the nested configs of the model (physics, corrector, baselines) need
no special case here. The resolved configuration is written as ``config.yaml`` next to every run
and inside every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from neuralogcm_jax.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class StandInModelConfig:
    """The model section used until ``neuralogcm_jax.model.ModelConfig`` is importable.

    Only the fields the training machinery itself reads are declared; the model module's own
    `ModelConfig` replaces this class automatically once it exists (see `model_config_class`).
    """

    name: str = "neuralogcm"
    """Which forecaster to build: "neuralogcm", "unet", "convlstm", "simvp", "fourcastnet", or
    "diffusion_toy" (the minimal model of `neuralogcm_jax.train.state`, for tests)."""
    physics_coefficients: dict[str, float] = dataclasses.field(default_factory=dict)
    """Initial values (SI, m^2/s for nu_m/nu_t) of the learnable coefficients; {} = defaults."""
    per_level_coefficients: bool = False
    """One coefficient per depth level instead of one global scalar."""
    dtype: str = "float32"
    """Compute dtype of the networks: "float32" or "bfloat16" (parameters stay float32)."""


def model_config_class() -> type:
    """The model's config dataclass: ``neuralogcm_jax.model.ModelConfig`` when that module
    exists, otherwise `StandInModelConfig`."""
    try:
        mod = importlib.import_module("neuralogcm_jax.model")
    except ModuleNotFoundError as e:
        if e.name not in ("neuralogcm_jax.model",):
            raise
        return StandInModelConfig
    return getattr(mod, "ModelConfig", StandInModelConfig)


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
    """``[[epoch, K], ...]``: from `epoch` on, train on K-day rollouts (sorted by epoch).
    An empty list uses ``data.k_steps`` throughout."""
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


TOY_MODEL_NAME = "diffusion_toy"


def model_schema(value: Any = None) -> type:
    """The dataclass of the ``model`` section: the stand-in for the toy model (which the model
    module does not know), the model module's `ModelConfig` otherwise."""
    if isinstance(value, dict) and value.get("name") == TOY_MODEL_NAME:
        return StandInModelConfig
    return model_config_class()


def _model_default():
    return model_config_class()()


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole run. Sections: model, data, optim, train, mesh, checkpoint."""

    model: Any = dataclasses.field(
        default_factory=_model_default, metadata={"schema": model_schema}
    )
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir or Path(self.train.out_dir) / "checkpoints")

    def k_at_epoch(self, epoch: int) -> int:
        """Rollout length K (days) of training samples at `epoch` under the curriculum."""
        k = self.data.k_steps
        for start, kk in sorted(self.train.curriculum):
            if epoch >= start:
                k = kk
        return int(k)


# ---------------------------------------------------------------------------------- generic
def to_dict(obj: Any) -> Any:
    """Dataclasses -> nested dicts of plain YAML types (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return obj.item()  # numpy scalars
    return obj


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """`value` checked and converted to type `tp`; ConfigError naming `key` otherwise."""
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            f"config key {key!r}: value {value!r} ({type(value).__name__}) is not "
            f"{' | '.join(_type_name(a) for a in args)}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r}: value {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"config key {key!r}: expected a list, got {value!r} ({type(value).__name__})"
            )
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(
                    f"config key {key!r}: expected {len(args)} items, got {len(value)}"
                )
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"config key {key!r}: expected a mapping, got {value!r} ({type(value).__name__})"
            )
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept what is plainly a number
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"config key {key!r}: expected a number, got {value!r} ({type(value).__name__})"
            )
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(
                f"config key {key!r}: expected an integer, got {value!r} ({type(value).__name__})"
            )
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"config key {key!r}: expected true/false, got {value!r} ({type(value).__name__})"
            )
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(
                f"config key {key!r}: expected a string, got {value!r} ({type(value).__name__})"
            )
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(
                f"config key {key!r}: expected {tp.__name__}, got {value!r} "
                f"({type(value).__name__})"
            )
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, checking every key and type.

    Missing keys take the dataclass defaults. Raises `ConfigError` naming the dotted key of an
    unknown key or a value of the wrong type."""
    where = prefix or "<root>"
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = to_dict(data)
    if not isinstance(data, dict):
        raise ConfigError(
            f"config key {where!r}: expected a mapping of {cls.__name__} fields, got {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - unresolvable annotations: fall back to raw ones
        hints = {n: f.type for n, f in fields.items()}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise ConfigError(
                f"unknown config key {key!r}; known keys of {where!r}: {sorted(fields)}"
            )
        f = fields[k]
        schema = f.metadata.get("schema")
        tp = schema(v) if schema is not None else hints.get(k, Any)
        kwargs[k] = _convert(v, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section {where!r}: {e}") from e


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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "config.yaml"
    tmp = directory / ".config.yaml.tmp"
    tmp.write_text(dump_yaml(cfg))
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------- CLI
# Short flags of the original training script -> dotted keys.
FLAG_KEYS = {
    "model": "model.name",
    "data_root": "data.root",
    "batch_size": "data.batch_size",
    "epochs": "train.epochs",
    "lr": "optim.lr",
    "fourcastnet_embed_dim": "model.fourcastnet.embed_dim",
    "simvp_hid_s": "model.simvp.hid_S",
    "out_dir": "train.out_dir",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, repeated ``--set k=v`` and the short flags of `FLAG_KEYS` (counts must be
    >= 1 and ``--config`` an existing file, checked while parsing)."""
    from neuralogcm_jax.argtypes import existing_file, nonnegative_float, positive_int

    parser.add_argument("--config", type=existing_file,
                        help="YAML file (default: configs/<--model>.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    parser.add_argument("--model", help="model name (model.name)")
    parser.add_argument("--data_root", help="dataset root (data.root)")
    parser.add_argument("--batch_size", type=positive_int,
                        help="samples per device (data.batch_size)")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (train.epochs)")
    parser.add_argument("--lr", type=nonnegative_float,
                        help="peak network learning rate (optim.lr)")
    parser.add_argument("--fourcastnet_embed_dim", type=positive_int,
                        help="model.fourcastnet.embed_dim")
    parser.add_argument("--simvp_hid_s", type=positive_int, help="model.simvp.hid_S")
    parser.add_argument("--out_dir", help="run directory (train.out_dir)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The resolved `Config` of parsed CLI arguments (YAML <- flags <- --set)."""
    path = getattr(args, "config", None)
    model = getattr(args, "model", None)
    if path is None and model is not None and (CONFIG_DIR / f"{model}.yaml").is_file():
        path = CONFIG_DIR / f"{model}.yaml"
    overrides = []
    for flag, key in FLAG_KEYS.items():
        v = getattr(args, flag, None)
        if v is not None:
            overrides.append(f"{key}={yaml.safe_dump(v).strip().removesuffix('...').strip()}")
    overrides += list(getattr(args, "overrides", []) or [])
    return load_config(path, overrides)
