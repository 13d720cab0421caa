"""Twin v2 generation time per simulated year, for the `demo` and the `twin` (1.5 deg) presets.

`make-data` (`neuralogcm_jax.data.twin.generate_dataset`) runs the primitive-equation truth day by
day, coarse-grains its daily means onto the model grid and writes one HDF5 file per year. Its own
timing (``spec.json``: spin-up, years, seconds per simulated year of the written years) is what
this module records:

- ``demo``: the whole preset (6 deg x 23 levels from a 3 deg truth; 90 spin-up days and 4 years),
  as `make demo` generates it.
- ``twin``: the 1.5 deg x 23-level preset (the truth on the model grid itself) shortened to one
  written year (1982, as training) after 30 spin-up days; about 4 GB of HDF5 in the system
  temporary directory, removed afterwards. The full preset (365 spin-up days and 11 years) is
  extrapolated from it.

``--quick``: the demo preset shortened to one year after 10 spin-up days (no 1.5 deg run).
On request only (``python -m benchmarks.run twin``): the 1.5 deg year takes about 10 minutes and
4 GB of disk on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path


def _generate(spec, label: str) -> dict:
    from neuralogcm_jax.data.twin import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-twin-{label}-"))
    try:
        out = tmp / "data"
        t0 = time.perf_counter()
        generate_dataset(out, spec, seed=0, progress=False)
        wall = time.perf_counter() - t0
        timing = json.loads((out / "spec.json").read_text())["timing"]
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return timing | {"wall_s": wall, "bytes": size}


def run(quick: bool) -> list[dict]:
    from neuralogcm_jax.calendar import days_in_year
    from neuralogcm_jax.data.twin_spec import PRESETS

    rows = []
    demo = PRESETS["demo"]
    if quick:
        demo = dataclasses.replace(demo, train_years=(1983,), valid_years=(), test_years=(),
                                   spinup_days=10)
    cases = [("demo", demo, "the whole demo preset" if not quick else
              "the demo preset shortened to 1983 after 10 spin-up days")]
    if not quick:
        cases.append(("twin", dataclasses.replace(
            PRESETS["twin"], train_years=(1982,), valid_years=(), test_years=(), spinup_days=30),
            "the twin preset shortened to 1982 (train) after 30 spin-up days"))
    for label, spec, what in cases:
        t = _generate(spec, label)
        truth_deg = spec.truth.resolution_deg or spec.resolution_deg
        grid = (f"{spec.resolution_deg:g} deg x {spec.n_levels} levels from a {truth_deg:g} deg "
                f"{spec.truth.mode} truth (substep {spec.truth.dt_s:g} s)")
        n_days = sum(days_in_year(y) for y in spec.years)
        rows.append({
            "name": f"{label}_s_per_simulated_year", "value": float(t["s_per_simulated_year"]),
            "unit": "s",
            "notes": f"{what}; {grid}; {n_days} written days in {t['years_s']:.0f} s "
                     f"(run, coarse-grain, write), spin-up {spec.spinup_days} days in "
                     f"{t['spinup_s']:.0f} s; {t['bytes'] / 1e9:.2f} GB written; "
                     f"{t['cpu_s']:.0f} CPU-s; load average {t['load_average']:.1f} at the end",
        })
        rows.append({"name": f"{label}_total", "value": float(t["wall_s"]), "unit": "s",
                     "notes": f"{what}: generate_dataset from the call to its return (compile, "
                              "spin-up, years, statistics)"})
        full = PRESETS[label]
        if spec != full:
            # The same rate a day for spin-up and years; the rest of the run (compile,
            # statistics) is counted once.
            per_day = t["s_per_simulated_year"] / 365.25
            overhead = t["wall_s"] - (n_days + spec.spinup_days) * per_day
            full_days = sum(days_in_year(y) for y in full.years)
            est = (full_days + full.spinup_days) * per_day + max(overhead, 0.0)
            rows.append({
                "name": f"{label}_full_preset_estimate", "value": est / 60.0, "unit": "min",
                "notes": f"the whole {label} preset ({full.spinup_days} spin-up days, "
                         f"{len(full.years)} years) extrapolated from the rates above; "
                         f"about {t['bytes'] / n_days * full_days / 1e9:.0f} GB",
            })
    return rows
