"""Forecast skill metrics, weighted by cell area x wet mask, named by their aggregation.

For a forecast ``f`` and truth ``t`` of one channel on one day, with weights ``w = area * wet``
normalised to sum to 1 over the channel's wet cells:

* spatial MSE      ``mse = sum w (f - t)^2``
* spatial bias     ``bias = sum w (f - t)``
* spatial ACC      ``acc = sum w f' t' / sqrt(sum w f'^2 * sum w t'^2)`` with anomalies
  ``f' = f - c``, ``t' = t - c`` against the day-of-year climatology ``c`` (uncentred, as is usual
  for ocean and weather skill scores).

Aggregated over the N initial dates of an evaluation (per channel and lead):

* ``RMSE = sqrt(mean_n mse_n)``  -- the root of the mean spatial MSE (WeatherBench2's convention),
  not the mean of per-date RMSEs;
* ``bias = mean_n bias_n``;
* ``ACC = mean_n acc_n``.

`paper_rmse` is NeuralOGCM's reported number as far as it can be reconstructed: the RMSE of each
ocean channel in normalised units (as above, in anomaly z-scores), averaged over the channels.

Everything is plain numpy on host arrays: evaluation streams forecasts through `SkillAccumulator`,
so no trajectory of all dates is ever held in memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def area_weights(area: np.ndarray, wet: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` weights: cell area ``[H]`` x wet mask ``[C, H, W]``, each channel summing to 1.

    A channel with no wet cell gets all-zero weights (and NaN metrics)."""
    w = np.asarray(area, dtype=np.float64)[None, :, None] * np.asarray(wet, dtype=np.float64)
    total = w.sum(axis=(-2, -1), keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def spatial_mse(f: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[..., C, H, W]`` -> ``[..., C]`` weighted mean squared error."""
    return np.sum(w * (f - t) ** 2, axis=(-2, -1))


def spatial_bias(f: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.sum(w * (f - t), axis=(-2, -1))


def spatial_acc(f: np.ndarray, t: np.ndarray, c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[..., C]`` anomaly correlation of ``f - c`` with ``t - c`` (uncentred)."""
    fa, ta = f - c, t - c
    num = np.sum(w * fa * ta, axis=(-2, -1))
    den = np.sqrt(np.sum(w * fa**2, axis=(-2, -1)) * np.sum(w * ta**2, axis=(-2, -1)))
    return np.divide(num, den, out=np.full_like(num, np.nan, dtype=np.float64), where=den > 0)


@dataclasses.dataclass
class SkillAccumulator:
    """Running sums of per-date spatial scores, per lead and channel.

    ``add(lead_index, f, t, c)`` with ``[N, C, H, W]`` forecasts, truths and climatologies of N
    initial dates at one lead; `result()` gives ``[n_leads, C]`` RMSE, bias and ACC.
    """

    weights: np.ndarray  # [C, H, W], from area_weights
    n_leads: int

    def __post_init__(self):
        C = self.weights.shape[0]
        self.sum_mse = np.zeros((self.n_leads, C))
        self.sum_bias = np.zeros((self.n_leads, C))
        self.sum_acc = np.zeros((self.n_leads, C))
        self.count = np.zeros((self.n_leads, 1))

    def add(self, lead: int, f: np.ndarray, t: np.ndarray, c: np.ndarray | None = None) -> None:
        f = np.asarray(f, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        if f.ndim == 3:
            f, t = f[None], t[None]
            c = None if c is None else np.asarray(c)[None]
        w = self.weights
        self.sum_mse[lead] += spatial_mse(f, t, w).sum(axis=0)
        self.sum_bias[lead] += spatial_bias(f, t, w).sum(axis=0)
        if c is not None:
            self.sum_acc[lead] += np.nan_to_num(spatial_acc(f, t, np.asarray(c, np.float64), w)).sum(
                axis=0
            )
        self.count[lead] += f.shape[0]

    def result(self) -> dict[str, np.ndarray]:
        n = np.where(self.count > 0, self.count, np.nan)
        return {
            "rmse": np.sqrt(self.sum_mse / n),
            "bias": self.sum_bias / n,
            "acc": self.sum_acc / n,
            "count": self.count[:, 0].astype(int),
        }


def paper_rmse(rmse_normalised: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over ocean channels of per-channel RMSE in normalised units (NeuralOGCM's number)."""
    return np.nanmean(rmse_normalised, axis=axis)
