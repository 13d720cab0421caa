"""The skill benchmark (benchmarks/bench_skill.py): its verdict logic, and its quick mode end to end
(twin v2 data, five trained models, evaluation, free runs, every declared file)."""

import csv
import json
import math
import sys
from pathlib import Path

import early
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/
from benchmarks import bench_skill as B  # noqa: E402


def _results(curves: dict[str, list[float]]) -> dict:
    return {k: {"paper_rmse": np.asarray(v, np.float64)} for k, v in curves.items()}


def _free(days=365, drift=0.05, bounded=True):
    return {"neuralogcm": {"days": days, "drift_degC_per_year": drift, "bounded": bounded}}


def test_verdict_is_per_lead_and_names_who_wins():
    n = 120
    h = np.full(n, 1.0)
    curves = {"neuralogcm": h, "unet": np.full(n, 1.2), "convlstm": np.full(n, 1.3),
              "simvp": np.full(n, 1.4), "fourcastnet": np.full(n, 1.5),
              "persistence": np.full(n, 2.0), "climatology": np.full(n, 1.1),
              "physics": np.full(n, 3.0)}
    curves["persistence"][:3] = 0.5  # persistence wins the first three days
    curves["unet"][59] = 1.0  # a tie at 60 days is not a win
    v = B.verdict(_results(curves), _free())
    met = [r["lead_days"] for r in v["leads"] if r["met"]]
    assert v["n_leads"] == n and len(met) == n - 4 and 60 not in met and met[0] == 4
    assert v["leads"][0]["beaten_by"] == ["persistence"]
    assert v["leads"][59]["beaten_by"] == ["unet"]
    assert v["first_failing_lead"] == 1 and not v["all_leads_met"] and not v["bar_met"]
    assert v["free_run_met"]
    # Everything won, but the free run drifts, is short or unbounded: the bar fails.
    curves["persistence"][:3] = 2.0
    curves["unet"][59] = 1.2
    assert B.verdict(_results(curves), _free())["bar_met"]
    for bad in (_free(drift=-0.2), _free(days=364), _free(bounded=False)):
        v = B.verdict(_results(curves), bad)
        assert v["all_leads_met"] and not v["free_run_met"] and not v["bar_met"]
    # Fewer than 120 leads can never meet the bar; a NaN hybrid never wins.
    short = {k: c[:10] for k, c in curves.items()}
    assert not B.verdict(_results(short), _free())["bar_met"]
    curves["neuralogcm"] = np.full(n, np.nan)
    assert B.verdict(_results(curves), _free())["n_met"] == 0


def test_volume_weights_follow_area_thickness_and_mask():
    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.layout import ChannelLayout

    g = load_world(12.0, 3).grid
    w = B.volume_weights(g, ChannelLayout.with_levels(3))
    assert w.shape == g.wet.shape and math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert np.all(w[~g.wet] == 0)
    j = int(np.argmax(g.wet[2].any(axis=1)))
    i = int(np.argmax(g.wet[2, j]))
    np.testing.assert_allclose(w[2, j, i] / w[0, j, i], g.dz[2] / g.dz[0])


def _quick_command(workdir):
    """``python -m benchmarks.bench_skill --quick`` as a user runs it: one CPU device (not the
    8 simulated ones of this test session)."""
    import os
    import re

    env = dict(os.environ)
    env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                              env.get("XLA_FLAGS", ""))
    env["PYTHONPATH"] = os.pathsep.join([str(B.REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "benchmarks.bench_skill", "--quick", "--out",
           str(workdir / "out"), "--data", str(workdir / "data"), "--no_progress"]
    return cmd, env, str(B.REPO)


# Started when the session starts, beside the other tests (`tests/early.py`); a 20-minute
# limit, as it shares the machine with the session.
early.register("skill_quick", "tests/test_skill.py::test_quick_mode", _quick_command, 1200.0)


@pytest.fixture(scope="module")
def quick_run():
    """The quick mode's output directory and summary."""
    rc, _, err, workdir = early.result("skill_quick")
    assert rc == 0, err[-3000:]
    summary = json.loads((workdir / "out" / "skill.json").read_text())
    return workdir / "out", summary


# The whole benchmark in small (about 3 minutes of two cores alone; started with the session,
# `tests/early.py`, so it runs on the second core beside the other tests).
def test_quick_mode_writes_every_declared_file(quick_run):
    out, summary = quick_run
    for f in B.DECLARED_FILES:
        p = out / f
        assert p.is_file() and p.stat().st_size > 0, f
    js = json.loads((out / "skill.json").read_text())
    everyone = set(B.MODELS) | set(B.REFERENCES)
    assert set(js["paper_rmse"]) == everyone
    n = B.QUICK.max_lead
    for name, y in js["paper_rmse"].items():
        assert len(y) == n and all(v is not None and v > 0 for v in y), name
    assert set(js["free_runs"]) == set(B.MODELS) | {"physics"}
    for fr in js["free_runs"].values():
        assert fr["days"] == B.QUICK.free_run_days and fr["finite"]
    assert len(js["verdict"]["leads"]) == n and not js["verdict"]["bar_met"]  # 5 leads < 120
    damping = {f"climate_damping_{v}" for v in ("S", "U", "V", "T", "SSH")}
    # configs/demo.yaml damps toward climatology and holds the imbalance
    assert set(js["coefficients"]) == {"nu_m", "nu_t", "imbalance_release"} | damping
    assert js["coefficients"]["imbalance_release"]["truth"] is None  # no such term in the truth
    for k in damping:  # the truth has no such coefficient; the model's start is 1/(30 days)
        c = js["coefficients"][k]
        assert c["truth"] is None and c["model_default"] == pytest.approx(1 / (30 * 86400))
    assert all(t["steps"] == 3 for t in js["training"].values())
    # CSVs: one row per model and lead, per model and day, per lead.
    with (out / "skill_leads.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(everyone) * n
    with (out / "skill_free_run.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == (len(B.MODELS) + 1) * B.QUICK.free_run_days
    with (out / "skill_verdict.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == n
    md = (out / "skill.md").read_text()
    assert "verdict: NOT MET" in md and "Free runs" in md and "nu_m" in md
    rows = B.rows_of(summary)
    assert rows[0]["name"] == "verdict" and any(r["name"].startswith("time ") for r in rows)
