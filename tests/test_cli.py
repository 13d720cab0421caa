"""Claims about the command line: every argument is checked before any compute, and a bad one
ends in one clear error naming it, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_h5 import make_root

from neuralogcm_jax import cli


def _refused(argv, capsys) -> str:
    """Run `neuralogcm ARGV` in this process; it must exit 2. Returns stderr."""
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def _base(command: str, tmp_path) -> list[str]:
    """The required arguments of `command`, all valid."""
    d, out = str(tmp_path), str(tmp_path / "out")
    return {
        "demo": ["demo", "--out", out],
        "make-data": ["make-data", "--out", out],
        "convert-glorys": ["convert-glorys", "--glorys", "g.nc", "--era5", "e.nc", "--out", out,
                           "--years", "2001", "--split", "train"],
        "train": ["train"],
        "export": ["export", "--checkpoint", d, "--out", out],
        "evaluate": ["evaluate", "--checkpoint", d, "--data_root", d, "--out", out],
        "rollout": ["rollout", "--checkpoint", d, "--out", out],
        "physics-demo": ["physics-demo", "--out", out],
    }[command]


BAD = [  # (command, argument, bad values)
    ("rollout", "--days", ["0", "-5", "ten"]),
    ("rollout", "--chunk", ["0", "-5"]),
    ("rollout", "--start", ["-1"]),
    ("rollout", "--split", ["validation"]),
    ("rollout", "--data_root", ["/no/such/root"]),
    ("evaluate", "--max_lead", ["0", "-5"]),
    ("evaluate", "--init_every", ["0", "-5"]),
    ("evaluate", "--batch", ["0", "-5"]),
    ("evaluate", "--split", ["tset"]),
    ("evaluate", "--data_root", ["/no/such/root"]),
    ("evaluate", "--checkpoint", ["/no/such/checkpoints"]),
    ("rollout", "--checkpoint", ["/no/such/checkpoints"]),
    ("demo", "--max_lead", ["0", "-5"]),
    ("demo", "--init_every", ["0", "-5"]),
    ("demo", "--seed", ["-1"]),
    ("demo", "--baseline", ["resnet"]),
    ("make-data", "--seed", ["-1"]),
    ("convert-glorys", "--resolution", ["0", "-1.5", "nan"]),
    ("convert-glorys", "--levels", ["0", "24"]),
    ("train", "--batch_size", ["0", "-5"]),
    ("train", "--epochs", ["0", "-5"]),
    ("train", "--fourcastnet_embed_dim", ["0"]),
    ("train", "--simvp_hid_s", ["-5"]),
    ("train", "--num_processes", ["0"]),
    ("train", "--process_id", ["-1"]),
    ("train", "--lr", ["-0.001"]),
    ("train", "--config", ["/no/such/config.yaml"]),
    ("export", "--step", ["-1"]),
    ("physics-demo", "--days", ["0", "-5"]),
    ("physics-demo", "--levels", ["0", "24"]),
    ("physics-demo", "--resolution", ["0"]),
    ("physics-demo", "--nu-m", ["-1"]),
    ("physics-demo", "--nu-t", ["0"]),
]


@pytest.mark.parametrize(("command", "arg", "values"), BAD, ids=[f"{c} {a}" for c, a, _ in BAD])
def test_a_bad_argument_is_refused_naming_it(command, arg, values, tmp_path, capsys):
    for v in values:
        err = _refused(_base(command, tmp_path) + [arg, v], capsys)
        assert f"argument {arg}:" in err and repr(v) in err, err
        assert err.strip().splitlines()[-1].startswith(f"neuralogcm {command}: error:")
    assert not (tmp_path / "out").exists()


def test_a_physics_coefficient_outside_its_range_is_refused_naming_it(tmp_path, capsys):
    """`--set model.physics_coefficients.X=V` with V above the coefficient's stability bound (the
    integrator would clip it silently), at or below zero or NaN: exit 2 naming the key, before
    any data is read (the data root does not exist)."""
    base = ["train", "--data_root", str(tmp_path / "no_data"), "--out_dir", str(tmp_path / "out")]
    for sets, key, bound in (
        (["model.physics_coefficients.nu_m=1e9"], "nu_m", "250000"),
        (["model.physics_coefficients.nu_t=-1"], "nu_t", "250000"),
        (["model.physics.mode=primitive", "model.physics_coefficients.convective_kappa=nan"],
         "convective_kappa", "10"),
    ):
        err = _refused(base + [x for s in sets for x in ("--set", s)], capsys)
        assert f"model.physics_coefficients.{key} must be in (0, {bound}]" in err, err
    # a coefficient the mode does not have (paper mode has no convective mixing)
    err = _refused(base + ["--set", "model.physics_coefficients.convective_kappa=1"], capsys)
    assert "model.physics_coefficients: unknown physics coefficient(s) ['convective_kappa']" in err
    assert not (tmp_path / "out").exists()


def test_rollout_days_zero_and_negative_are_refused(tmp_path, capsys):
    """The reported case: `neuralogcm rollout --days -5` ended in an IndexError traceback."""
    for v in ("0", "-5"):
        err = _refused(["rollout", "--checkpoint", str(tmp_path), "--days", v,
                        "--out", str(tmp_path / "out")], capsys)
        assert f"argument --days: must be an integer >= 1, got '{v}'" in err


def test_a_config_that_is_a_folder_is_refused(tmp_path, capsys):
    err = _refused(["train", "--config", str(tmp_path)], capsys)
    assert "argument --config:" in err and "is a folder, not a file" in err


def test_a_start_day_outside_the_split_is_refused_before_the_model_is_loaded(tmp_path, capsys):
    """The test split holds 365 days (0 .. 364); --checkpoint is an empty folder, so reaching the
    model would be a different error."""
    root = make_root(tmp_path / "data", {"test": [2021]})
    empty = tmp_path / "ckpt"
    empty.mkdir()
    args = ["rollout", "--checkpoint", str(empty), "--data_root", str(root),
            "--out", str(tmp_path / "out")]
    err = _refused([*args, "--start", "365"], capsys)
    assert "--start 365 is outside split 'test'" in err and "days 0 .. 364" in err
    err = _refused([*args, "--split", "valid"], capsys)
    assert "split folder 'valid' is missing" in err
    err = _refused([*args, "--days", "3"], capsys)  # a good start: now the model is loaded
    assert "no checkpoint in" in err
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_missing_split_before_loading_models(tmp_path, capsys):
    root = make_root(tmp_path / "data", {"test": [2021]})
    empty = tmp_path / "ckpt"
    empty.mkdir()
    err = _refused(["evaluate", "--checkpoint", str(empty), "--data_root", str(root),
                    "--split", "valid", "--out", str(tmp_path / "out")], capsys)
    assert "split folder 'valid' is missing" in err


def test_demo_checks_its_training_overrides_before_building_the_dataset(tmp_path, capsys):
    out = tmp_path / "demo"
    err = _refused(["demo", "--out", str(out), "--set", "train.epochs=0"], capsys)
    assert "train.epochs = 0" in err
    err = _refused(["demo", "--out", str(out), "--set", "optim.learnig_rate=1"], capsys)
    assert "optim.learnig_rate" in err
    assert not out.exists()


@pytest.mark.parametrize("command", [None, *cli.COMMANDS])
def test_help_imports_no_jax(command):
    """`neuralogcm --help` and `neuralogcm CMD --help` print their help without importing JAX
    (the dispatcher imports only the chosen command's module, which imports the library late)."""
    argv = ["--help"] if command is None else [command, "--help"]
    code = (
        "import sys\n"
        "from neuralogcm_jax.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "assert rc in (0, None), rc\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)[:5]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cli.PLUGINS_ENV}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "usage: neuralogcm" in p.stdout


def test_python_m_cli_runs_the_dispatcher():
    env = {k: v for k, v in os.environ.items() if k != cli.PLUGINS_ENV}
    p = subprocess.run([sys.executable, "-m", "neuralogcm_jax.cli", "--help"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert all(name in p.stdout for name in cli.COMMANDS)
