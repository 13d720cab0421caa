"""The evaluate command and the example notebook, end to end on a tiny dataset and checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_trained

from neuralogcm_jax import DataError, LayoutError
from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.h5format import days_in_year
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import ChannelLayout

REPO = Path(__file__).resolve().parents[1]
LEVELS = 2


def write_tiny_dataset(root: Path, res: float = 15.0, seed: int = 0) -> Grid:
    """12x24 cells, 2 levels, a continent; train 2019, valid 2020 (leap), test 2021.

    Fields: a seasonal cycle plus red noise, so persistence and climatology differ."""
    lay = ChannelLayout.with_levels(LEVELS)
    g = Grid.regular(res, depth=lay.depths_m)
    wet = np.ones((LEVELS,) + g.shape, bool)
    wet[:, 3:7, 4:8] = False
    g = g.with_wet(wet)
    rng = np.random.default_rng(seed)
    C = lay.n_channels
    wet_c = lay.wet_channels(wet)
    base = np.zeros((C,) + g.shape, np.float32)
    base[lay.var_slice("T")] = 15 + 10 * np.cos(np.deg2rad(g.lat))[None, :, None]
    base[lay.var_slice("S")] = 35.0
    base[lay.n_ocean:] = np.array([0.0, 0.0, 280.0, 101000.0])[:, None, None]
    scale = np.ones(C, np.float32)
    scale[lay.var_slice("U")] = scale[lay.var_slice("V")] = 0.1
    scale[lay.channel("SSH")] = 0.1
    scale[lay.n_ocean + 3] = 500.0
    anom = np.zeros((C,) + g.shape, np.float32)
    years = {"train": [2019], "valid": [2020], "test": [2021]}
    everything = []
    for split, ys in years.items():
        for y in ys:
            T = days_in_year(y)
            f = np.empty((T, C) + g.shape, np.float32)
            for t in range(T):
                anom = 0.8 * anom + 0.6 * rng.normal(size=anom.shape).astype(np.float32)
                season = np.sin(2 * np.pi * t / T)
                f[t] = base + scale[:, None, None] * (anom + season)
            f = np.where(wet_c[None], f, np.nan).astype(np.float32)
            h5write.write_year(root / split / f"{y}.h5", f, g.lat, g.lon, g.depth)
            if split == "train":
                everything.append(f)
    tr = np.nan_to_num(np.concatenate(everything))  # land 0: the climatology is 0 there
    clim = np.mean(tr, axis=0, keepdims=True).repeat(366, axis=0)[:, : lay.n_ocean]
    anoms = tr[:, : lay.n_ocean] - clim[: tr.shape[0]]
    mean = np.concatenate([np.zeros(lay.n_ocean), tr[:, lay.n_ocean:].mean(axis=(0, 2, 3))])
    std = np.concatenate([anoms.std(axis=(0, 2, 3)), tr[:, lay.n_ocean:].std(axis=(0, 2, 3))])
    h5write.write_stats(root, mean.astype(np.float32), std.astype(np.float32), clim.astype(np.float32))
    return g


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny dataset and a 2-step U-Net training run on it (which must apply both updates)."""
    from neuralogcm_jax.train import config as config_lib
    from neuralogcm_jax.train.loop import train

    base = tmp_path_factory.mktemp("evaluate")
    root = base / "data"
    write_tiny_dataset(root)
    run = base / "run"
    cfg = config_lib.load_config(
        None,
        [f"data.root={root}", f"train.out_dir={run}", "model.name=unet",
         "model.unet.base_channels=8", "model.unet.channel_mults=[1, 2]",
         "model.unet.norm_groups=4", "train.epochs=1", "train.steps_per_epoch=2",
         "data.batch_size=1", "mesh.data=-1", "checkpoint.save_every=2", "checkpoint.async_save=false"],
    )
    assert_trained(train(cfg, progress=False), cfg, physics=False)
    return root, run


def test_evaluate_command_writes_every_declared_file(tiny_run, tmp_path):
    from neuralogcm_jax.cli import main

    root, run = tiny_run
    out = tmp_path / "eval"
    rc = main(["evaluate", "--checkpoint", str(run / "checkpoints"), "--data_root", str(root),
               "--max_lead", "12", "--init_every", "60", "--out", str(out)])
    assert rc == 0
    for name in ("metrics.json", "metrics.csv", "report.md", "rmse_vs_lead.png",
                 "acc_vs_lead.png", "paper_rmse_vs_lead.png", "maps_SST.png", "maps_SSH.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    import json

    js = json.loads((out / "metrics.json").read_text())
    assert set(js["models"]) == {"unet", "persistence", "climatology", "physics"}
    # persistence is perfect at lead 0 by construction; at lead 1 its error is that of one day
    # of red noise: finite and positive.
    assert 0 < js["models"]["persistence"]["paper_rmse"][0] < 5
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * (4 * LEVELS + 1) * 12
    report = (out / "report.md").read_text()
    assert "![rmse_vs_lead](rmse_vs_lead.png)" in report


def test_a_model_and_data_on_different_grids_are_refused(tiny_run, tmp_path):
    from neuralogcm_jax.eval.evaluate import run_evaluation
    from neuralogcm_jax.rollout import load_model

    root, run = tiny_run
    model = load_model(run / "checkpoints")
    other = tmp_path / "other"
    write_tiny_dataset(other, res=30.0)
    with pytest.raises(LayoutError, match=r"other'?: grid or layout differs from that of model "
                                          r"unet: grid shape \[\d+, \d+\] vs \[6, 12\]"):
        run_evaluation({"unet": model}, other, tmp_path / "out", max_lead=5, plots=False)


def test_an_empty_split_is_a_data_error(tmp_path):
    from neuralogcm_jax.eval.evaluate import load_split

    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="holds no YEAR.h5 files"):
        load_split(tmp_path, "test")


