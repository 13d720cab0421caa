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
