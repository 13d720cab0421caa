"""A long free-running rollout, checked for stability and drift (`neuralogcm rollout`).

From day `start` of a split, the model runs for `days` days driven by that split's recorded
forcing, repeated year after year when the run is longer than the split (day of year kept in step
with the calendar of the forcing). Every day it records, in physical units over wet cells:
global (volume-weighted) mean T and S, SST range, max |u|, |v| and |SSH|. The run is
physically bounded when T stays within [-2.5, 35] degC, |u|, |v| < 3 m/s and |SSH| < 3 m.

`write_outputs` writes into a folder: ``rollout_diagnostics.csv`` (one row a day), ``rollout_summary.json`` (bounds,
first violation, drift of global mean T and S per year from a linear fit) and
``rollout_diagnostics.png``. The command exits with status 1 when the run leaves the bounds or
turns non-finite.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from neuralogcm_jax.checkpointing import read_config
from neuralogcm_jax.rollout import rollout

BOUNDS = {"T_min": -2.5, "T_max": 35.0, "speed_max": 3.0, "ssh_max": 3.0}


def daily_diagnostics(traj: np.ndarray, doys: np.ndarray, stats, grid) -> list[dict]:
    """``[N, n_ocean, H, W]`` anomalies -> one dict of physical diagnostics per day."""
    lay = stats.layout
    wet = np.asarray(grid.wet)
    vol = grid.cell_volume * wet  # [L, H, W]
    vol_sum = vol.sum()
    out = []
    n = lay.n_ocean
    for a, d in zip(traj, doys):
        x = a * stats.std[:n, None, None] + stats.mean[:n, None, None] + stats.clim_at(int(d))
        st = lay.to_state(x)
        T, S = st.T, st.S
        out.append({
            "T_mean": float((T * vol).sum() / vol_sum),
            "S_mean": float((S * vol).sum() / vol_sum),
            "T_min": float(T[wet].min()), "T_max": float(T[wet].max()),
            "sst_min": float(T[0][wet[0]].min()), "sst_max": float(T[0][wet[0]].max()),
            "u_max": float(np.abs(st.u[wet]).max()), "v_max": float(np.abs(st.v[wet]).max()),
            "ssh_max": float(np.abs(st.ssh[wet[0]]).max()),
            "finite": bool(np.isfinite(a).all()),
        })
    return out


def violation(row: dict) -> str | None:
    if not row["finite"]:
        return "non-finite state"
    if row["T_min"] < BOUNDS["T_min"] or row["T_max"] > BOUNDS["T_max"]:
        return f"T out of [{BOUNDS['T_min']}, {BOUNDS['T_max']}] degC: {row['T_min']:.2f}..{row['T_max']:.2f}"
    if max(row["u_max"], row["v_max"]) >= BOUNDS["speed_max"]:
        return f"speed {max(row['u_max'], row['v_max']):.2f} m/s >= {BOUNDS['speed_max']}"
    if row["ssh_max"] >= BOUNDS["ssh_max"]:
        return f"|SSH| {row['ssh_max']:.2f} m >= {BOUNDS['ssh_max']}"
    return None


def long_rollout(model, data, days: int, start: int = 0, chunk: int = 30, progress: bool = True):
    """Run `days` days from day `start` of `data` (an `eval.evaluate.SplitData`), in chunks of
    `chunk` days (each one compiled `lax.scan`). Returns (rows, first violation or None)."""
    T = data.n_days
    state = jnp.asarray(data.state[start])[None]
    rows: list[dict] = []
    bad = None
    done = 0
    bar = tqdm(total=days, desc=f"rollout {model.name}", unit="day", disable=not progress)
    while done < days:
        n = min(chunk, days - done)
        idx = (start + done + np.arange(n + 1)) % T
        forc = jnp.asarray(data.forcing[idx[1:]])[None]
        doys = jnp.asarray(data.doy[idx])[None]
        traj = rollout(model, state, forc, n, doys=doys)
        arr = np.asarray(traj[0])
        for r in daily_diagnostics(arr, data.doy[idx[1:]], data.stats, data.grid):
            r["day"] = len(rows) + 1
            rows.append(r)
            if bad is None and (v := violation(r)):
                bad = {"day": r["day"], "reason": v}
        state = traj[:, -1]
        done += n
        bar.update(n)
        bar.set_postfix(T=f"{rows[-1]['T_mean']:.3f}", S=f"{rows[-1]['S_mean']:.3f}")
        if bad is not None and not rows[-1]["finite"]:
            break
    bar.close()
    return rows, bad


def drift_per_year(rows: list[dict], key: str) -> float:
    """Slope of a least-squares line through the daily global means, per 365.25 days."""
    y = np.array([r[key] for r in rows if r["finite"]])
    if y.size < 2:
        return float("nan")
    t = np.arange(y.size)
    return float(np.polyfit(t, y, 1)[0] * 365.25)


def summarize(model_name: str, rows: list[dict], bad: dict | None, days_asked: int) -> dict:
    """The run's summary (``rollout_summary.json``): bounds, first violation, drift, last day."""
    return {
        "model": model_name, "days_run": len(rows), "days_asked": days_asked, "bounds": BOUNDS,
        "bounded": bad is None, "first_violation": bad,
        "drift_T_degC_per_year": drift_per_year(rows, "T_mean"),
        "drift_S_psu_per_year": drift_per_year(rows, "S_mean"),
        "final": rows[-1],
    }


def write_outputs(out: Path, rows: list[dict], summary: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    p_csv = out / "rollout_diagnostics.csv"
    with p_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["day"] + [k for k in rows[0] if k != "day"])
        w.writeheader()
        w.writerows(rows)
    p_json = out / "rollout_summary.json"
    p_json.write_text(json.dumps(summary, indent=1))
    import matplotlib  # optional dependency (the `plot` extra): imported only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = [r["day"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(d, [r["T_mean"] for r in rows])
    axes[0].set_title("global mean T (degC)")
    axes[1].plot(d, [r["S_mean"] for r in rows])
    axes[1].set_title("global mean S (psu)")
    axes[2].plot(d, [max(r["u_max"], r["v_max"]) for r in rows], label="max |u|,|v| (m/s)")
    axes[2].plot(d, [r["ssh_max"] for r in rows], label="max |SSH| (m)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    p_png = out / "rollout_diagnostics.png"
    fig.savefig(p_png, dpi=100)
    plt.close(fig)
    return [p_csv, p_json, p_png]


def data_root_of(path) -> str:
    """The data root a checkpoint (or export folder) was trained on, from its stored config
    (as given to the trainer: a relative path is relative to the trainer's directory)."""
    return str((read_config(path).get("data") or {}).get("root", "data"))