def test_the_example_notebook_runs_on_a_checkpoint(tiny_run, tmp_path):
    root, run = tiny_run
    env = dict(os.environ, NEURALOGCM_CHECKPOINT=str(run / "checkpoints"),
               NEURALOGCM_DATA=str(root), NEURALOGCM_EXAMPLE_OUT=str(tmp_path),
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    p = subprocess.run([sys.executable, str(REPO / "examples" / "rollout_from_checkpoint.py")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "finite: True" in p.stdout
    assert (tmp_path / "example_sst.png").stat().st_size > 0


@pytest.mark.slow
def test_a_trained_hybrid_runs_a_year_finite_and_bounded(tmp_path):
    """`neuralogcm rollout --days 365` of a (briefly) trained hybrid stays physical."""
    from neuralogcm_jax.cli import main
    from neuralogcm_jax.train import config as config_lib
    from neuralogcm_jax.train.loop import train

    root = tmp_path / "data"
    write_tiny_dataset(root)
    run = tmp_path / "run"
    cfg = config_lib.load_config(
        None,
        [f"data.root={root}", f"train.out_dir={run}", "model.name=neuralogcm",
         "model.corrector.hid_channels=16", "model.corrector.num_heads=2",
         "model.corrector.norm_groups=4", "model.corrector.n_attention_blocks=1",
         "model.physics.tracer_advection=advective", "train.epochs=1",
         "train.steps_per_epoch=3", "data.batch_size=1", "checkpoint.save_every=3",
         "checkpoint.async_save=false"],
    )
    assert_trained(train(cfg, progress=False), cfg)
    out = tmp_path / "long"
    rc = main(["rollout", "--checkpoint", str(run / "checkpoints"), "--days", "365",
               "--chunk", "73", "--out", str(out)])
    import json

    summary = json.loads((out / "rollout_summary.json").read_text())
    assert summary["days_run"] == 365
    assert summary["bounded"], summary["first_violation"]
    assert rc == 0
    assert np.isfinite(summary["drift_T_degC_per_year"])
    assert (out / "rollout_diagnostics.png").stat().st_size > 0


def test_a_forecast_equal_to_the_truth_scores_zero_and_an_unknown_reference_is_named(tmp_path):
    from neuralogcm_jax import ConfigError
    from neuralogcm_jax.eval.evaluate import (
        evaluate_reference,
        initial_dates,
        load_split,
        score_predictions,
    )

    write_tiny_dataset(tmp_path)
    data = load_split(tmp_path, "test")
    inits = initial_dates(data.n_days, 3, 40)
    r, first = score_predictions(data, inits, lambda k: data.state[inits + k + 1], 3)
    assert first.shape == (3,) + data.state.shape[1:]
    np.testing.assert_array_equal(r["paper_rmse"], 0.0)
    p, _ = evaluate_reference("persistence", data, inits, 3)
    assert np.all(p["paper_rmse"] > 0.1)  # red noise of lag-1 correlation 0.8
    with pytest.raises(ConfigError, match="'persistance'"):
        evaluate_reference("persistance", data, inits, 3)


def test_the_wind_response_reference_recovers_a_slab_and_predicts_its_change(tmp_path):
    """benchmarks/bench_physics_skill.wind_response on data whose top level's velocity change is
    exactly a slab's response to the change of wind stress: Ekman (depth 20 m) off the equator,
    a day's downwind acceleration (40 m) on it; the level below does not respond."""
    import jax.numpy as jnp

    sys.path.insert(0, str(REPO))
    from benchmarks.bench_physics_skill import wind_response

    from neuralogcm_jax.eval.evaluate import load_split
    from neuralogcm_jax.physics.primitive_terms import wind_stress

    write_tiny_dataset(tmp_path)
    data = load_split(tmp_path, "train")
    stats, lay = data.stats, data.stats.layout
    rng = np.random.default_rng(1)
    data.forcing = rng.normal(size=data.forcing.shape).astype(np.float32)
    phys = np.asarray(stats.denormalize_forcing(data.forcing), np.float64)
    tx, ty = (np.asarray(x, np.float64) for x in
              wind_stress(jnp.asarray(phys[:, 0]), jnp.asarray(phys[:, 1])))
    eq = (np.abs(np.asarray(data.grid.lat)) <= 10.0)[:, None]
    f = np.asarray(data.grid.coriolis)[:, None]
    rho0 = 1025.0
    u_resp = np.where(eq, tx * 86400 / (rho0 * 40.0), ty / (rho0 * np.where(eq, 1, f) * 20.0))
    v_resp = np.where(eq, ty * 86400 / (rho0 * 40.0), -tx / (rho0 * np.where(eq, 1, f) * 20.0))
    iu, iv = lay.channel("U", 0), lay.channel("V", 0)
    wet = stats.wet[iu] > 0
    state = np.zeros_like(data.state)
    state[:, iu] = np.where(wet, u_resp / stats.std[iu], 0)
    state[:, iv] = np.where(wet, v_resp / stats.std[iv], 0)
    state[:, lay.channel("U", 1)] = rng.normal(size=state[:, 0].shape) * wet
    data.state = state.astype(np.float32)

    predict, info = wind_response(data, max_level=2)
    np.testing.assert_allclose(info[0]["ekman_depth_m"], 20.0, rtol=1e-4)
    np.testing.assert_allclose(info[0]["equator_depth_m"], 40.0, rtol=1e-4)
    assert info[0]["ekman_explained"] > 0.9999 and info[0]["equator_explained"] > 0.9999
    assert info[1]["ekman_explained"] < 0.05  # noise: nothing to explain
    t = np.arange(10, 20)
    pred = predict(data.state[t], data.forcing[t], data.forcing[t + 1])
    for c in (iu, iv):
        np.testing.assert_allclose(pred[:, c], data.state[t + 1, c], atol=2e-4)


@pytest.mark.parametrize("wind_change", [False, True])
def test_the_slab_reference_keeps_a_slab_in_equilibrium_with_a_steady_wind(tmp_path, wind_change):
    """benchmarks/bench_physics_skill.slab_forecast: a surface level whose velocity relative to
    the level below is the slab's equilibrium ``tau / (rho0 h (r + i f))`` under a steady wind
    stays there (either variant); change the wind and the slab moves toward the new one."""
    import jax.numpy as jnp

    sys.path.insert(0, str(REPO))
    from benchmarks.bench_physics_skill import slab_forecast

    from neuralogcm_jax.eval.evaluate import load_split
    from neuralogcm_jax.physics.primitive_terms import wind_stress

    write_tiny_dataset(tmp_path)
    data = load_split(tmp_path, "test")
    stats, lay = data.stats, data.stats.layout
    rng = np.random.default_rng(2)
    data.forcing = np.repeat(rng.normal(size=(1,) + data.forcing.shape[1:]),
                             data.n_days, axis=0).astype(np.float32)
    phys = np.asarray(stats.denormalize_forcing(data.forcing[0]), np.float64)
    tx, ty = (np.asarray(x, np.float64) for x in
              wind_stress(jnp.asarray(phys[0]), jnp.asarray(phys[1])))
    h, rate = 1.0, 2.0  # level 0 (0.49 m) in the slab, level 1 (1.54 m) below it
    f = np.asarray(data.grid.coriolis)[:, None]
    w = (tx + 1j * ty) / (1025.0 * h * (rate / 86400.0 + 1j * f))
    base = rng.normal(size=w.shape) * 0.1 + 1j * rng.normal(size=w.shape) * 0.1
    state = data.state.copy()
    for k, z in ((0, base + w), (1, base)):
        cu, cv = lay.channel("U", k), lay.channel("V", k)
        state[:, cu] = np.where(stats.wet[cu] > 0, z.real / stats.std[cu], 0)
        state[:, cv] = np.where(stats.wet[cv] > 0, z.imag / stats.std[cv], 0)
    data.state = state.astype(np.float32)
    t = np.arange(5, 15)
    pred = slab_forecast(data, h, rate, wind_change)(t)
    vel = [lay.channel(v, k) for v in ("U", "V") for k in range(LEVELS)]
    np.testing.assert_allclose(pred[:, vel], data.state[t + 1][:, vel], atol=2e-5)
    rest = [c for c in range(lay.n_ocean) if c not in vel]
    np.testing.assert_array_equal(pred[:, rest], data.state[t][:, rest])  # persisted
    # a stronger wind on the next day moves the slab (and only the slab) downwind
    data.forcing[t + 1, :2] = data.forcing[t, :2] * 2.0 + 0.5
    moved = slab_forecast(data, h, rate, wind_change)(t)
    c0, c1 = lay.channel("U", 0), lay.channel("U", 1)
    assert np.abs(moved[:, c0] - pred[:, c0]).max() > 1e-2
    np.testing.assert_array_equal(moved[:, c1], pred[:, c1])
