"""PNG plots of an evaluation: skill vs lead, maps of truth/forecast/error, learned coefficients.

matplotlib (the `plot` extra) with the Agg backend; every function returns the paths it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neuralogcm_jax.layout import UNITS, ChannelLayout

# Surface variables shown in the skill plots: (label, variable, level).
SURFACE = (("SST", "T", 0), ("SSS", "S", 0), ("surface U", "U", 0), ("surface V", "V", 0),
           ("SSH", "SSH", 0))
# metrics.jsonl keys of learned physics coefficients (e.g. "nu_m_m2_s", "kappa_v_m2_s")
COEFFICIENT_PREFIXES = ("nu_", "kappa_", "heat_", "drag_", "bottom_")
_STYLE = {"persistence": ("0.5", "--"), "climatology": ("0.3", ":"), "physics": ("tab:brown", "-.")}


def _plt():
    import matplotlib  # optional dependency (the `plot` extra): imported only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close `fig`; returns `path`."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def plot_skill(out: Path, results: dict[str, dict], layout: ChannelLayout) -> list[Path]:
    """rmse_vs_lead.png and acc_vs_lead.png (surface variables) and paper_rmse_vs_lead.png."""
    plt = _plt()
    paths = []
    for metric, fname, ylabel in (("rmse", "rmse_vs_lead.png", "RMSE"),
                                  ("acc", "acc_vs_lead.png", "ACC")):
        fig, axes = plt.subplots(1, len(SURFACE), figsize=(4 * len(SURFACE), 3.4), squeeze=False)
        for ax, (label, var, lev) in zip(axes[0], SURFACE):
            c = layout.channel(var, lev)
            for name, r in results.items():
                color, ls = _STYLE.get(name, (None, "-"))
                y = r[metric][:, c]
                ax.plot(np.arange(1, len(y) + 1), y, label=name, color=color, ls=ls)
            unit = f" ({UNITS[var]})" if metric == "rmse" else ""
            ax.set_title(f"{label}{unit}")
            ax.set_xlabel("lead (days)")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(ylabel)
        axes[0, -1].legend(fontsize=8)
        p = _save(fig, out / fname, 110)
        paths.append(p)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        color, ls = _STYLE.get(name, (None, "-"))
        y = r["paper_rmse"]
        ax.plot(np.arange(1, len(y) + 1), y, label=name, color=color, ls=ls)
    ax.set_xlabel("lead (days)")
    ax.set_ylabel("RMSE, normalised units, mean over channels")
    ax.set_title("Paper convention")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    p = _save(fig, out / "paper_rmse_vs_lead.png", 110)
    return paths + [p]


def plot_maps(out: Path, trajectories: dict[str, np.ndarray], truth: np.ndarray, data, init: int,
              leads=(10, 30, 90)) -> list[Path]:
    """maps_SST.png and maps_SSH.png: truth, each model's forecast and its error at `leads`.

    `trajectories[name]` and `truth` are ``[max_lead, n_ocean, H, W]`` anomalies from day `init`."""
    plt = _plt()
    lay = data.stats.layout
    leads = [k for k in leads if k <= truth.shape[0]] or [truth.shape[0]]
    names = [k for k in trajectories if k not in ("climatology",)]
    lat, lon = data.grid.lat, data.grid.lon
    extent = [lon[0], lon[-1], lat[-1], lat[0]] if data.grid.north_to_south else \
        [lon[0], lon[-1], lat[0], lat[-1]]
    paths = []
    for label, var in (("SST", "T"), ("SSH", "SSH")):
        c = lay.channel(var, 0)
        fig, axes = plt.subplots(len(leads), 1 + 2 * len(names),
                                 figsize=(3.2 * (1 + 2 * len(names)), 2.2 * len(leads)),
                                 squeeze=False)
        for i, lead in enumerate(leads):
            day = init + lead
            clim = data.stats.clim_at(int(data.doy[day]))[c]
            std, mean = data.stats.std[c], data.stats.mean[c]
            wet = data.stats.wet[c]

            def phys(a):
                return np.where(wet, a * std + mean + clim, np.nan)

            t = phys(truth[lead - 1, c])
            vmin, vmax = np.nanpercentile(t, [2, 98])
            ax = axes[i, 0]
            im = ax.imshow(t, extent=extent, vmin=vmin, vmax=vmax, cmap="RdYlBu_r", aspect="auto")
            ax.set_title(f"truth, day {lead}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
            for j, name in enumerate(names):
                f = phys(trajectories[name][lead - 1, c])
                e = f - t
                lim = np.nanpercentile(np.abs(e), 98) + 1e-12
                ax = axes[i, 1 + 2 * j]
                im = ax.imshow(f, extent=extent, vmin=vmin, vmax=vmax, cmap="RdYlBu_r", aspect="auto")
                ax.set_title(f"{name}, day {lead}", fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046)
                ax = axes[i, 2 + 2 * j]
                im = ax.imshow(e, extent=extent, vmin=-lim, vmax=lim, cmap="RdBu_r", aspect="auto")
                ax.set_title(f"{name} error ({UNITS[var]})", fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{label} ({UNITS[var]}): truth vs forecast vs error")
        p = _save(fig, out / f"maps_{label}.png", 100)
        paths.append(p)
    return paths


def plot_training(out: Path, logs: dict[str, Path]) -> list[Path]:
    """training.png: training/validation loss and the learned coefficients (SI) vs step, read from
    each run's metrics.jsonl (lines with "step", "loss", optional "val_loss", and the learned
    coefficients as "<name>_<unit>" keys such as "nu_m_m2_s")."""
    plt = _plt()
    fig, (ax_l, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    any_coef = False
    for name, path in logs.items():
        path = Path(path)
        if not path.is_file():
            continue
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        tr = [(r["step"], r["loss"]) for r in recs if "loss" in r and "step" in r]
        va = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r and "step" in r]
        if tr:
            ax_l.semilogy(*zip(*tr), label=f"{name} train", alpha=0.8)
        if va:
            ax_l.semilogy(*zip(*va), "o-", label=f"{name} valid")
        coef_keys = sorted({k for r in recs for k in r if k.startswith(COEFFICIENT_PREFIXES)})
        for k in coef_keys:
            pts = [(r["step"], r[k]) for r in recs if k in r and np.ndim(r[k]) == 0]
            if pts:
                any_coef = True
                ax_c.semilogy(*zip(*pts), label=f"{name} {k}")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("loss (normalised MSE)")
    ax_l.legend(fontsize=8)
    ax_l.grid(alpha=0.3)
    ax_c.set_xlabel("step")
    ax_c.set_ylabel("coefficient (SI)")
    ax_c.set_title("learned physics coefficients")
    if any_coef:
        ax_c.legend(fontsize=8)
    ax_c.grid(alpha=0.3)
    p = _save(fig, out / "training.png", 110)
    return [p]
