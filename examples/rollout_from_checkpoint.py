# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Roll a trained model out for 90 days and look at its SST
#
# A notebook in jupytext's percent format (open it in Jupyter with jupytext, or run it as a
# script). It loads a model from a training checkpoint or an export folder, rolls it out with the
# functional API from the first day of the test year, driven by the recorded forcing, and plots
# sea surface temperature against the truth.
#
# Paths come from the environment so the test suite can run it on a tiny checkpoint:
# `NEURALOGCM_CHECKPOINT` (default: the demo's NeuralOGCM run), `NEURALOGCM_DATA` (default: the
# demo dataset), `NEURALOGCM_EXAMPLE_OUT` (where the PNG goes, default: here).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from neuralogcm_jax.eval.evaluate import load_split
from neuralogcm_jax.rollout import load_model, rollout

CHECKPOINT = os.environ.get("NEURALOGCM_CHECKPOINT", "demo_output/runs/neuralogcm/checkpoints")
DATA = os.environ.get("NEURALOGCM_DATA", "demo_output/data")
OUT = Path(os.environ.get("NEURALOGCM_EXAMPLE_OUT", "."))
DAYS = 90

# %% [markdown]
# `load_model` rebuilds the model from the configuration stored with the checkpoint.

# %%
model = load_model(CHECKPOINT)
test = load_split(DATA, "test")
print(model.name, model.grid.describe(), "| test days:", test.n_days)

# %% [markdown]
# One `lax.scan` over 90 days. States are normalised anomalies `[channel, lat, lon]`; `doys`
# carries the calendar so the climatology of each day is the right one.

# %%
t0 = 0
traj = rollout(model, test.state[t0], test.forcing[t0 + 1 : t0 + 1 + DAYS], DAYS,
               doys=test.doy[None, t0 : t0 + DAYS + 1])
traj = np.asarray(traj)
print("trajectory:", traj.shape, "finite:", bool(np.isfinite(traj).all()))

# %% [markdown]
# Back to physical units (degC) with the day-of-year climatology, land masked.

# %%
stats, layout = test.stats, test.stats.layout
c = layout.channel("T", 0)


def sst(anomaly, day):
    x = anomaly[c] * stats.std[c] + stats.mean[c] + stats.clim_at(int(test.doy[day]))[c]
    return np.where(stats.wet[c], x, np.nan)


leads = [1, 30, DAYS]
fig, axes = plt.subplots(2, len(leads), figsize=(4 * len(leads), 5), squeeze=False)
for j, lead in enumerate(leads):
    f, t = sst(traj[lead - 1], t0 + lead), sst(test.state[t0 + lead], t0 + lead)
    lo, hi = np.nanpercentile(t, [2, 98])
    axes[0, j].imshow(f, vmin=lo, vmax=hi, cmap="RdYlBu_r")
    axes[0, j].set_title(f"{model.name}, day {lead}")
    axes[1, j].imshow(t, vmin=lo, vmax=hi, cmap="RdYlBu_r")
    axes[1, j].set_title(f"truth, day {lead}")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("SST (degC)")
fig.tight_layout()
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "example_sst.png", dpi=90)
err = np.sqrt(np.nanmean((sst(traj[DAYS - 1], t0 + DAYS) - sst(test.state[t0 + DAYS], t0 + DAYS)) ** 2))
print(f"SST RMSE after {DAYS} days (unweighted): {err:.3f} degC")
