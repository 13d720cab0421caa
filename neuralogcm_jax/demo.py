"""The demo (`neuralogcm demo`, `run_demo`): the main job on the embedded default world, end to end.

1. build the demo twin dataset (`make-data --preset demo`: 6 deg x 23 levels coarse-grained from
   a 3 deg primitive-equation truth, 2 training years, one validation and one held-out test
   year) unless it is already there;
2. train NeuralOGCM (physics + STE corrector) and one baseline (U-Net) briefly (configs/demo.yaml);
3. evaluate both, with persistence, climatology and pure physics as references, on the test year;
4. write ``OUT/report.md`` with its plots and a verdict at every lead: where NeuralOGCM beats the
   baseline and every reference (persistence, climatology, pure physics), and where it loses.

Every stage shows progress; re-running reuses a finished dataset (``--fresh`` rebuilds everything).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from neuralogcm_jax.data.h5format import open_dataset
from neuralogcm_jax.data.twin import generate_dataset
from neuralogcm_jax.errors import DataError, StateError
from neuralogcm_jax.eval.evaluate import run_evaluation
from neuralogcm_jax.rollout import load_model
from neuralogcm_jax.train import config as config_lib
from neuralogcm_jax.train.loop import check_config, train
from neuralogcm_jax.train.state import physics_si


def _note(msg: str, progress: bool) -> None:
    """A progress message (beside the tqdm bars, shown only with `progress`)."""
    if progress:
        tqdm.write(msg)


def _dataset(out: Path, fresh: bool, seed: int, progress: bool) -> Path:
    root = out / "data"
    if root.exists() and not fresh:
        try:
            open_dataset(root)
            _note(f"reusing the dataset in {root}", progress)
            return root
        except DataError as e:
            _note(f"rebuilding the dataset ({e})", progress)
    return generate_dataset(root, "demo", seed=seed, overwrite=True, progress=progress)


def _config(name: str, root: Path, run_dir: Path, overrides: list[str]):
    """The training config of model `name`: configs/demo.yaml <- the run's keys <- `overrides`,
    value-checked (`ConfigError` naming the key)."""
    cfg = config_lib.load_config(
        config_lib.CONFIG_DIR / "demo.yaml",
        [f"model.name={name}", f"data.root={root}", f"train.out_dir={run_dir}", *overrides],
    )
    check_config(cfg)
    return cfg


def _train(name: str, root: Path, run_dir: Path, overrides: list[str], progress: bool):
    cfg = _config(name, root, run_dir, overrides)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    res = train(cfg, progress=progress)
    _note(f"{name}: {res.step} steps ({res.skipped} skipped) in {time.perf_counter() - t0:.0f} s",
          progress)
    check_trained(name, res, cfg.optim.trainable, run_dir)
    return run_dir


def check_trained(name: str, res, trainable: str, run_dir: Path) -> None:
    """A `train` result the demo may report on: every update applied and, when the physics was
    trainable, every learnable physics coefficient moved; else a `StateError` naming the
    parameter groups. The demo is the main job and CI runs it: a model trained with skipped
    updates, or whose physics the loss never reached, is not the model the report describes."""
    if res.skipped:
        groups = {g: n for g, n in res.skipped_by_group.items() if n}
        raise StateError(
            f"{name}: {res.skipped} of {res.step} training updates were skipped (non-finite loss "
            f"or gradient; by parameter group: {groups or 'loss only'}); see {run_dir}/metrics.jsonl"
        )
    if trainable in ("all", "physics"):
        # every update applied, yet a coefficient that never moved had a zero gradient
        final = physics_si(res.graphdef, res.train_state)
        # per-level coefficients: every level must have moved
        still = sorted(k for k, v in res.physics_start.items()
                       if np.any(np.asarray(v) == np.asarray(final[k])))
        if still:
            raise StateError(
                f"{name}: after {res.step} applied updates the physics coefficient(s) "
                f"{', '.join('physics_params.' + k for k in still)} never moved from their "
                f"start at every level (a zero gradient); see {run_dir}/metrics.jsonl"
            )


def _ranges(leads: list[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``."""
    out, i = [], 0
    while i < len(leads):
        j = i
        while j + 1 < len(leads) and leads[j + 1] == leads[j] + 1:
            j += 1
        out.append(str(leads[i]) if i == j else f"{leads[i]}-{leads[j]}")
        i = j + 1
    return ", ".join(out)


