"""Gradient health: what training through the physics needs, checked in float32.

The claims: the gradients of a hybrid loss with respect to every parameter are finite, and the
gradients with respect to the physics coefficients agree with central differences of the float64
loss, on the embedded world, from states with realistic currents and coasts inside the
polar-filter band, for the physics configurations a user can choose.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from neuralogcm_jax import _xla_flags


def test_package_import_sets_the_reduce_fusion_flag():
    """Importing the package puts the YNN reduce-fusion setting into XLA_FLAGS (see `_xla_flags`)."""
    assert _xla_flags.YNN_SETTING in os.environ["XLA_FLAGS"]


# ------------------------------------------------------------------------------ the matrix
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

WORKER = Path(__file__).with_name("gradient_worker.py")
RTOL = 1e-2  # float32 autodiff against float64 central differences


def run_case(case: dict, timeout: float = 900.0) -> dict:
    """Run one case of `gradient_worker.py` in a fresh float32 process (x64 off there: the
    fault the matrix guards against never showed with x64 on, which this test process has)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    proc = subprocess.run([sys.executable, str(WORKER), json.dumps(case)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check(result: dict) -> None:
    for k, r in result["days"].items():
        assert r["nonfinite"] == [], f"{k}-day loss: non-finite gradients of {r['nonfinite']}"
        assert np.isfinite(r["loss32"])
        for name, fd in r["fd64"].items():
            ad = r["ad32"][name]
            scale = max(abs(fd), 1e-12)
            assert abs(ad - fd) <= RTOL * scale, (
                f"{k}-day loss, {name}: float32 autodiff {ad:.6g} vs float64 central difference "
                f"{fd:.6g} (relative {abs(ad - fd) / scale:.2g} > {RTOL}; float64 autodiff "
                f"{r['ad64'][name]:.6g})"
            )
            assert fd != 0.0, f"{k}-day loss does not depend on {name}"


def test_hybrid_gradients_at_the_demo_configuration():
    """The demo's grid (6 deg x 4 levels of the embedded world), batch of one, float32, default
    paper physics, currents up to 1.5 m/s in the polar-filter band: every gradient of the one- and
    five-day training loss is finite and those of nu_m and nu_t match float64 central differences.
    (Before the XLA setting of `_xla_flags` both physics gradients were NaN here.)"""
    check(run_case({"res": 6.0, "levels": 4, "mode": "paper", "days": [1, 5]}))


# Every choice a user has, one at a time from the defaults (balanced paper mode, advective forms,
# the integrator chosen for the grid, the joint polar-filter transfer, global coefficients).
PAPER_OPTIONS = {
    "tracer_advection": ("flux", "advective"),
    "momentum_advection": ("flux", "advective"),
    "pressure_gradient": ("hydrostatic", "none"),
    "integrator": ("ssprk3", "ssprk43"),
    "polar_filter_transfer": ("joint", "split"),
    "per_level": (False, True),
}


def matrix_cases():
    """Per grid: the defaults, each other value of each option, the seed's form and primitive
    mode (global and per-level coefficients). A value equal to the default repeats the base."""
    from neuralogcm_jax.physics import PhysicsConfig

    default = PhysicsConfig()
    cases = []
    for res, levels in ((6.0, 4), (6.0, 23), (3.0, 4), (3.0, 23)):
        base = {"res": res, "levels": levels, "mode": "paper", "days": [1, 5]}
        cases.append(base)
        for key, values in PAPER_OPTIONS.items():
            now = False if key == "per_level" else getattr(default, key)
            cases += [{**base, key: v} for v in values if v != now]
        cases.append({**base, "pressure_gradient": "none", "tracer_advection": "flux",
                      "momentum_advection": "flux"})  # the seed's paper form
        for per_level in (False, True):
            cases.append({**base, "mode": "primitive", "per_level": per_level})
    return cases


# Known gap, tracked in the gradient-health issue: in primitive mode the float32 gradients of some
# coefficients whose gradient is orders of magnitude below the largest (heat_restoring's) miss the
# 1e-2 bar; float64 autodiff agrees with the central differences there (to < 1e-3), so it is
# float32 round-off, not a wrong derivative. Measured 2026-11-30 on the code of that day (TEOS-10
# about a reference water mass, increment-form vertical solve, symmetric Coriolis, 0.3 kg/m^3
# convective ramp), float32 autodiff against float64 central differences:
#   6 deg x 4 levels, per level: 5-day nu_t 1.4 %;
#   3 deg x 4 levels: 1-day nu_m 1.6 % (its gradient 2e-6 of heat_restoring's); 5-day nu_m
#     190 % and nu_v 83 % (gradients 6e-8 and 2e-6 of heat_restoring's 12.6), per level also
#     nu_t 59 % and kappa_v 1.5 %;
#   3 deg x 23 levels, per level: 5-day kappa_v 1.8 %, nu_t 2.4 %.
# Re-measured 2026-12-01 after the vertical step moved between the Coriolis half rotations:
#   6 deg x 4 levels, per level: passes now (worst 0.45 %, 5-day nu_v), so it is unmarked;
#     6 deg x 4 global passes (worst 0.45 %);
#   3 deg x 4 levels: 1- and 5-day nu_m 11 %, 5-day nu_v 5.4 %; per level also 5-day nu_t
#     3.9 % and 1-day nu_m 2.0 %;
#   6 deg x 23 levels, per level: passes (worst 0.07 %);
#   3 deg x 23 levels, per level: still fails, 5-day nu_t 4.0 % (its gradient 4e-5 of
#     heat_restoring's), kappa_v 0.71 % (was 1.8 %); the 1-day loss passes (worst 0.18 %);
#   3 deg x 23 global passes (worst 0.12 %, 5-day nu_t); 6 deg x 23 global passes (worst 0.27 %,
#     1-day kappa_v). So 5 of the 8 primitive cases pass on the code of 2026-12-01.
# Cause located 2026-12-01 (3 deg x 4 levels, 5-day loss, float32 autodiff against float64
# autodiff; this worker's case with one physics change at a time): the state-dependent
# convective diffusivity.
#   convective mixing off (convective_kappa_m2_s = 0): nu_m 4e-6 relative, every coefficient
#     < 1e-5; at 0.01 m^2/s: nu_m 0.27 %, nu_v 0.10 %; at the default 0.1: nu_m 13 %;
#   default, but no derivative through the ramp (stop_gradient on the convective diffusivity,
#     in both precisions): nu_m 1.7e-5, every coefficient < 2e-5;
#   the same float64 gradient from initial states moved by 1e-7 of themselves: nu_m moved by
#     9 % in one of three draws (the linear ramp's kinks); 1e-5 of the initial state moves it
#     0.4 % and nu_v 0.8 % even with a C1 ramp: the gradients of the weak momentum coefficients
#     are ill-conditioned in the state through the convective feedback, and float32's
#     trajectory is further than that from float64's;
#   float64 arithmetic with the state (and adjoint) rounded to float32 after each substep:
#     nu_m 8.6 % off (pure float32 12.6 %), nu_v 0.4 % (pure float32 5.4 %): the state's
#     storage explains most of nu_m's error, the substep's float32 arithmetic most of nu_v's.
# Tried and not kept (each measured on the worker's cases): a C1 ramp x^2 (3 - 2 x) over
#   0.3 kg/m^3 (3x4: 11 % -> 2-4 %; 3x23 per level: 5-day passes, 1-day nu_v 11 %; 6x4 global
#   and per level, passing with the linear ramp, fail at 18-56 %); the same over 0.45 (6x4
#   nu_v 3.6 %, 3x4 nu_v 78 %); an adjoint of the implicit vertical solve written in
#   differences (equal to reverse mode through the solve to 1e-15 in float64; with the C1 ramp it
#   left the failing errors where they were: 3x4 nu_m 2.0 -> 1.9 %, nu_v 4.1 -> 4.1 %, 3x23
#   per level 1-day nu_v 11.1 -> 10.8 %). A wider ramp puts more interfaces in the feedback, a
#   narrower one is stiffer (0.1 kg/m^3: 38 % at 6x4); no ramp found passes every case.
# Before the first round's fixes all eight failed (float32 density differences were off by
# 2e-4 kg/m^3, the vertical solve's rounding was ~1e-4 of T itself per substep, and the
# convective switch made the loss discontinuous). Strict: a fix makes a listed case pass, and
# fail here until unmarked.
PRIMITIVE_FLOAT32_GAP_CASES = {(3.0, 4, False), (3.0, 4, True), (3.0, 23, True)}
PRIMITIVE_FLOAT32_GAP = pytest.mark.xfail(
    strict=True, reason="primitive mode: float32 gradients of the small coefficient components "
    "miss the 1e-2 bar against float64 central differences (see PRIMITIVE_FLOAT32_GAP_CASES)")


def marked(case):
    key = (case["res"], case["levels"], bool(case.get("per_level", False)))
    gap = case["mode"] == "primitive" and key in PRIMITIVE_FLOAT32_GAP_CASES
    marks = [PRIMITIVE_FLOAT32_GAP] if gap else []
    return pytest.param(case, marks=marks, id="-".join(
        f"{k}={v}" for k, v in case.items() if k != "days"))


@pytest.mark.slow
@pytest.mark.parametrize("case", [marked(c) for c in matrix_cases()])
def test_gradient_matrix(case):
    """Every user-selectable physics configuration at 6 and 3 deg, 4 and 23 levels: finite
    gradients of every parameter and physics gradients equal to float64 central differences."""
    check(run_case(case))
