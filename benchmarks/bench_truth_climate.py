"""The twin truth's surface climate: a year of the `demo` preset's truth (primitive mode, 3 deg x
23 levels on the embedded world, from Levitus at rest, 1986 forcing) with each surface heat-flux
target (`TruthSpec.heat_target`), its sea surface temperature against the COADS climatology.

Rows, for each target ("offset", the default: the air temperature plus the day's climatological
SST - t2m offset; "t2m": the air temperature itself):
* ``sst_bias_q1`` ... ``sst_bias_q4`` (K): area-weighted mean of ``SST - sst_clim`` over the
  wet top cells of the truth grid, averaged over each quarter of the run;
* ``sst_rms_final`` (K): its area-weighted RMS on the last day;
* ``freezing_area_mean`` / ``freezing_area_max`` (%): the share of the ocean's area whose top
  cell is at its freezing point ``-0.054 S`` (the clamp of a sea with no ice model);
* ``truth_year_s`` (s): wall time of the run (after compilation).

Run alone: ``python -m benchmarks.bench_truth_climate [--quick]`` (quick: 60 days).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np


def run(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from neuralogcm_jax.data import twin_truth
    from neuralogcm_jax.data.forcing import ForcingSynthesizer
    from neuralogcm_jax.data.twin_spec import PRESETS

    days = 60 if quick else 365
    rows = []
    for target in ("offset", "t2m"):
        spec = PRESETS["demo"]
        spec = dataclasses.replace(spec, truth=dataclasses.replace(spec.truth, heat_target=target))
        truth = twin_truth.make_truth(spec)
        g = truth.world.grid
        yf = ForcingSynthesizer(truth.world, 0, spec.noise).year(1986, n_days=days)
        sst_target = yf.sst_clim + (yf.forcing[:, 2] - yf.t2m_clim)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), truth.world.initial_state())
        day = jax.jit(lambda s, f, t: jax.lax.fori_loop(
            0, truth.n_substeps, lambda i, x: truth.substep(x, (f, t)), s))
        wet = np.asarray(g.wet[0], np.float64)
        area = np.broadcast_to(np.asarray(g.area, np.float64)[:, None], g.shape) * wet
        w = area / area.sum()
        bias, rms, frz = [], [], []
        jax.block_until_ready(day(state, jnp.asarray(yf.forcing[0]), jnp.asarray(sst_target[0])))
        t0 = time.perf_counter()
        for d in tqdm(range(days), desc=f"truth year, heat_target={target}", unit="day"):
            state = day(state, jnp.asarray(yf.forcing[d]), jnp.asarray(sst_target[d]))
            top_t, top_s = np.asarray(state.T[0], np.float64), np.asarray(state.S[0], np.float64)
            err = (top_t - yf.sst_clim[d]) * wet
            bias.append((w * err).sum())
            rms.append(np.sqrt((w * err**2).sum()))
            frz.append(100 * (w * (top_t <= -0.054 * top_s + 1e-3)).sum())
        seconds = time.perf_counter() - t0
        note = (f"heat_target={target}; demo truth {g.shape[0]}x{g.shape[1]}x{g.n_levels} "
                f"(3 deg), {days} days of 1986 from Levitus at rest; area-weighted over the "
                "wet top cells")
        q = days // 4
        for i in range(4):
            rows.append({"name": f"{target}_sst_bias_q{i + 1}",
                         "value": float(np.mean(bias[i * q:(i + 1) * q])), "unit": "K",
                         "notes": note + f"; SST - sst_clim, mean of days {i * q}-{(i + 1) * q - 1}"})
        rows += [
            {"name": f"{target}_sst_rms_final", "value": float(rms[-1]), "unit": "K",
             "notes": note + "; RMS of SST - sst_clim on the last day"},
            {"name": f"{target}_freezing_area_mean", "value": float(np.mean(frz)), "unit": "%",
             "notes": note + "; top cell at -0.054 S, mean over the days"},
            {"name": f"{target}_freezing_area_max", "value": float(np.max(frz)), "unit": "%",
             "notes": note + "; the largest day"},
            {"name": f"{target}_truth_year_s", "value": seconds, "unit": "s",
             "notes": note + "; wall time after compilation, one day per call"},
        ]
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv[1:]):
        print(f"{row['name']:28s} {row['value']:12.4g} {row['unit']:6s} {row['notes']}")
