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
from neuralogcm_jax.errors import ConfigError


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


def _checked(parse, ok, rule: str, name: str, doc: str):
    """A ``type=`` function: `parse` the text, then refuse a value for which `ok` is false
    (``must be RULE, got 'TEXT'``)."""

    def check(text: str):
        v = parse(text)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return v

    check.__name__, check.__doc__ = name, doc
    return check


positive_int = _checked(_int, lambda v: v >= 1, "an integer >= 1", "positive_int",
                        "An integer >= 1 (counts: days, steps, leads, batch and chunk sizes, epochs).")
nonnegative_int = _checked(_int, lambda v: v >= 0, "an integer >= 0", "nonnegative_int",
                           "An integer >= 0 (indices, seeds).")
seed = _checked(_int, lambda v: 0 <= v < 2**32, "an integer in 0 .. 2**32 - 1", "seed",
                "A random seed: an integer in 0 .. 2**32 - 1.")
positive_float = _checked(_float, lambda v: v > 0, "a number > 0", "positive_float",
                          "A finite number > 0 (resolutions, coefficients).")
nonnegative_float = _checked(_float, lambda v: v >= 0, "a number >= 0", "nonnegative_float",
                             "A finite number >= 0 (learning rates).")


def int_range(lo: int, hi: int):
    """An integer in ``lo .. hi``."""
    return _checked(_int, lambda v: lo <= v <= hi, f"an integer in {lo} .. {hi}",
                    f"int_{lo}_to_{hi}", f"An integer in {lo} .. {hi}.")


def _existing(text: str, want_dir: bool) -> str:
    p = Path(text)
    if (p.is_dir() if want_dir else p.is_file()):
        return text
    if want_dir:
        why = "is a file, not a folder" if p.exists() else "does not exist"
    else:
        why = "is a folder, not a file" if p.is_dir() else "does not exist"
    raise argparse.ArgumentTypeError(f"{text!r} {why}")


def existing_file(text: str) -> str:
    """The path of an existing file."""
    return _existing(text, want_dir=False)


def existing_dir(text: str) -> str:
    """The path of an existing folder."""
    return _existing(text, want_dir=True)


def split_name(text: str) -> str:
    """One of the data splits (train, valid, test)."""
    if text not in SPLITS:
        raise argparse.ArgumentTypeError(f"unknown split {text!r}; expected one of {list(SPLITS)}")
    return text


def model_name(text: str) -> str:
    """A model name `neuralogcm_jax.model.build_model` knows, in its canonical spelling."""
    # imported here, not at the top: the model imports JAX, and the CLI modules import this one
    # for their --help, which must not
    from neuralogcm_jax.model import canonical_model_name

    try:
        return canonical_model_name(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
