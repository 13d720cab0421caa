"""Claims about portable models: checkpoints and exports that load from their own folder alone,
clear errors on foreign or damaged input, the compact climatology, and a model side that never
imports the trainer."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import early
from helpers import run_child

import neuralogcm_jax
from neuralogcm_jax import CheckpointError, checkpointing
from neuralogcm_jax.data import h5format
from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.h5source import H5WindowSource
from neuralogcm_jax.data.normalize import (
    CLIM_DAYS,
    DEFAULT_HARMONICS,
    YEAR_LENGTH_DAYS,
    Stats,
    climatology_at,
    fit_harmonics,
)
from neuralogcm_jax.data.twin import DatasetSpec, TruthSpec, generate_dataset
from neuralogcm_jax.layout import ChannelLayout

PKG = Path(neuralogcm_jax.__file__).parent

# One training year at 6 deg x 2 levels, paper-mode truth in six-hour substeps: the cheapest
# real data root.
TWIN = DatasetSpec(resolution_deg=6.0, n_levels=2, train_years=(1984,), valid_years=(),
                   test_years=(), spinup_days=3, truth=TruthSpec(mode="paper", substep_s=21600.0))
HYBRID = [
    "--model", "neuralogcm", "--batch_size", "1", "--epochs", "1", "--no_progress",
    "--set", "model.corrector.hid_channels=8", "--set", "model.corrector.n_conv_blocks=2",
    "--set", "model.corrector.n_down=1", "--set", "model.corrector.n_attention_blocks=1",
    "--set", "model.corrector.num_heads=2", "--set", "model.corrector.norm_groups=4",
    "--set", "model.physics.tracer_advection=advective", "--set", "train.max_steps=2",
    "--set", "optim.warmup_steps=0", "--set", "data.read_threads=1",
    "--set", "checkpoint.async_save=false",
]
ROLL_DAYS = 3

# Bound of the one-day forecast difference between the compact and the 366-day climatology,
# in units of each channel's std, max over wet cells (documented in `model.py`; measured 2.5e-3
# on the tiny hybrid below, while the two climatologies differ by O(1) std).
ONE_DAY_CLIM_BOUND = 1e-2


def child(args, cwd, timeout=600, code=None):
    """Run the CLI (or `code`) in a fresh 1-device process in `cwd`; kill its group on timeout."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(PKG.parent))
    cmd = [sys.executable, "-c", textwrap.dedent(code)] if code else [
        sys.executable, "-m", "neuralogcm_jax.cli", *args]
    return run_child(cmd, env=env, cwd=cwd, timeout=timeout, what=f"child {cmd[2:5]}")


# ---------------------------------------------------------------------------------- fixtures
ROLLOUT = """
    import sys, numpy as np, jax
    jax.config.update("jax_enable_x64", True)
    from neuralogcm_jax import load_model
    from neuralogcm_jax.rollout import rollout
    base = sys.argv[1] if len(sys.argv) > 1 else {base!r}
    z = np.load(base + "/inputs.npz")
    out = {{}}
    for name, path in (("ckpt", base + "/run/checkpoints"), ("export", base + "/export")):
        m = load_model(path)
        out[name] = np.asarray(rollout(m, z["state"], z["forcing"], {days}, int(z["doy"])))
    np.savez({target!r}, **out)
    print("ROLLED", {{k: float(np.abs(v).sum()) for k, v in out.items()}})
"""


def build_run(base: Path) -> None:
    """In `base`: the twin (``data``), a tiny hybrid trained 2 steps on it given as the
    *relative* path ``data`` from its working directory (``run``), exported (``export``), and
    rolled out before anything moves (``inputs.npz``, ``before.npz``); each step as a user runs
    it, in a child process."""
    generate_dataset(base / "data", TWIN, seed=5, progress=False)
    rc, out, err = child(["train", "--data_root", "data", "--out_dir", "run", *HYBRID], base)
    assert rc == 0, err[-3000:]
    rc, out, err = child(["export", "--checkpoint", "run/checkpoints", "--out", "export"], base)
    assert rc == 0, err[-3000:]
    s = H5WindowSource(base / "data", "train", k_steps=ROLL_DAYS)[0]
    np.savez(base / "inputs.npz", state=s["state"], forcing=s["forcing"], doy=s["doy"])
    code = ROLLOUT.format(base=str(base), days=ROLL_DAYS, target=str(base / "before.npz"))
    rc, out, err = child(None, base, code=code)
    assert rc == 0 and "ROLLED" in out, err[-3000:]


