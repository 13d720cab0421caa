"""Typed configuration sections: dataclasses <-> nested dicts of plain YAML types.

`from_dict` builds a (nested, frozen) dataclass from a mapping, checking every key and value and
raising `ConfigError` naming the full dotted key (``optim.lr``, ``model.unet.base_channels``);
`to_dict` is its inverse. Used by the training configuration (`neuralogcm_jax.train.config`) and
by `neuralogcm_jax.checkpointing`, which rebuilds a model from the config stored with it without
importing the trainer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from neuralogcm_jax.errors import ConfigError

class FrozenDict(dict):
    """A dict that cannot change and hashes by its sorted items: a mapping field of a frozen,
    hashable config (`to_dict` writes it as a plain mapping)."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))

    def _immutable(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} cannot be changed")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable

    def __reduce__(self):
        return (type(self), (dict(self),))


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
        convert = f.metadata.get("convert")  # a field with its own conversion (value, key)
        kwargs[k] = convert(v, key) if convert is not None else _convert(v, hints.get(k, Any), key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section {where!r}: {e}") from e
