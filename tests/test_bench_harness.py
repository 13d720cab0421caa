"""The benchmark harness (`benchmarks/run.py`): which runs record their figures."""

import sys
import types

import pytest

from benchmarks import run as harness


@pytest.fixture
def fake_module(monkeypatch, tmp_path):
    """A benchmark module `fake` with one row, and BENCHMARKS.md in a temporary folder."""
    mod = types.ModuleType("benchmarks.bench_fake")
    mod.run = lambda quick: [{"name": "x", "value": 1.0 if quick else 2.0, "unit": "s",
                              "notes": ""}]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", mod)
    monkeypatch.setattr(harness, "discover", lambda: ["fake"])
    results = tmp_path / "BENCHMARKS.md"
    results.write_text(harness.HEADER)
    monkeypatch.setattr(harness, "RESULTS", results)
    return results


def test_a_quick_run_prints_and_leaves_the_recorded_figures(fake_module, capsys):
    """A full run records its section; a --quick smoke run after it prints its own and leaves
    the file as it was; --quick --write records it; --write with --no-write is refused."""
    assert harness.main(["fake"]) == 0
    full = fake_module.read_text()
    assert "<!-- bench:fake -->" in full and "| x | 2 |" in full
    assert harness.main(["--quick", "fake"]) == 0
    assert fake_module.read_text() == full
    assert "| x | 1 |" in capsys.readouterr().out
    assert harness.main(["--quick", "--write", "fake"]) == 0
    assert "| x | 1 |" in fake_module.read_text()
    assert harness.main(["--write", "--no-write", "fake"]) == 2