# `build_run` in a child started when the session starts, beside the other tests
# (`tests/early.py`); float64 on, as in this test process.
BUILD_RUN = ("import sys; from pathlib import Path; import jax; "
             "jax.config.update('jax_enable_x64', True); sys.path.insert(0, sys.argv[2]); "
             "import test_portable; test_portable.build_run(Path(sys.argv[1]))")
early.register("portable_run", "tests/test_portable.py::",
               lambda w: ([sys.executable, "-c", BUILD_RUN, str(w), str(Path(__file__).parent)],
                          dict(os.environ), None), 1200.0)


@pytest.fixture(scope="module")
def run():
    """`build_run`'s directory."""
    rc, out, err, base = early.result("portable_run")
    assert rc == 0, (out[-2000:], err[-3000:])
    return base


# ---------------------------------------------------------------------------------- the claims
def test_checkpoint_and_export_roll_out_bit_identically_after_the_data_moved(run, tmp_path):
    before = dict(np.load(run / "before.npz"))
    assert before["ckpt"].shape[0] == ROLL_DAYS and np.isfinite(before["ckpt"]).all()
    assert np.abs(before["ckpt"]).max() > 0.01  # a real trajectory, not zeros
    np.testing.assert_array_equal(before["ckpt"], before["export"])
    (run / "data").rename(run / "moved_away")
    try:
        elsewhere = tmp_path / "somewhere_else"
        elsewhere.mkdir()
        code = ROLLOUT.format(base=str(run), days=ROLL_DAYS, target=str(tmp_path / "after.npz"))
        rc, out, err = child(None, elsewhere, code=code)
        assert rc == 0, err[-3000:]
        after = dict(np.load(tmp_path / "after.npz"))
        for k in ("ckpt", "export"):
            np.testing.assert_array_equal(after[k], before[k])
        assert list(elsewhere.iterdir()) == []  # nothing written where it ran
    finally:
        (run / "moved_away").rename(run / "data")


def test_checkpoint_holds_grid_stats_versions_and_model_config(run):
    d = run / "run" / "checkpoints"
    step = checkpointing.list_steps(d)[-1]
    meta = checkpointing.read_step_metadata(d, step)
    assert meta["format_version"] == checkpointing.FORMAT_VERSION == 2
    assert meta["package_versions"]["jax"] == jax.__version__
    assert meta["model_config"]["corrector"]["hid_channels"] == 8
    assert meta["config"]["data"]["root"] == "data"  # as given: never needed again
    loaded = checkpointing.load(d)
    root = h5format.open_dataset(run / "data", nan_check_days=0)
    checkpointing.check_same_grid(root.grid, root.layout, loaded.grid, loaded.model.layout, "x")
    assert checkpointing.stats_differences(root.load_stats(), loaded.stats) == []
    # the twin's sea floor (its land mask's) travels with the checkpoint and the export
    assert root.grid.sea_floor_m is not None and root.grid.sea_floor_m.max() > 1000.0
    np.testing.assert_array_equal(loaded.grid.sea_floor_m, root.grid.sea_floor_m)
    with np.load(run / "export" / "grid.npz") as z:
        np.testing.assert_array_equal(z["sea_floor_m"], root.grid.sea_floor_m)
    emeta = json.loads((run / "export" / "metadata.json").read_text())
    assert emeta["export_format_version"] == checkpointing.EXPORT_FORMAT_VERSION
    with np.load(run / "export" / "stats.npz") as z:
        assert z["clim_harmonics"].shape == (2 * DEFAULT_HARMONICS + 1, 9, 30, 60)


