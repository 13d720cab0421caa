"""`neuralogcm evaluate`: autoregressive forecast skill on a data split.

From many initial dates of a split (default: every 5th day), each model is rolled out to
`max_lead` days driven by the recorded forcing, and scored at every lead against the truth:
RMSE, bias and ACC (against the day-of-year climatology) per variable and level, in physical
units, weighted by cell area x wet mask (see `eval/metrics.py` for the exact aggregation); plus the
paper's convention (RMSE in normalised units averaged over the ocean channels).

Reference forecasts are scored the same way: persistence (the initial state at every lead),
climatology (zero anomaly) and pure physics (the hybrid with its corrector switched off, or, when
no hybrid is evaluated, the default physics).

Outputs in ``--out``: ``metrics.json``, ``metrics.csv`` (one row per model, variable, level, lead),
``report.md``, and PNG plots (``eval/plots.py``); with ``--netcdf`` the rollouts from the first
initial date as netCDF (xarray extra).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from neuralogcm_jax import checkpointing
from neuralogcm_jax.data.h5format import open_dataset
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.errors import ConfigError, DataError, LayoutError
from neuralogcm_jax.eval import plots as eval_plots
from neuralogcm_jax.eval.metrics import SkillAccumulator, area_weights, paper_rmse
from neuralogcm_jax.eval.report import write_report
from neuralogcm_jax.eval.xr import trajectories_to_netcdf
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.layout import OCEAN_3D_VARIABLES, ChannelLayout
from neuralogcm_jax.model import ModelConfig, NeuralOGCM, PurePhysics, build_model
from neuralogcm_jax.rollout import rollout

REFERENCES = ("persistence", "climatology", "physics")


@dataclasses.dataclass
class SplitData:
    """A whole split in memory as normalised anomalies, with its calendar.

    Attributes:
      state: ``[T, n_ocean, H, W]`` ocean anomalies (land 0).
      forcing: ``[T, n_forcing, H, W]`` normalised forcing.
      doy: ``[T]`` day-of-year index of each day (0-based, 365 only on 31 Dec of leap years).
      years: calendar year of each day.
    """

    state: np.ndarray
    forcing: np.ndarray
    doy: np.ndarray
    years: np.ndarray
    stats: Stats
    grid: Grid

    @property
    def n_days(self) -> int:
        return self.state.shape[0]


def load_split(root: str | Path, split: str) -> SplitData:
    """Read and normalise one split (validated first by `open_dataset`)."""
    dr = open_dataset(root, splits=[split])
    stats = dr.load_stats()
    info = dr.split(split)
    n = dr.layout.n_ocean
    states, forcings, doys, years = [], [], [], []
    for yf in tqdm(info.files, desc=f"read {split}", unit="year", leave=False):
        with h5py.File(yf.path, "r") as f:
            x = np.asarray(f["fields"][()], dtype=np.float32)
        for t in range(yf.n_days):
            states.append(stats.physical_to_anomaly(x[t, :n], t))
        forcings.append(stats.normalize_forcing(np.nan_to_num(x[:, n:])).astype(np.float32))
        doys.append(np.arange(yf.n_days, dtype=np.int32))
        years.append(np.full(yf.n_days, yf.year, dtype=np.int32))
    return SplitData(
        state=np.stack(states).astype(np.float32),
        forcing=np.concatenate(forcings),
        doy=np.concatenate(doys),
        years=np.concatenate(years),
        stats=stats,
        grid=dr.grid,
    )


def initial_dates(n_days: int, max_lead: int, every: int) -> np.ndarray:
    """Day indices from which a `max_lead`-day forecast still has truth, every `every` days."""
    last = n_days - 1 - max_lead
    if last < 0:
        raise DataError(
            f"the split has {n_days} days, too few for a {max_lead}-day forecast "
            f"(need at least {max_lead + 1})"
        )
    return np.arange(0, last + 1, max(1, int(every)))


def check_compatible(model, data: SplitData, where: str = "the data") -> None:
    """A model and a dataset on different grids or layouts, or normalised with different
    statistics -> one LayoutError naming what differs, before any compute."""
    checkpointing.check_same_grid(model.grid, model.layout, data.grid, data.stats.layout, where,
                                  f"that of model {model.name}", error=LayoutError)
    if hasattr(model, "clim_harmonics"):  # the models of `neuralogcm_jax.model` carry stats
        own = Stats.build(np.asarray(model.mean[...]), np.asarray(model.std[...]), None,
                          model.grid.wet, model.layout,
                          harmonics=np.asarray(model.clim_harmonics[...]))
        diff = checkpointing.stats_differences(own, data.stats)
        if diff:
            raise LayoutError(f"{where}: normalisation statistics differ from those of model "
                              f"{model.name}: {'; '.join(diff)}")


class _Scorer:
    """Per-lead accumulators in physical units and in normalised units."""

    def __init__(self, data: SplitData, max_lead: int):
        lay = data.stats.layout
        n = lay.n_ocean
        w = area_weights(data.grid.area, data.stats.wet)
        self.phys = SkillAccumulator(w, max_lead)
        self.norm = SkillAccumulator(w, max_lead)
        self.data = data
        self.std = data.stats.std[:n, None, None].astype(np.float64)
        self.mean = data.stats.mean[:n, None, None].astype(np.float64)

    def add(self, lead_idx: int, pred: np.ndarray, days: np.ndarray) -> None:
        """`pred` ``[N, n_ocean, H, W]`` anomalies of the days `days` (``[N]`` indices)."""
        d = self.data
        truth = d.state[days]
        clim = np.stack([d.stats.clim_at(int(k)) for k in d.doy[days]]).astype(np.float64)
        wet = d.stats.wet
        f_phys = np.where(wet, pred * self.std + self.mean + clim, 0.0)
        t_phys = np.where(wet, truth * self.std + self.mean + clim, 0.0)
        self.phys.add(lead_idx, f_phys, t_phys, clim)
        self.norm.add(lead_idx, pred, truth, np.zeros_like(truth))

    def result(self) -> dict[str, np.ndarray]:
        r = self.phys.result()
        rn = self.norm.result()
        return {
            "rmse": r["rmse"], "bias": r["bias"], "acc": r["acc"],
            "rmse_normalised": rn["rmse"], "acc_normalised": rn["acc"],
            "paper_rmse": paper_rmse(rn["rmse"]), "count": r["count"],
        }


def evaluate_forecaster(
    model, data: SplitData, inits: np.ndarray, max_lead: int, batch: int = 4, desc: str = ""
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Score a model; returns (results, trajectory of the first initial date ``[max_lead, n_ocean, H, W]``)."""
    check_compatible(model, data)
    scorer = _Scorer(data, max_lead)
    first_traj = None
    bar = tqdm(total=len(inits) * max_lead, desc=desc or model.name, unit="day", leave=False)
    for s in range(0, len(inits), batch):
        t0 = inits[s : s + batch]
        idx = t0[:, None] + np.arange(max_lead + 1)[None]
        state0 = jnp.asarray(data.state[t0])
        forc = jnp.asarray(data.forcing[idx[:, 1:]])
        doys = jnp.asarray(data.doy[idx])
        traj = np.asarray(rollout(model, state0, forc, max_lead, doys=doys))
        if first_traj is None:
            first_traj = traj[0]
        for k in range(max_lead):
            scorer.add(k, traj[:, k], idx[:, k + 1])
        bar.update(len(t0) * max_lead)
    bar.close()
    return scorer.result(), first_traj


