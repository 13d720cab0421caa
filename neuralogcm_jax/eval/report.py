"""The markdown report of an evaluation: one table across all models and the references."""

from __future__ import annotations

from pathlib import Path

from neuralogcm_jax.layout import UNITS, ChannelLayout

TABLE_VARS = (("SST", "T", 0), ("SSS", "S", 0), ("U0", "U", 0), ("V0", "V", 0), ("SSH", "SSH", 0))


def _leads(n: int) -> list[int]:
    return [k for k in (1, 5, 10, 30, 60, 90, 120) if k <= n]


def skill_table(results: dict[str, dict], layout: ChannelLayout, lead: int) -> str:
    """Markdown table at one lead: paper-convention RMSE, then surface RMSE/ACC in physical units."""
    head = ["model", "RMSE (norm., mean of channels)"]
    for label, var, _ in TABLE_VARS:
        head += [f"{label} RMSE ({UNITS[var]})", f"{label} ACC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        row = [name, f"{r['paper_rmse'][lead - 1]:.3f}"]
        for _, var, lev in TABLE_VARS:
            c = layout.channel(var, lev)
            row += [f"{r['rmse'][lead - 1, c]:.4g}", f"{r['acc'][lead - 1, c]:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(out: Path, results: dict[str, dict], meta: dict, layout: ChannelLayout,
                 files: list[Path], extra_sections: list[str] | None = None) -> Path:
    """report.md in `out`, linking every plot among `files`."""
    out = Path(out)
    n = int(meta["max_lead_days"])
    parts = [
        "# Forecast evaluation",
        "",
        f"Data: `{meta['data_root']}`, split `{meta['split']}`, {meta['grid']}; "
        f"{meta['n_initial_dates']} initial dates every {meta['init_every_days']} days, "
        f"leads 1..{n} days.",
        "",
        f"Aggregation: {meta['aggregation']}.",
        "",
    ]
    parts += list(extra_sections or [])
    lead_list = _leads(n)
    parts += ["## Paper-convention RMSE by lead", "",
              "| model | " + " | ".join(f"{k} d" for k in lead_list) + " |",
              "|---|" + "---|" * len(lead_list)]
    for name, r in results.items():
        parts.append(f"| {name} | " + " | ".join(f"{r['paper_rmse'][k - 1]:.3f}" for k in lead_list)
                     + " |")
    parts.append("")
    for lead in [k for k in (10, 30, 90) if k <= n] or [n]:
        parts += [f"## Skill at {lead} days", "", skill_table(results, layout, lead), ""]
    pngs = [Path(f) for f in files if str(f).endswith(".png")]
    if pngs:
        parts += ["## Plots", ""]
        parts += [f"![{p.stem}]({p.name})" for p in pngs]
        parts.append("")
    parts += ["Files: " + ", ".join(f"`{Path(f).name}`" for f in files), ""]
    p = out / "report.md"
    p.write_text("\n".join(parts))
    return p
