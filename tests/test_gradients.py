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
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import early  # noqa: E402
from helpers import run_child  # noqa: E402
import pytest  # noqa: E402

WORKER = Path(__file__).with_name("gradient_worker.py")
RTOL = 1e-2  # float32 autodiff against float64 central differences


def _case_command(case: dict):
    """`gradient_worker.py` for `case` in a fresh float32 process (x64 off there: the fault
    the matrix guards against never showed with x64 on, which this test process has)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    return [sys.executable, str(WORKER), json.dumps(case)], env, None


def _parse(rc: int, out: str, err: str) -> dict:
    assert rc == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def run_case(case: dict, timeout: float = 900.0) -> dict:
    """Run one case of `gradient_worker.py` (see `_case_command`) in its own process group
    (killed, and the test failed, at `timeout`) and read its result."""
    cmd, env, _ = _case_command(case)
    return _parse(*run_child(cmd, env=env, timeout=timeout, what=f"gradient case {case_id(case)}"))


def check(result: dict) -> None:
    """A global coefficient: its float32 gradient against float64 central differences. A
    per-level one (a vector g): along g's own direction (float64), float32 g against central
    differences; along a random +-1 direction, the float64 autodiff gradient against central
    differences; and the whole float32 vector against the float64 one, norm-wise. (The vector's
    relative error is norm-wise: along a random +-1 direction alone, levels of opposite sign
    can cancel to a sum far smaller than each level's gradient, see `gradient_worker`.)"""
    for k, r in result["days"].items():
        assert r["nonfinite"] == [], f"{k}-day loss: non-finite gradients of {r['nonfinite']}"
        assert np.isfinite(r["loss32"])
        pairs = [("ad32", "fd64", "float32 autodiff")]
        if r["fd64_random"]:
            pairs.append(("ad64_random", "fd64_random", "float64 autodiff, random direction,"))
        for ad_key, fd_key, what in pairs:
            for name, fd in r[fd_key].items():
                ad = r[ad_key][name]
                scale = max(abs(fd), 1e-12)
                assert abs(ad - fd) <= RTOL * scale, (
                    f"{k}-day loss, {name}: {what} {ad:.6g} vs float64 central difference "
                    f"{fd:.6g} (relative {abs(ad - fd) / scale:.2g} > {RTOL}; float64 autodiff "
                    f"{r[ad_key.replace('32', '64')][name]:.6g})"
                )
                assert fd != 0.0, f"{k}-day loss does not depend on {name}"
        for name, rel in r["rel32_norm"].items():
            assert rel <= RTOL, (
                f"{k}-day loss, {name}: float32 gradient {rel:.2g} from float64 norm-wise "
                f"(worst level {r['rel32_worst_level'][name]:.2g})")


def test_hybrid_gradients_at_the_demo_configuration():
    """The demo's resolution (6 deg; the top 4 of its 23 levels), batch of one, float32, the
    shipped configs' paper physics (balanced, held imbalance, day-mean output), currents up to
    1.5 m/s in the polar-filter band: every gradient of the one-day training loss is finite and
    those of nu_m, nu_t and imbalance_release match float64 central differences (the five-day
    loss: the slow matrix's shipped-configuration cases).
    (Before the XLA setting of `_xla_flags` the physics gradients were NaN here.)"""
    rc, out, err, _ = early.result("demo_gradients")
    check(_parse(rc, out, err))


# Started beside the other tests (`tests/early.py`: when the session starts in one process, when
# its test runs under xdist, `make test`).
# The one-day loss only: the five-day loss of the same configuration (held imbalance, day-mean
# output, as the shipped configs) is a case of the slow matrix at each of its four grids; here it
# cost 63 of the job's 142 CPU-s (2026-12-04).
DEMO_CASE = {"res": 6.0, "levels": 4, "mode": "paper", "imbalance": "held", "output": "day_mean",
             "days": [1]}
early.register("demo_gradients", "tests/test_gradients.py::test_hybrid_gradients_at_the_demo",
               lambda _workdir: _case_command(DEMO_CASE), 1200.0)


# Every choice a user has, one at a time from the defaults (balanced paper mode, advective forms,
# the integrator chosen for the grid, the joint polar-filter transfer, global coefficients).
PAPER_OPTIONS = {
    "tracer_advection": ("flux", "advective"),
    "momentum_advection": ("flux", "advective"),
    "pressure_gradient": ("hydrostatic", "none"),
    "integrator": ("ssprk3", "ssprk43"),
    "polar_filter_transfer": ("joint", "split"),
    "imbalance": ("free", "held"),
    "output": ("end", "day_mean"),
    "per_level": (False, True),
}


def matrix_cases():
    """Per grid: the defaults, each other value of each option, the seed's form, the shipped
    configs' combination (held imbalance, day-mean output) and primitive mode (global and
    per-level coefficients). A value equal to the default repeats the base."""
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
        cases.append({**base, "imbalance": "held", "output": "day_mean"})  # the shipped configs
        for per_level in (False, True):
            cases.append({**base, "mode": "primitive", "per_level": per_level})
    return cases


# Primitive mode, history. Until 2026-12-01 three of its eight cases (3 deg x 4 levels, global
# and per level; 3 deg x 23 levels per level) missed the 1e-2 bar and were strict xfail: float32
# gradients of the weak coefficients (1e-5 to 1e-8 of the largest) were up to 12.6 % (nu_m,
# 3x4, 5-day) from float64. Cause: the convective diffusivity diagnosed at every substep
# follows the state through a stiff feedback (convection off: float32 = float64 to 1e-5; the
# derivative through the ramp stopped: 2e-5; a 1e-7 change of the initial state moved nu_m's
# float64 gradient by 9 %). A C1 ramp, a wider one and an adjoint of the vertical solve in
# differences did not fix it. What helped: the diffusivity diagnosed once per model step
# (`PrimitiveTerms.convective_closure = "step"`, penetrative, C1 ramp; docs/design.md).
# Measured 2026-12-01, float32 autodiff against float64 central differences, worst coefficient
# of the 1- and 5-day losses, with the diffusivity diagnosed from every level's density at every
# interface depth (an ``[L, L-1, H, W]`` EOS evaluation; 12 % slower a day and 4.4x the gradient's
# memory at 1.5 deg, so not shipped):
#   3 deg x 4 levels: global 0.01 % (5-day nu_m; was 11 %), per level 0.01 % (was 11 %);
#   3 deg x 23 levels: global 0.12 % (5-day kappa_v), per level 0.999 % (5-day nu_t; was 4.0 %);
#   6 deg x 4 levels: global 0.04 % (1-day nu_v), per level 0.01 %;
#   6 deg x 23 levels: global 0.64 %, per level 0.64 % (5-day convective_kappa).
# With the shipped diagnosis (each level's density carried to other depths with a reference
# compressibility: two EOS evaluations): 3 deg x 23 levels per level fails again, 5-day nu_t
# 1.60 % (kappa_v 0.46 %), so it stays strict xfail; and 6 deg x 23 levels per level, which
# passed before the change (0.07 %), fails: 5-day nu_t 1.09 % (convective_kappa 0.84 %); 3 deg x
# 4 levels global 0.01 %, 3 deg x 23 global 0.37 % (the other three not re-run on this code).
# Two experiments of 2026-12-01 (afternoon), neither kept:
# - the exact diagnosis again, under `jax.checkpoint` (same forward values, its intermediates
#   recomputed in the backward pass instead of kept): 3 deg x 23 per level, 5-day nu_t 3.52 %
#   (convective_kappa 1.21 %). The same arithmetic gave 0.999 % without the checkpoint, so
#   that figure was not a property of the exact diagnosis: the 5-day float32 gradient of the
#   weak nu_t (1e-5 of heat_restoring's) moves between 1 % and 3.5 % with how XLA compiles the
#   same function;
# - the derivative through the diagnosis dropped (T, S stop_gradient'ed where the diffusivity
#   is diagnosed, kappa's own factor kept, the frozen-mixing adjoint of ocean adjoint codes):
#   the same case's 5-day gradients then left float64 central differences by 462 %
#   (convective_kappa), 148 % (nu_t) and 83 % (kappa_v). The path through the state's
#   stability dominates these gradients and cannot be dropped.
# Shipped since 2026-12-01 15:00: the shipped diagnosis under `jax.checkpoint` (for memory: the
# 5-day gradient at 1.5 deg 1.94 GiB instead of 3.46). Re-measured on it: 3 deg x 23 per level
# 2.05 % and 6 deg x 23 per level 1.12 % (5-day nu_t; still strict xfail), 6 deg x 23 global
# 0.86 % (5-day convective_kappa; passes, narrowly); the other five cases not re-run on it.
# Still ill-conditioned at convective_kappa = 1 m^2/s (3 deg x 23 per level, 5-day: heat_restoring
# 8.6 % with the C1 ramp, nu_t 15 % with a linear one), hence its default of 0.1.
# 2026-12-02: a per-level coefficient's relative error became norm-wise (`check`); before, it was
# the relative error of its sum along one random +-1 direction, in which the levels' gradients of
# opposite sign cancel. On the 6 deg x 23 per-level case, 5-day nu_t: 1.08 % along that random
# direction, 0.22 % norm-wise against central differences level by level (46 more losses a day;
# the float64 autodiff vector is 2.6e-5 from those), 0.07 % along the gradient's own direction;
# every coefficient of the case passes (worst: the global convective_kappa, 0.87 %). 3 deg x 23 per
# level does not: 5-day nu_t 1.22 % along its gradient direction, 1.83 % norm-wise from float64
# autodiff, 33 % at its worst level (kappa_v 0.42 % / 0.58 %; all else below 0.4 %). The other
# six per-level cases (paper at all four grids, primitive at 4 levels) pass: worst 2.0e-4.
# 2026-12-04: with shear mixing on by default (d8c1ed5), 6 deg x 4 levels global fails: 5-day
# nu_m, float32 autodiff 1.36021e-06 against float64 central differences 1.31006e-06 (3.8 %;
# float64 autodiff 1.3102e-06, so the float64 derivative is right). The same worker with
# `PrimitiveTerms(shear_mixing=False)` the same hour: 5-day nu_m 1.09996e-05 against 1.10001e-05
# (4e-5), every coefficient within 1e-4. So the shear closure makes nu_m's float32 gradient
# ill-conditioned, as the per-substep convective closure did.
# 2026-12-04 (later): the cause was the floor under S^2 in Ri = N^2 / S^2, 1e-12 s^-2, far below
# the float32 round-off of N^2 (levels left neutral by convection are +-1 ulp of density apart),
# so round-off chose Ri in weakly sheared water. The 5-day losses of the same case with the floor
# at 1e-8: nu_m 2.0e-4, nu_v 1.8 %; at 1e-6 (shipped): worst nu_m 8.6e-4, every coefficient
# within 1e-3. With that floor all eight primitive cases pass (`pytest -m slow -k primitive
# tests/test_gradients.py -n 2`: 7 passed, and 3 deg x 23 levels per level, strict xfail until
# then, XPASS): its 5-day nu_t 0.11 % along its direction and 0.17 % norm-wise (1.22 and 1.83 %
# before shear mixing), worst coefficient shear_nu 0.29 %, kappa_v 0.15 % norm-wise; so no case
# is marked now. (A weak-coefficient figure still moves with compilation, see above.)
# The same matrix with convective_kappa's default at 1 m^2/s (the same day): 6 passed; both 6 deg
# x 23-level cases failed, 5-day convective_kappa float32 -4.45826e-4 against float64 central
# differences -4.29023e-4 (3.9 %; float64 autodiff -4.29023e-4). 3 deg x 23 per level passed there
# (worst 8.5e-4, once 8.6 %). So the default stays 0.1.
# Paper mode, 2026-12-04 (all 40 paper cases, on the code of f6fe48b-5cd2d4f, whose paper path is
# the same): `python -m pytest -m slow tests/test_gradients.py -k paper`, 40 passed (6966 s in
# one process at nice 19 on a shared 2-core machine). They had last run before the float32 EOS
# change of an earlier round. Added since and passed: the four day-mean cases (`-k day_mean`,
# 2026-12-04 afternoon) and the four shipped-configuration cases (held imbalance and day-mean,
# 2026-12-04 17:09 UTC, 130-204 s each, nothing else running).
# 2026-12-05: with the Rhie-Chow correction of the whole hydrostatic pressure the default
# (`PrimitiveTerms.rhie_chow_pressure = "total"`), all eight primitive cases pass again
# (`pytest -m slow -k "gradient_matrix and primitive" tests/test_gradients.py -n 2`, 743 s).
# 2026-12-05 (later): the vertical solve's derivative implicit (`vertical._implicit_solve`; the
# reverse mode of its elimination cancelled the derivative by a large diffusivity to round-off),
# convective_kappa's default 1 m^2/s and the Rhie-Chow correction of third order: the two 6 deg x
# 23-level cases, 5-day convective_kappa 0.29 % (3.9 % before), worst kappa_v 0.63 % (global) and
# 0.42 % norm-wise (per level); all eight primitive cases pass (`pytest -m slow -k
# "gradient_matrix and primitive" tests/test_gradients.py -n 2`, 784 s).
PRIMITIVE_FLOAT32_GAP_CASES: dict[tuple, str] = {}  # (res, levels, per_level) -> why it misses


def case_id(case):
    return "-".join(f"{k}={v}" for k, v in case.items() if k != "days")


def marked(case):
    key = (case["res"], case["levels"], bool(case.get("per_level", False)))
    gap = case["mode"] == "primitive" and key in PRIMITIVE_FLOAT32_GAP_CASES
    marks = [pytest.mark.xfail(strict=True, reason=PRIMITIVE_FLOAT32_GAP_CASES[key])] if gap else []
    return pytest.param(case, marks=marks, id=case_id(case))


@pytest.mark.slow
@pytest.mark.parametrize("case", [marked(c) for c in matrix_cases()])
def test_gradient_matrix(case):
    """Every user-selectable physics configuration at 6 and 3 deg, 4 and 23 levels: finite
    gradients of every parameter and physics gradients equal to float64 central differences."""
    check(run_case(case))