def evaluate_reference(
    kind: str, data: SplitData, inits: np.ndarray, max_lead: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Persistence or climatology, scored like a model."""
    if kind not in ("persistence", "climatology"):
        raise ConfigError(f"reference must be 'persistence' or 'climatology', got {kind!r}")

    def predict(lead_idx: int) -> np.ndarray:
        return data.state[inits] if kind == "persistence" else np.zeros_like(data.state[inits])

    return score_predictions(data, inits, predict, max_lead)


def score_predictions(
    data: SplitData, inits: np.ndarray, predict, max_lead: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Score forecasts made outside a model, like a model: ``predict(k)`` gives the anomalies
    ``[N, n_ocean, H, W]`` forecast for the days ``inits + k + 1``. Returns (results, the first
    initial date's trajectory ``[max_lead, n_ocean, H, W]``)."""
    scorer = _Scorer(data, max_lead)
    first = []
    for k in range(max_lead):
        pred = predict(k)
        scorer.add(k, pred, inits + k + 1)
        first.append(pred[0])
    return scorer.result(), np.stack(first)


def pure_physics_model(models: dict[str, Any], data: SplitData):
    """The first evaluated hybrid's physics alone (`model.PurePhysics`: its corrector never
    runs, equal bit for bit to the hybrid with a zero corrector), or the default physics if no
    hybrid is evaluated."""
    hybrid = next((m for m in models.values() if isinstance(m, NeuralOGCM)), None)
    if hybrid is None:
        hybrid = build_model(ModelConfig(name="neuralogcm"), data.grid, data.stats)
    return PurePhysics.of(hybrid)


def variable_rows(layout: ChannelLayout) -> list[tuple[str, int, float, int]]:
    """(variable, level index, depth m, channel) for every ocean channel."""
    rows = []
    for v in OCEAN_3D_VARIABLES:
        for k, d in enumerate(layout.depths_m):
            rows.append((v, k, d, layout.channel(v, k)))
    rows.append(("SSH", 0, 0.0, layout.channel("SSH")))
    return rows


def write_outputs(
    out: Path, results: dict[str, dict], layout: ChannelLayout, meta: dict
) -> dict[str, Path]:
    """metrics.json and metrics.csv; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rows = variable_rows(layout)
    js = {"meta": meta, "models": {}}
    for name, r in results.items():
        per_var = {}
        for v, k, d, c in rows:
            per_var.setdefault(v, []).append(
                {"level": k, "depth_m": d, "rmse": r["rmse"][:, c].tolist(),
                 "bias": r["bias"][:, c].tolist(), "acc": r["acc"][:, c].tolist(),
                 "rmse_normalised": r["rmse_normalised"][:, c].tolist()}
            )
        js["models"][name] = {"paper_rmse": r["paper_rmse"].tolist(), "variables": per_var}
    paths = {"json": out / "metrics.json", "csv": out / "metrics.csv"}
    paths["json"].write_text(json.dumps(js, indent=1, allow_nan=True))
    with paths["csv"].open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["model", "variable", "level", "depth_m", "lead_days", "rmse", "bias", "acc",
                     "rmse_normalised"])
        for name, r in results.items():
            for v, k, d, c in rows:
                for lead in range(r["rmse"].shape[0]):
                    wr.writerow([name, v, k, f"{d:g}", lead + 1, f"{r['rmse'][lead, c]:.6g}",
                                 f"{r['bias'][lead, c]:.6g}", f"{r['acc'][lead, c]:.6g}",
                                 f"{r['rmse_normalised'][lead, c]:.6g}"])
    return paths


def run_evaluation(
    models: dict[str, Any],
    data_root: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    max_lead: int = 120,
    init_every: int = 5,
    references: tuple[str, ...] = REFERENCES,
    batch: int = 4,
    netcdf: bool = False,
    plots: bool = True,
    training_logs: dict[str, Path] | None = None,
    report_sections: Any = None,
) -> dict[str, Any]:
    """Evaluate `models` (name -> Forecaster) and the references; write every output file.

    `report_sections`: markdown lines for the top of report.md, or a function
    ``(results, meta) -> lines`` called once the scores are known.

    Returns ``{"results": name -> metrics, "files": [paths], "meta": ...}``."""
    out = Path(out)
    data = load_split(data_root, split)
    for m in models.values():
        check_compatible(m, data, f"data root {str(data_root)!r}")
    max_lead = int(min(max_lead, data.n_days - 1))
    inits = initial_dates(data.n_days, max_lead, init_every)
    results, first = {}, {}
    t_start = time.perf_counter()
    for name, m in models.items():
        results[name], first[name] = evaluate_forecaster(m, data, inits, max_lead, batch, name)
    elapsed = time.perf_counter() - t_start
    for ref in references:
        if ref == "physics":
            pm = pure_physics_model(models, data)
            results["physics"], first["physics"] = evaluate_forecaster(
                pm, data, inits, max_lead, batch, "pure physics"
            )
        else:
            results[ref], first[ref] = evaluate_reference(ref, data, inits, max_lead)
    meta = {
        "data_root": str(data_root), "split": split, "max_lead_days": max_lead,
        "init_every_days": init_every, "n_initial_dates": int(len(inits)),
        "grid": data.grid.describe(),
        "aggregation": "RMSE = sqrt(mean over initial dates of area x wet weighted spatial MSE); "
        "bias and ACC = mean over initial dates of weighted spatial values; physical units; "
        "paper_rmse = mean over ocean channels of normalised-unit RMSE",
        "throughput_init_lead_days_per_s": float(len(inits) * max_lead * max(1, len(models))
                                                 / max(elapsed, 1e-9)),
    }
    files = list(write_outputs(out, results, data.stats.layout, meta).values())
    if plots:
        files += eval_plots.plot_skill(out, results, data.stats.layout)
        truth = data.state[inits[0] + 1 : inits[0] + max_lead + 1]
        files += eval_plots.plot_maps(out, first, truth, data, inits[0])
        if training_logs:
            files += eval_plots.plot_training(out, training_logs)
    if netcdf:
        files.append(trajectories_to_netcdf(out / "rollouts.nc", first, data, inits[0]))
    extra = report_sections(results, meta) if callable(report_sections) else report_sections
    files.append(write_report(out, results, meta, data.stats.layout, files, extra))
    return {"results": results, "files": files, "meta": meta}