def test_a_newer_format_is_refused_naming_the_versions(run, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(run / "run" / "checkpoints", ck)
    step = checkpointing.list_steps(ck)[-1]
    mp = ck / str(step) / "meta" / "metadata"
    meta = json.loads(mp.read_text())
    mp.write_text(json.dumps({**meta, "format_version": 7}))
    with pytest.raises(CheckpointError, match=r"format version 7 is newer than this program "
                                              r"reads \(2\)"):
        checkpointing.load_model(ck)
    ex = tmp_path / "ex"
    shutil.copytree(run / "export", ex)
    emeta = json.loads((ex / "metadata.json").read_text())
    (ex / "metadata.json").write_text(json.dumps({**emeta, "export_format_version": 3}))
    with pytest.raises(CheckpointError, match=r"ex'?: export format version 3 is newer"):
        checkpointing.load_model(ex)


def test_a_format_1_checkpoint_needs_the_data_root_and_says_so(run, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(run / "run" / "checkpoints", ck)
    for s in checkpointing.list_steps(ck):
        mp = ck / str(s) / "meta" / "metadata"
        meta = json.loads(mp.read_text())
        meta = {k: v for k, v in meta.items() if k not in ("model_config", "package_versions")}
        mp.write_text(json.dumps({**meta, "format_version": 1}))
        shutil.rmtree(ck / str(s) / checkpointing.MODEL_ITEM)
    with pytest.raises(CheckpointError, match=r"format 1 stores neither grid nor normalisation "
                                              r"statistics; load it with data_root="):
        checkpointing.load_model(ck)
    old = checkpointing.load_model(ck, data_root=run / "data")
    new = checkpointing.load_model(run / "run" / "checkpoints")
    from flax import nnx

    for a, b in zip(jax.tree.leaves(nnx.state(old, nnx.Param)),
                    jax.tree.leaves(nnx.state(new, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(old.clim_harmonics[...]),
                                  np.asarray(new.clim_harmonics[...]))
    # an export of format 1 (no stats.npz) likewise
    ex = tmp_path / "ex"
    shutil.copytree(run / "export", ex)
    (ex / "stats.npz").unlink()
    emeta = json.loads((ex / "metadata.json").read_text())
    (ex / "metadata.json").write_text(json.dumps({**emeta, "export_format_version": 1}))
    with pytest.raises(CheckpointError, match=r"export format 1 stores no normalisation "
                                              r"statistics; load it with stats= or data_root="):
        checkpointing.load_model(ex)
    m = checkpointing.load_model(ex, stats=new_stats(run))
    np.testing.assert_array_equal(np.asarray(m.std[...]), np.asarray(new.std[...]))


def new_stats(run):
    return h5format.open_dataset(run / "data", nan_check_days=0).load_stats()


def _other_land_mask_root(run, tmp_path):
    """A copy of the data root with one more land column (wet at both levels before)."""
    other = tmp_path / "other_root"
    shutil.copytree(run / "data", other)
    dr = h5format.open_dataset(other, nan_check_days=0)
    wet = dr.wet_channels.copy()
    j, i = np.argwhere(dr.grid.wet.all(axis=0))[0]
    wet[: dr.layout.n_ocean, j, i] = False
    h5write.write_land_mask(other, wet, dr.grid.lat, dr.grid.lon)
    return other


def test_a_data_root_of_another_grid_is_one_clear_error(run, tmp_path, capsys):
    from neuralogcm_jax import cli

    other = _other_land_mask_root(run, tmp_path)
    with pytest.raises(CheckpointError, match=r"grid or layout differs from the checkpoint.*"
                                              r"land mask \(2 cells differ\)"):
        checkpointing.load_model(run / "run" / "checkpoints", data_root=other)
    for cmd in ("evaluate", "rollout"):
        extra = ["--max_lead", "2"] if cmd == "evaluate" else ["--days", "2"]
        rc = cli.main([cmd, "--checkpoint", str(run / "export"), "--data_root", str(other),
                       "--split", "train", "--out", str(tmp_path / cmd), *extra])
        err = [x for x in capsys.readouterr().err.splitlines() if "error" in x]  # not tqdm bars
        assert rc == 2, err
        assert len(err) == 1 and "land mask (2 cells differ)" in err[0] and str(other) in err[0]


def test_a_corrupt_stats_entry_names_the_file_and_the_entry(run, tmp_path):
    ex = tmp_path / "ex"
    shutil.copytree(run / "export", ex)
    with np.load(ex / "stats.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(ex / "stats.npz", **{**arrays, "std": arrays["std"][:-1]})
    with pytest.raises(CheckpointError, match=r"stats\.npz: entry 'std' has shape \(12,\), the "
                                              r"checkpoint's 2-level layout needs \(13,\)"):
        checkpointing.load_model(ex)
    bad = arrays["std"].copy()
    bad[3] = -1.0
    np.savez(ex / "stats.npz", **{**arrays, "std": bad})
    with pytest.raises(CheckpointError, match=r"stats\.npz: entry 'std' is -1\.0 for channel 3"):
        checkpointing.load_model(ex)
    (ex / "stats.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match=r"stats\.npz' is unreadable"):
        checkpointing.load_model(ex)
    # the training checkpoint's model item, damaged on disk
    ck = tmp_path / "ck"
    shutil.copytree(run / "run" / "checkpoints", ck)
    step = checkpointing.list_steps(ck)[-1]
    n = 0
    for root, _, files in os.walk(ck / str(step) / "model"):
        for f in files:
            if not f.startswith("_"):
                Path(root, f).write_bytes(b"\x00garbage\xff" * 8)
                n += 1
    assert n > 0
    with pytest.raises(CheckpointError, match=rf"{step}/model'?: cannot read the stored grid"):
        checkpointing.load_model(ck)


PARSE_IMPORTS = textwrap.dedent("""
    import ast, json, sys
    out = {}
    for mod, path in json.load(sys.stdin).items():
        pkg = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        names = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names.add(base)
                names.update(f"{base}.{a.name}" for a in node.names)
        out[mod] = sorted(names)
    print(json.dumps(out))
""")


def test_the_model_side_never_imports_the_trainer():
    """physics/, nn/, model.py, rollout.py, checkpointing/ and everything they import from
    the package: no train, eval or cli; physics/ no flax. Read from the sources with `ast`."""
    def module_of(path: Path) -> str:
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    files = {module_of(p): p for p in PKG.rglob("*.py")}
    # Parsed in a child interpreter: CPython 3.11.7's AST constructor keeps one recursion
    # counter per interpreter, so an ast.parse racing another thread's (left running by an
    # earlier test) raised "SystemError: AST constructor recursion depth mismatch" in CI.
    child = subprocess.run([sys.executable, "-c", PARSE_IMPORTS], capture_output=True, text=True,
                           input=json.dumps({m: str(p) for m, p in files.items()}), timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    imports = {m: set(v) for m, v in json.loads(child.stdout).items()}

    roots = [m for m in files if m.startswith(("neuralogcm_jax.physics", "neuralogcm_jax.nn"))]
    roots += ["neuralogcm_jax.model", "neuralogcm_jax.rollout", "neuralogcm_jax.checkpointing"]
    roots += [m for m in files if m.startswith("neuralogcm_jax.checkpointing.")]
    forbidden = ("neuralogcm_jax.train", "neuralogcm_jax.eval", "neuralogcm_jax.cli")
    seen, chain, todo = set(), {m: [m] for m in roots}, list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for imp in imports[m]:
            if imp.startswith(forbidden) and (imp in files or imp.rsplit(".", 1)[0] in files
                                              or imp in forbidden):
                pytest.fail(f"{' -> '.join(chain[m])} imports {imp}")
            if m.startswith("neuralogcm_jax.physics") and (imp == "flax" or
                                                            imp.startswith("flax.")):
                pytest.fail(f"{files[m]} imports {imp}")
            if imp in files and imp not in seen:
                chain.setdefault(imp, chain[m] + [imp])
                todo.append(imp)
    assert "neuralogcm_jax.data.normalize" in seen  # the walk follows imports


def test_package_exports_load_model_lazily():
    code = ("import sys, neuralogcm_jax; assert 'jax' not in sys.modules, 'jax imported';"
            "from neuralogcm_jax import load_model; import neuralogcm_jax.checkpointing as c;"
            "import neuralogcm_jax.rollout as r; assert load_model is c.load_model;"
            "assert callable(r.load_model); print(load_model.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(PKG.parent)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "neuralogcm_jax.checkpointing.loading"


# ---------------------------------------------------------------------------------- climatology
def _smooth_seasonal(shape, n_harmonics, seed=0):
    """A ``[366, *shape]`` field with annual harmonics 0..n_harmonics and random phases."""
    rng = np.random.default_rng(seed)
    d = np.arange(CLIM_DAYS)[:, None, None, None]
    f = 10 + rng.normal(size=shape)[None]
    for k in range(1, n_harmonics + 1):
        amp = rng.normal(size=shape)[None] / k
        phase = rng.uniform(0, 2 * np.pi, size=shape)[None]
        f = f + amp * np.cos(2 * np.pi * k * d / YEAR_LENGTH_DAYS + phase)
    return f


def test_harmonics_round_trip_a_smooth_seasonal_field():
    """A field made of K annual harmonics is reproduced to float32 rounding (bound documented in
    `normalize`: 1e-5 of its range); one with a sharper seasonal bump (a 20-day Gaussian) keeps
    all but a few percent of its seasonal variance."""
    clim = _smooth_seasonal((3, 4, 5), DEFAULT_HARMONICS)
    h = fit_harmonics(clim)
    assert h.shape == (2 * DEFAULT_HARMONICS + 1, 3, 4, 5) and h.dtype == np.float32
    back = climatology_at(h, np.arange(CLIM_DAYS))
    assert np.abs(back - clim).max() < 1e-5 * np.ptp(clim)
    d = np.arange(CLIM_DAYS, dtype=np.float64)
    bump = np.exp(-0.5 * ((d - 200) / 20.0) ** 2)[:, None, None, None] * np.ones((1, 1, 2, 2))
    r = climatology_at(fit_harmonics(bump), np.arange(CLIM_DAYS)) - bump
    seas = bump - bump.mean(axis=0)
    assert (r**2).sum() / (seas**2).sum() < 0.05
    # the anomaly round trip through Stats uses the same climatology both ways
    lay = ChannelLayout.with_levels(2)
    wet = np.ones((2, 4, 5), bool)
    full = np.repeat(_smooth_seasonal((1, 4, 5), 2)[:, :, :, :], lay.n_ocean, axis=1)
    st = Stats.build(np.zeros(lay.n_channels), np.full(lay.n_channels, 0.5), full, wet, lay)
    x = full[100].astype(np.float32) + 0.25
    a = st.physical_to_anomaly(x, 100)
    np.testing.assert_allclose(a, 0.5, atol=1e-4)
    np.testing.assert_allclose(st.anomaly_to_physical(a, 100), x, rtol=1e-6)


def test_a_root_without_harmonics_is_fitted_on_load_equal_to_the_written_ones(run, tmp_path):
    old = tmp_path / "old_root"
    shutil.copytree(run / "data", old)
    (old / h5format.HARMONICS_FILE).unlink()
    dr = h5format.open_dataset(old, nan_check_days=0)
    fitted = dr.load_stats()
    written = new_stats(run)
    np.testing.assert_array_equal(fitted.harmonics, written.harmonics)
    assert fitted.harmonics.nbytes * 366 < 2 * (2 * DEFAULT_HARMONICS + 1) * np.load(
        old / h5format.CLIM_FILE, mmap_mode="r").nbytes


def test_one_day_forecast_with_the_compact_climatology_is_close_to_the_366_day_one(
    run, monkeypatch
):
    """The trained tiny hybrid forecasts one day from the same physical state with its compact
    climatology and with the 366-day table (the model of before); physical results differ by
    less than `ONE_DAY_CLIM_BOUND` channel stds, once the climate damping's pull toward each
    climatology, ``(1 - f) (c1 + mean)`` with ``f = exp(-r dt)``, is taken out (it is the damping's
    job to follow the climatology in use: 0.10 std of difference at 30 days without this)."""
    import jax.numpy as jnp

    from neuralogcm_jax.model import Forecaster
    from neuralogcm_jax.rollout import make_step_fn

    model = checkpointing.load_model(run / "run" / "checkpoints")
    table = np.nan_to_num(np.load(run / "data" / h5format.CLIM_FILE))[:, :9].astype(np.float32)
    src = H5WindowSource(run / "data", "train", k_steps=1)
    s = src[40]
    phys0 = src.stats.anomaly_to_physical(s["state"], int(s["doy"]))
    forcing = s["forcing"][:1]
    doy, doy1 = int(s["doy"]), int(s["target_doy"][0])
    n = model.layout.n_ocean
    mean, std = model.mean[...][:n, None, None], model.std[...][:n, None, None]
    wet = np.asarray(model.wet[...]) > 0

    assert model.cfg.climate_damping_days is not None  # the shipped config's damping is on
    f = np.asarray(model.climate_damping_factors())  # [n_ocean, 1, 1]
    assert np.all(f < 1)

    def forecast():
        step_fn, variables = make_step_fn(model)
        c0, c1 = (model.climatology(jnp.array([d])) for d in (doy, doy1))
        a0 = jnp.where(wet, (phys0[None] - c0 - mean) / std, 0.0)
        a1 = jax.jit(step_fn)(variables, a0, forcing, jnp.array([doy]), jnp.array([doy1]))
        out = np.asarray(a1 * std + mean + c1)[0]
        return out - (1 - f) * np.asarray(c1 + mean)[0]  # without the damping's pull

    compact = forecast()
    c_compact = np.asarray(model.climatology(jnp.array([doy])))[0]
    monkeypatch.setattr(Forecaster, "climatology",
                        lambda self, d: jnp.take(jnp.asarray(table), d, axis=0))
    daily = forecast()
    diff = np.abs(compact - daily) / np.asarray(std)
    assert np.isfinite(compact[wet]).all()
    assert diff[wet].max() < ONE_DAY_CLIM_BOUND, diff[wet].max()
    # ... while the two climatologies themselves differ by much more (the test can fail)
    c_diff = np.abs(c_compact - table[doy]) / np.asarray(std)
    assert c_diff[wet].max() > 10 * ONE_DAY_CLIM_BOUND


# ---------------------------------------------------------------------------------- paths
def test_output_dirs_keep_their_url_and_data_roots_may_not_be_urls(tmp_path, monkeypatch):
    from etils.epath import testing as epath_testing

    from neuralogcm_jax import ConfigError
    from neuralogcm_jax.train import config as C
    from neuralogcm_jax.train import loop

    cfg = C.load_config(None, ["train.out_dir=gs://bucket/runs/x", "data.root=gs://bucket/data"])
    assert str(cfg.checkpoint_dir) == "gs://bucket/runs/x/checkpoints"  # not a folder 'gs:'
    assert str(C.replace(cfg, **{"checkpoint.dir": "gs://b/ck"}).checkpoint_dir) == "gs://b/ck"
    with pytest.raises(ConfigError, match=r"data\.root 'gs://bucket/data' is a URL; data roots"):
        loop.train(cfg, progress=False)
    with pytest.raises(ConfigError, match=r"data root 'gs://bucket/data' is a URL"):
        h5format.open_dataset("gs://bucket/data")
    with pytest.raises(ConfigError, match=r"data_root 's3://b/d' is a URL"):
        checkpointing.loading._from_data_root("s3://b/d", ChannelLayout.with_levels(2), "x")
    # the run directory's own files go through epath (here its test backend, the local disk)
    monkeypatch.chdir(tmp_path)
    with epath_testing.mock_epath():
        loop.check_writable(cfg.checkpoint_dir, "checkpoint directory")
        C.write_config(cfg, cfg.out_dir)
        log = loop.MetricsLog(cfg.out_dir, True)
        log.write({"kind": "train", "step": 1, "loss": 0.5})
        log.write({"kind": "train", "step": 2, "loss": 0.25})
        log.close()
        lines = (cfg.out_dir / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [1, 2]
        assert C.load_config(None, base=__import__("yaml").safe_load(
            (cfg.out_dir / "config.yaml").read_text())) == cfg
    assert (tmp_path / "gs:" / "bucket" / "runs" / "x" / "checkpoints").is_dir()  # the mock's disk
