"""What the E - P freshwater flux adds to primitive mode's pure physics, on a twin whose truth
feels it.

The demo twin with freshwater (``make-data --preset demo --freshwater``: the demo preset whose
forcing also holds ERA5-like ``e`` and ``tp`` channels and whose primitive truth takes the virtual
salt flux ``S_top (E - P)``; generated, about 8 minutes on a 2-core CPU, into
``$NEURALOGCM_BENCH_FRESHWATER`` or ``demo-twin-freshwater`` in the system temporary directory
unless it is there already) is forecast from every 5th day of its test year (every 30th with
``--quick``) for 10 days by primitive mode's pure physics with and without
``freshwater_flux: e_minus_p``, each with the default convective closure (diagnosed once a day)
and with the truth's (``convective_closure: substep``), driven by the recorded forcing, beside
persistence; paper-convention RMSE at 1, 5 and 10 days and the RMSE of salinity (mean over
levels) and of its top level at 1 day, and of the top level at 5 days.

Run alone: ``python -m benchmarks.run freshwater``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

LEADS = (1, 5, 10)


def _root() -> Path:
    import dataclasses

    from neuralogcm_jax.data.twin import generate_dataset
    from neuralogcm_jax.data.twin_spec import PRESETS

    root = Path(os.environ.get("NEURALOGCM_BENCH_FRESHWATER",
                               Path(tempfile.gettempdir()) / "demo-twin-freshwater"))
    if not (root / "test").is_dir():
        generate_dataset(root, dataclasses.replace(PRESETS["demo"], freshwater=True), seed=0,
                         progress=False)
    return root


def run(quick: bool) -> list[dict]:
    from benchmarks.bench_physics_skill import score_pure_physics
    from neuralogcm_jax.eval.evaluate import evaluate_reference, initial_dates, load_split
    from neuralogcm_jax.model import ModelConfig
    from neuralogcm_jax.physics import PhysicsConfig
    from neuralogcm_jax.physics.primitive_terms import PrimitiveTerms

    root = _root()
    data = load_split(root, "test")
    layout = data.stats.layout
    max_lead = max(LEADS)
    inits = initial_dates(data.n_days, max_lead, 30 if quick else 5)
    where = (f"demo twin with freshwater, test year ({data.grid.describe()}), {len(inits)} "
             f"initial dates every {30 if quick else 5} days")
    s_channels = np.arange(layout.var_slice("S").start, layout.var_slice("S").stop)
    rows = []

    def add(name, r, what, seconds=None):
        s1, s5 = r["rmse_normalised"][0, s_channels], r["rmse_normalised"][4, s_channels]
        for lead in LEADS:
            notes = ""
            if lead == 1:
                notes = (f"{what}; {where}; 1-day S RMSE {np.mean(s1):.4f} (mean over levels), "
                         f"top level {s1[0]:.4f}; 5-day top-level S {s5[0]:.4f}")
                if seconds is not None:
                    notes += f"; {seconds:.0f} s"
            rows.append({"name": f"{name}_{lead}d", "value": float(r["paper_rmse"][lead - 1]),
                         "unit": "paper RMSE", "notes": notes})

    r, _ = evaluate_reference("persistence", data, inits, max_lead)
    add("persistence", r, "reference forecast: persistence")
    for name, terms, what in (
            ("primitive", {}, "primitive mode's pure physics, salt closed (the default)"),
            ("primitive_e_minus_p", {"freshwater_flux": "e_minus_p"},
             "primitive mode's pure physics with freshwater_flux: e_minus_p"),
            ("primitive_substep", {"convective_closure": "substep"},
             "primitive mode with convective_closure: substep (diagnosed every substep between "
             "neighbouring levels, as the truth's), salt closed"),
            ("primitive_substep_e_minus_p",
             {"convective_closure": "substep", "freshwater_flux": "e_minus_p"},
             "primitive mode with convective_closure: substep and freshwater_flux: e_minus_p")):
        t0 = time.perf_counter()
        cfg = PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(**terms))
        r = score_pure_physics(name, ModelConfig(name="neuralogcm", physics=cfg), data.grid,
                               data, inits, max_lead)
        add(name, r, what, time.perf_counter() - t0)
    return rows


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row)
