"""Claims about the demo's verdict: every lead, every reference, losses said plainly."""

import numpy as np

from neuralogcm_jax.demo import verdict, verdict_lines


def results(**curves):
    return {k: {"paper_rmse": np.asarray(v, float)} for k, v in curves.items()}


def test_the_verdict_names_every_lead_where_the_hybrid_loses():
    r = results(
        neuralogcm=[0.5, 0.6, 0.7, 1.5, 1.6],
        persistence=[0.4, 0.8, 0.9, 1.0, 1.1],
        climatology=[1.3, 1.3, 1.3, 1.3, 1.3],
        physics=[0.8, 0.9, 1.0, 1.1, 1.2],
        unet=[0.5, 0.7, 0.8, 1.6, 2.0],
    )
    v = verdict(r)
    assert v["wins"] == [2, 3]
    # a tie is not a win: the U-Net equals the hybrid at lead 1
    assert v["losses"] == {1: ["persistence", "unet"], 4: ["climatology", "persistence", "physics"],
                           5: ["climatology", "persistence", "physics"]}
    text = "\n".join(verdict_lines(r, {}))
    assert "at 2 of 5 leads (2-3 d)" in text and "**loses** at 3 (1, 4-5 d)" in text
    assert "- persistence is as good or better at 3 leads: 1, 4-5 d" in text


def test_the_verdict_says_so_when_the_hybrid_wins_everywhere():
    r = results(neuralogcm=[0.1, 0.2], persistence=[0.4, 0.8], climatology=[1.3, 1.3])
    assert verdict(r)["wins"] == [1, 2]
    assert "at **every** lead" in "\n".join(verdict_lines(r, {}))


def test_the_demo_refuses_a_run_with_skipped_updates_or_unmoved_physics(tmp_path):
    """`check_trained`, the demo's guard before it reports on a model: a skipped update is named
    with its parameter group; with every update applied, a learnable physics coefficient that
    never moved is named (its gradient was zero), and one that moved passes."""
    import jax.numpy as jnp
    import pytest
    from test_model import small_world, tiny

    from neuralogcm_jax.demo import check_trained
    from neuralogcm_jax.errors import StateError
    from neuralogcm_jax.model import build_model
    from neuralogcm_jax.train.loop import RunResult
    from neuralogcm_jax.train.state import physics_si, split_model

    g, stats, _, _ = small_world()
    graphdef, params, rngs, consts = split_model(build_model(tiny("neuralogcm"), g, stats, seed=0))
    ts = {"params": params, "rngs": rngs, "consts": consts}
    start = physics_si(graphdef, ts)
    assert set(start) == {"nu_m", "nu_t"}

    def result(ts, skipped=0, groups=None):
        return RunResult(20, ts, graphdef, {}, skipped=skipped, physics_start=start,
                         skipped_by_group=groups or {"physics_params.nu_m": 0})

    with pytest.raises(StateError, match=r"2 of 20 training updates were skipped .*"
                       r"'physics_params.nu_m': 2"):
        check_trained("neuralogcm", result(ts, 2, {"physics_params.nu_m": 2, "corrector.head": 0}),
                      "all", tmp_path)
    with pytest.raises(StateError, match=r"physics_params.nu_m, physics_params.nu_t never moved"):
        check_trained("neuralogcm", result(ts), "all", tmp_path)
    moved = {**params, "physics_params": {**params["physics_params"],
                                          "nu_m": params["physics_params"]["nu_m"] + 1e-3}}
    with pytest.raises(StateError, match=r"coefficient\(s\) physics_params.nu_t never moved"):
        check_trained("neuralogcm", result({**ts, "params": moved}), "physics", tmp_path)
    check_trained("neuralogcm", result(ts), "network", tmp_path)  # the physics was frozen
    moved["physics_params"]["nu_t"] = params["physics_params"]["nu_t"] * 1.01
    check_trained("neuralogcm", result({**ts, "params": moved}), "all", tmp_path)
    assert not jnp.array_equal(moved["physics_params"]["nu_t"], params["physics_params"]["nu_t"])

    # per-level rates (climate_damping_per_level): one level that never moved is named
    graphdef, params, rngs, consts = split_model(build_model(
        tiny("neuralogcm", climate_damping_days=30.0, climate_damping_per_level=True), g, stats,
        seed=0))
    ts = {"params": params, "rngs": rngs, "consts": consts}
    start = physics_si(graphdef, ts)
    assert start["climate_damping_T"].shape == (g.n_levels,)
    pp = params["physics_params"]
    moved = {**params, "physics_params": {k: v + 1e-3 for k, v in pp.items()}}
    check_trained("neuralogcm", result({**ts, "params": moved}), "all", tmp_path)
    moved["physics_params"]["climate_damping_T"] = pp["climate_damping_T"] + jnp.array(
        [1e-3] + [0.0] * (g.n_levels - 1), jnp.float32)  # level 1 (and below) never moved
    with pytest.raises(StateError, match=r"coefficient\(s\) physics_params.climate_damping_T "
                       r"never moved from their start at every level"):
        check_trained("neuralogcm", result({**ts, "params": moved}), "all", tmp_path)
