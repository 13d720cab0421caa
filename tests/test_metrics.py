"""Skill metrics against values computed by hand on small arrays."""

import numpy as np
import pytest

from neuralogcm_jax.eval.metrics import (
    SkillAccumulator,
    area_weights,
    paper_rmse,
    spatial_acc,
    spatial_bias,
    spatial_mse,
)


def test_area_weighting_counts_large_cells_more_and_ignores_land():
    area = np.array([1.0, 3.0])  # two rows, the second three times larger
    wet = np.array([[[1, 1], [1, 0]]], dtype=bool)  # one land cell
    w = area_weights(area, wet)
    np.testing.assert_allclose(w[0], [[0.2, 0.2], [0.6, 0.0]])
    f = np.array([[[1.0, 1.0], [2.0, 100.0]]])  # the land value must not count
    t = np.zeros_like(f)
    # MSE = 0.2*1 + 0.2*1 + 0.6*4 = 2.8 ; bias = 0.2 + 0.2 + 1.2 = 1.6
    assert spatial_mse(f, t, w)[0] == pytest.approx(2.8)
    assert spatial_bias(f, t, w)[0] == pytest.approx(1.6)


def test_acc_with_a_known_climatology():
    w = area_weights(np.ones(1), np.ones((1, 1, 4), bool))
    c = np.full((1, 1, 4), 10.0)
    t = c + np.array([1.0, -1.0, 2.0, -2.0])
    assert spatial_acc(t, t, c, w)[0] == pytest.approx(1.0)
    assert spatial_acc(2 * t - c, t, c, w)[0] == pytest.approx(1.0)  # scale-free
    assert spatial_acc(2 * c - t, t, c, w)[0] == pytest.approx(-1.0)
    # f' = [1, 1, 0, 0], t' = [1, -1, 2, -2]: num 0 -> ACC 0
    f = c + np.array([1.0, 1.0, 0.0, 0.0])
    assert spatial_acc(f, t, c, w)[0] == pytest.approx(0.0)


def test_rmse_is_root_of_mean_mse_not_mean_of_rmse():
    w = area_weights(np.ones(1), np.ones((1, 1, 1), bool))
    acc = SkillAccumulator(w, n_leads=1)
    acc.add(0, np.array([[[[1.0]]], [[[3.0]]]]), np.zeros((2, 1, 1, 1)))
    r = acc.result()
    assert r["rmse"][0, 0] == pytest.approx(np.sqrt((1 + 9) / 2))  # not (1 + 3) / 2
    assert r["bias"][0, 0] == pytest.approx(2.0)
    assert r["count"][0] == 2


def test_paper_rmse_averages_channels():
    assert paper_rmse(np.array([[1.0, 2.0, 3.0]]))[0] == pytest.approx(2.0)
