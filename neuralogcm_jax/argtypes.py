"""argparse ``type=`` functions shared by the subcommands: a bad value is refused while the
command line is parsed, before any data are read or anything is computed.

argparse turns `argparse.ArgumentTypeError` into ``neuralogcm CMD: error: argument --days: must
be an integer >= 1, got '-5'`` and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from neuralogcm_jax.data.h5format import SPLITS


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: days, steps, leads, batch and chunk sizes, epochs)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (indices, seeds)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


def seed(text: str) -> int:
    """A random seed: an integer in 0 .. 2**32 - 1."""
    v = _int(text)
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0 .. 2**32 - 1, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (resolutions, coefficients)."""
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (learning rates)."""
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return v


def int_range(lo: int, hi: int):
    """An integer in ``lo .. hi``."""

    def parse(text: str) -> int:
        v = _int(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo} .. {hi}, got {text!r}")
        return v

    parse.__name__ = f"int_{lo}_to_{hi}"
    return parse


def existing_file(text: str) -> str:
    """The path of an existing file."""
    p = Path(text)
    if not p.is_file():
        why = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {why}")
    return text


def existing_dir(text: str) -> str:
    """The path of an existing folder."""
    p = Path(text)
    if not p.is_dir():
        why = "is a file, not a folder" if p.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {why}")
    return text


def split_name(text: str) -> str:
    """One of the data splits (train, valid, test)."""
    if text not in SPLITS:
        raise argparse.ArgumentTypeError(f"unknown split {text!r}; expected one of {list(SPLITS)}")
    return text


def model_name(text: str) -> str:
    """A model name `neuralogcm_jax.model.build_model` knows, in its canonical spelling."""
    from neuralogcm_jax.errors import ConfigError
    from neuralogcm_jax.model import canonical_model_name

    try:
        return canonical_model_name(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
