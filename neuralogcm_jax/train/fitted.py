"""The hybrid's fitted fields: the tendency correction (`ModelConfig.tendency_correction_harmonics`)
and the surface heat flux's target offset (`ModelConfig.heat_offset_harmonics`, `fit_heat_offset`).

The physics core misses what the truth does and the model does not (a mixed layer, surface
fluxes, vertical mixing, finer numerics), and part of that error is the same every year at the
same season. Before the first step the trainer measures it: for every pair of consecutive days
``(t, t+1)`` of the training split it runs the model's physics one day (its coefficients and
climate damping as the run starts them, no corrector) and takes the residual

    r(t+1) = a(t+1) - physics(a(t))          (normalised anomalies, per channel and cell)

then fits ``r`` by least squares on the annual harmonics of the day of year of ``t+1``
(`data.normalize.harmonic_basis`: 1, cos, sin of 2 pi k d / 365.25 for k = 1..K). The
coefficients ``[2 K + 1, n_ocean, H, W]`` become the model's ``tendency_correction``, added to
the physics' forecast every day (`NeuralOGCM.tendency_correction_at`) and never trained.
Deterministic, so every process of a multi-process run fits the same field; a resumed run
restores it from the checkpoint instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from neuralogcm_jax.data.normalize import harmonic_basis
from neuralogcm_jax.errors import ConfigError

# Days of physics run together (one jitted batch); the last block of a year is shorter.
FIT_BLOCK_DAYS = 16
# With annual harmonics the pairs' second days must cover this many days of the year (a year
# file's 1 January is never a second day: pairs stay within a file).
MIN_DAYS_OF_YEAR = 360


def fit_tendency_correction(model, blocks, n_pairs: int | None = None, *,
                            progress: bool = False) -> np.ndarray:
    """``[2 K + 1, n_ocean, H, W]`` float32: the least-squares harmonics of the physics' one-day
    residual over `blocks`, an iterable of ``(a [T, n_ocean, H, W], f [T, n_forcing, H, W],
    doy [T])`` runs of consecutive days (normalised anomalies and forcing, day-of-year
    indices; `data.persistence.day_blocks` with overlap 1). `model` is a `NeuralOGCM` with
    ``tendency_correction_harmonics`` set; its own correction is left out of the residual.
    `n_pairs` (the number of day pairs, for the progress bar) is optional."""
    from neuralogcm_jax.model import PurePhysics
    from neuralogcm_jax.rollout import make_step_fn

    k = model.cfg.tendency_correction_harmonics
    physics = PurePhysics.of(model)
    physics.tendency_correction[...] = jnp.zeros_like(physics.tendency_correction[...])
    step_fn, variables = make_step_fn(physics)
    step = jax.jit(step_fn)
    bar = tqdm(total=n_pairs, desc="fit tendency correction", unit="day", disable=not progress,
               leave=False)

    def residuals():  # the residual of each pair, on the day of year of its second day
        for a, f, doy in blocks:
            if len(a) < 2:
                continue
            doy = np.asarray(doy, np.int64)
            pred = step(variables, jnp.asarray(a[:-1]), jnp.asarray(f[1:]),
                        jnp.asarray(doy[:-1], jnp.int32), jnp.asarray(doy[1:], jnp.int32))
            bar.update(len(pred))
            yield np.asarray(a[1:], np.float64) - np.asarray(pred, np.float64), doy[1:]

    coef = _harmonic_fit(k, "tendency_correction_harmonics", residuals())
    bar.close()
    return coef


def _harmonic_fit(k: int, key: str, samples) -> np.ndarray:
    """``[2 K + 1, *shape]``: the least-squares annual harmonics of `samples`, an iterable of
    ``(y [T, *shape], doy [T])`` (day-of-year indices of the samples); a ConfigError naming
    `key` when the days do not cover the year that K > 0 harmonics need."""
    basis = harmonic_basis(k)  # [366, 2K+1] float64
    n_terms = basis.shape[1]
    gram = np.zeros((n_terms, n_terms))
    proj, shape = None, None
    seen = np.zeros(basis.shape[0], bool)
    for y, doy in samples:
        doy = np.asarray(doy, np.int64)
        seen[doy] = True
        b = basis[doy]
        gram += b.T @ b
        part = b.T @ np.asarray(y, np.float64).reshape(len(y), -1)
        proj = part if proj is None else proj + part
        shape = np.shape(y)[1:]
    covered = int(seen.sum())
    if proj is None or (k > 0 and covered < MIN_DAYS_OF_YEAR):
        raise ConfigError(
            f"model.{key} = {k}: the training split's days cover {covered} days of the year; "
            f"annual harmonics need {MIN_DAYS_OF_YEAR} or more (about a whole year): set it to "
            f"0 (one constant field) or train on more days")
    coef = np.linalg.solve(gram, proj)
    return coef.reshape((n_terms,) + tuple(shape)).astype(np.float32)


def fit_heat_offset(model, blocks, n_days: int | None = None, *,
                    progress: bool = False) -> np.ndarray:
    """``[2 K + 1, H, W]`` float32 (K): the least-squares annual harmonics of ``SST - t2m``
    (the top level's T in degC minus the air temperature in degC) over the wet top cells of
    `blocks` (``(a, f, doy)`` as for `fit_tendency_correction`, every day once: overlap 0).
    `model` is a `NeuralOGCM` with ``heat_offset_harmonics`` set; land cells get 0."""
    from neuralogcm_jax.physics.primitive_terms import KELVIN_OFFSET

    k = model.cfg.heat_offset_harmonics
    lay = model.layout
    top = lay.var_slice("T").start
    t2m = lay.var_slice("t2m").start - lay.n_ocean
    wet = np.asarray(model.wet[...][top]) > 0
    bar = tqdm(total=n_days, desc="fit heat offset", unit="day", disable=not progress,
               leave=False)

    def samples():
        for a, f, doy in blocks:
            sst = np.asarray(model.anomaly_to_physical(jnp.asarray(a), jnp.asarray(doy)))[:, top]
            air = np.asarray(model.denormalize_forcing(jnp.asarray(f)))[:, t2m] - KELVIN_OFFSET
            bar.update(len(doy))
            yield np.where(wet, sst.astype(np.float64) - air, 0.0), doy

    coef = _harmonic_fit(k, "heat_offset_harmonics", samples())
    bar.close()
    return coef


def check_day_blocks(data, key: str = "tendency_correction_harmonics") -> None:
    """`ConfigError` unless `data` (a `train.traindata.TrainData`) can give the day blocks the
    fit of `key` reads (before any compute: `train.preflight.resolve_model_config`)."""
    if data.day_blocks is None:
        raise ConfigError(f"model.{key} needs a data root that can be read day by day (an HDF5 "
                          f"data root); this data format cannot give the fit its days: set it "
                          f"to null")


def apply_fitted_fields(model, data, split: str, *, progress: bool = False) -> None:
    """Fit what `model`'s config asks to be fitted to the `split` of `data` (a
    `train.traindata.TrainData`) and write it into the model, in place: the hybrid's heat-flux
    target offset, then its tendency correction (whose physics runs use the offset). Nothing
    for a model without them."""
    if hasattr(model, "heat_offset"):
        check_day_blocks(data, "heat_offset_harmonics")
        blocks, n_days = data.day_blocks(split, FIT_BLOCK_DAYS, 0)
        model.heat_offset[...] = jnp.asarray(
            fit_heat_offset(model, blocks, n_days, progress=progress))
    if not hasattr(model, "tendency_correction"):  # any model but a hybrid that has one
        return
    check_day_blocks(data)
    blocks, n_pairs = data.day_blocks(split, FIT_BLOCK_DAYS, 1)
    coef = fit_tendency_correction(model, blocks, n_pairs, progress=progress)
    model.tendency_correction[...] = jnp.asarray(coef)
