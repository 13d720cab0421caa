"""Claims about the built package: the wheel alone (not the source tree) trains, exports and loads.

Slow: builds the wheel with pip (build isolation: setuptools and wheel come from the configured
package index) and installs it, without dependencies, into a fresh virtual environment that
reuses this environment's installed dependencies through a path entry (no downloads)."""

import os
import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import run_child

import neuralogcm_jax

REPO = Path(neuralogcm_jax.__file__).resolve().parents[1]


def run(cmd, cwd, env, timeout=900):
    rc, out, err = run_child(cmd, env=env, cwd=cwd, timeout=timeout, what=str(cmd[:3]))
    assert rc == 0, f"{cmd} failed ({rc}):\n{out[-2000:]}\n{err[-3000:]}"
    return out


@pytest.mark.slow
def test_the_wheel_installed_alone_trains_exports_and_loads(tmp_path):
    from neuralogcm_jax.data import h5write
    from neuralogcm_jax.grid import Grid
    from neuralogcm_jax.layout import ChannelLayout

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CITATION.cff"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "neuralogcm_jax", src / "neuralogcm_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XLA_FLAGS", "NEURALOGCM_PLUGINS")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
         str(src)], tmp_path, env)
    wheel = next((tmp_path / "dist").glob("neuralogcm_jax-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "neuralogcm_jax/configs/neuralogcm.yaml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)

    venv = tmp_path / "venv"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], tmp_path,
        env)
    py, bin_ = venv / "bin" / "python", venv / "bin"
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path, env)
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               tmp_path, env).strip()
    # the dependencies: this environment's site-packages as a plain path entry (its .pth files,
    # among them the editable install of the source tree, are not processed)
    Path(site, "reuse_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    out = run([str(bin_ / "neuralogcm"), "--help"], empty, env)
    assert "train" in out and "export" in out
    # a one-year HDF5 data root (the package's own format: no test plugin in the venv)
    g = Grid.regular(15.0, depth=(5.0, 50.0))
    layout = ChannelLayout(tuple(g.depth))
    rng = np.random.default_rng(0)
    fields = rng.normal(size=(365, 13) + g.shape).astype(np.float32)
    data = tmp_path / "data"
    h5write.write_year(data / "train" / "2019.h5", fields, g.lat, g.lon, g.depth)
    clim = np.zeros((366, layout.n_ocean) + g.shape, np.float32)
    h5write.write_stats(data, np.zeros(13, np.float32), np.ones(13, np.float32), clim)
    run([str(bin_ / "neuralogcm"), "train", "--config", "unet", "--data_root", str(data),
         "--batch_size", "1", "--epochs", "1", "--no_progress", "--out_dir", "run",
         "--set", "model.unet.base_channels=8", "--set", "model.unet.channel_mults=[1, 2]",
         "--set", "train.max_steps=2", "--set", "optim.warmup_steps=0"], empty, env)
    run([str(bin_ / "neuralogcm"), "export", "--checkpoint", "run/checkpoints", "--out",
         "export"], empty, env)
    code = (
        "import numpy as np, neuralogcm_jax\n"
        "from neuralogcm_jax import load_model\n"
        "from neuralogcm_jax.rollout import rollout\n"
        f"assert neuralogcm_jax.__file__.startswith({str(venv)!r}), neuralogcm_jax.__file__\n"
        "m = load_model('export')\n"
        "x = np.zeros((1, 9) + m.grid.shape, np.float32)\n"
        "f = np.zeros((1, 2, 4) + m.grid.shape, np.float32)\n"
        "t = np.asarray(rollout(m, x, f, 2, 0))\n"
        "assert t.shape == (1, 2, 9) + m.grid.shape and np.isfinite(t).all()\n"
        "print('LOADED', m.name)\n"
    )
    out = run([str(py), "-c", code], empty, env)
    assert "LOADED unet" in out
