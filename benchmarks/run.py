"""The benchmark harness: ``python -m benchmarks.run [--quick] [NAME ...]`` (``make bench``).

Discovers ``benchmarks/bench_*.py``; each module exposes ``run(quick: bool) -> list[dict]`` whose
rows have ``name``, ``value``, ``unit`` and ``notes``. Each module's results replace its own
section of ``benchmarks/BENCHMARKS.md`` (between ``<!-- bench:NAME -->`` markers), so modules can
be re-run one at a time without touching the others. Every section records the machine (CPU model
and cores from ``lscpu``, JAX backend and devices), the date and the command.

Modules in `ON_REQUEST` (the skill benchmark: trains five models, about 90 minutes on a 2-core
CPU; the twin generation timing: about 20 minutes and 4 GB of disk) run only when named, e.g.
``python -m benchmarks.run skill`` (``--quick`` for a smoke run).

A ``--quick`` run prints its sections and leaves BENCHMARKS.md as it is (its small sizes would
replace the recorded figures); ``--quick --write`` records it all the same.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pathlib
import platform
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Recorded by `python -m benchmarks.run` (`make bench`); one section per `benchmarks/bench_*.py`"
    " module, each rewritten only when that module runs (a `--quick` smoke run prints only). Numbers"
    " are from the machine named in the"
    " section; compare like with like.\n"
)


ON_REQUEST = ("skill", "twin")


def discover() -> list[str]:
    """Names (without the ``bench_`` prefix) of the benchmark modules, sorted."""
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def machine() -> str:
    """One line: CPU model, cores, memory, JAX backend and devices."""
    model, cores = platform.processor() or "unknown CPU", "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(
            (k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        )
        model = fields.get("Model name", model)
        cores = fields.get("CPU(s)", cores)
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        import os

        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        mem = "RAM unknown"
    try:
        import jax

        devs = jax.devices()
        dev = f"JAX {jax.__version__} on {devs[0].platform} x{len(devs)} ({devs[0].device_kind})"
    except Exception as e:  # noqa: BLE001 - a harness must report, not crash
        dev = f"JAX unavailable: {e}"
    return f"{model}, {cores} CPU(s), {mem}; {dev}"


def render(name: str, rows: list[dict], command: str, seconds: float) -> str:
    """Markdown section for one module."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- bench:{name} -->",
        f"## {name}",
        "",
        f"- machine: {machine()}",
        f"- date: {date}; command: `{command}`; wall time of the module: {seconds:.0f} s",
        "",
        "| name | value | unit | notes |",
        "|---|---:|---|---|",
    ]
    for r in rows:
        v = r.get("value")
        vs = f"{v:.4g}" if isinstance(v, float) else str(v)
        notes = str(r.get("notes", "")).replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.get('name')} | {vs} | {r.get('unit', '')} | {notes} |")
    lines.append(f"<!-- /bench:{name} -->")
    return "\n".join(lines) + "\n"


def update(text: str, name: str, section: str) -> str:
    """`text` with the section of `name` replaced (or appended)."""
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n?", re.S
    )
    if pattern.search(text):
        return pattern.sub(lambda _: section, text)
    return text.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"modules to run (default all but {', '.join(ON_REQUEST)}: "
                        f"{', '.join(n for n in discover() if n not in ON_REQUEST)})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, for a smoke run (printed only, unless --write)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    parser.add_argument("--write", action="store_true",
                        help="record a --quick run in BENCHMARKS.md all the same")
    args = parser.parse_args(argv)
    if args.write and args.no_write:
        print("benchmarks.run: --write and --no-write contradict each other", file=sys.stderr)
        return 2
    write = args.write or not (args.no_write or args.quick)
    known = discover()
    names = args.names or [n for n in known if n not in ON_REQUEST]
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f"benchmarks.run: unknown benchmark(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "") + (
        " " + " ".join(args.names) if args.names else "")
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    for name in names:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        t0 = time.perf_counter()
        rows = mod.run(args.quick)
        if not rows:  # nothing measurable here (e.g. the accelerator module on a CPU)
            print(f"benchmarks.run: {name}: no rows; its section is left as it was")
            continue
        section = render(name, rows, command, time.perf_counter() - t0)
        print(section)
        text = update(text, name, section)
        if write:
            RESULTS.write_text(text)  # after every module, so a later failure loses nothing
    return 0


if __name__ == "__main__":
    sys.exit(main())