def verdict(results: dict, hybrid: str = "neuralogcm") -> dict:
    """At every lead: is the hybrid's paper-convention RMSE below every other forecast's?

    Returns ``{"leads": [...], "wins": [...], "losses": {lead: [forecasts better than the
    hybrid]}, "best": [name per lead]}``; every forecast in `results` (the baseline and the
    references persistence, climatology and pure physics) counts."""
    names = sorted(results)
    scores = {k: np.asarray(results[k]["paper_rmse"], np.float64) for k in names}
    n_leads = min(len(v) for v in scores.values())
    leads = list(range(1, n_leads + 1))
    wins, losses, best = [], {}, []
    for lead in leads:
        h = scores[hybrid][lead - 1]
        better = [k for k in names if k != hybrid and not scores[k][lead - 1] > h]
        best.append(min(names, key=lambda k: scores[k][lead - 1]))
        if better:
            losses[lead] = better
        else:
            wins.append(lead)
    return {"leads": leads, "wins": wins, "losses": losses, "best": best}


def verdict_lines(results: dict, meta: dict, hybrid: str = "neuralogcm") -> list[str]:
    """The demo's claim, checked at every lead: NeuralOGCM against the baseline and against
    persistence, climatology and pure physics, saying plainly where it loses."""
    v = verdict(results, hybrid)
    leads, n = v["leads"], len(v["leads"])
    lines = [f"## Demo verdict (held-out test year, leads 1-{n} days)", ""]
    if len(v["wins"]) == n:
        lines.append(f"NeuralOGCM has the lowest paper-convention RMSE at **every** lead (1-{n} d).")
    else:
        lines.append(
            f"NeuralOGCM has the lowest paper-convention RMSE at {len(v['wins'])} of {n} leads"
            + (f" ({_ranges(v['wins'])} d)" if v["wins"] else "")
            + f" and **loses** at {n - len(v['wins'])} ({_ranges(sorted(v['losses']))} d)."
        )
        others = sorted({k for ks in v["losses"].values() for k in ks})
        for k in others:
            at = sorted(lead for lead, ks in v["losses"].items() if k in ks)
            lines.append(f"- {k} is as good or better at {len(at)} leads: {_ranges(at)} d")
    lines.append("")
    shown = [d for d in (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 75, 90, 120) if d <= n]
    names = [hybrid] + sorted(k for k in results if k != hybrid)
    lines.append("| lead (d) | " + " | ".join(names) + " | best |")
    lines.append("|---" * (len(names) + 2) + "|")
    for d in shown:
        row = [float(results[k]["paper_rmse"][d - 1]) for k in names]
        cells = [f"**{x:.3f}**" if x == min(row) else f"{x:.3f}" for x in row]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {v['best'][d - 1]} |")
    lines.append("")
    lines.append("Every lead is in `metrics.csv` and in `paper_rmse_vs_lead.png`.")
    lines.append("")
    return lines


def run_demo(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    baseline: str = "unet",
    fresh: bool = False,
    max_lead: int = 90,
    init_every: int = 15,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """The demo's four stages into `out`; returns `run_evaluation`'s result (``results``,
    ``files``, ``meta``). `overrides`: training config ``KEY=VALUE`` for both models; they and
    `baseline` are checked before the dataset is built."""
    out = Path(out)
    names = ("neuralogcm", baseline)
    overrides = [f"train.seed={seed}", *overrides]
    for name in names:  # a bad override or baseline fails now, not after the dataset is built
        _config(name, out / "data", out / "runs" / name, overrides)
    out.mkdir(parents=True, exist_ok=True)
    _note("\n=== 1/4 demo twin dataset", progress)
    root = _dataset(out, fresh, seed, progress)
    runs = {}
    for i, name in enumerate(names):
        _note(f"\n=== {2 + i}/4 training {name}", progress)
        runs[name] = _train(name, root, out / "runs" / name, overrides, progress)
    _note("\n=== 4/4 evaluation on the held-out test year", progress)
    models = {name: load_model(run / "checkpoints") for name, run in runs.items()}
    return run_evaluation(
        models, root, out, split="test", max_lead=max_lead, init_every=init_every, batch=8,
        training_logs={name: run / "metrics.jsonl" for name, run in runs.items()},
        report_sections=verdict_lines,
    )
