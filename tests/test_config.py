"""Claims about the training configuration: YAML + overrides fill a checked schema."""

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from neuralogcm_jax import ConfigError
from neuralogcm_jax.model import ModelConfig
from neuralogcm_jax.cli.train import add_config_arguments, config_from_args
from neuralogcm_jax.train import config as C

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
TRAIN_CONFIGS = [p for p in CONFIGS if p.stem in
                 ("neuralogcm", "unet", "convlstm", "simvp", "fourcastnet", "demo")]


def _args(argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = C.load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg.model.name == raw["model"]["name"]
    assert cfg.train.epochs == raw["train"]["epochs"]
    C.write_config(cfg, tmp_path)
    again = C.load_config(tmp_path / "config.yaml")
    assert C.to_dict(again) == C.to_dict(cfg)


def test_overrides_are_parsed_as_yaml_scalars():
    cfg = C.load_config(None, ["optim.lr=1e-4", "train.curriculum=[[0, 1], [3, 2], [6, 4]]",
                               "optim.clip_norm=null", "data.shuffle=false",
                               "mesh.x=2", "train.var_weights.T=2.5"])
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.clip_norm is None and cfg.data.shuffle is False and cfg.mesh.x == 2
    assert cfg.train.var_weights == {"T": 2.5}
    assert [cfg.k_at_epoch(e) for e in range(8)] == [1, 1, 1, 2, 2, 2, 4, 4]


@pytest.mark.parametrize(
    "override, key",
    [("optim.lrr=1", "optim.lrr"), ("bogus.x=1", "bogus"), ("train.out=1", "train.out"),
     ("mesh.data.x=1", "mesh.data")],
)
def test_unknown_key_names_the_full_dotted_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        C.load_config(None, [override])


def test_primitive_settings_come_from_the_config_and_unknown_ones_are_named(tmp_path):
    from neuralogcm_jax.physics.primitive import PrimitiveTerms

    cfg = C.load_config(None, ["model.physics.mode=primitive",
                               "model.physics.primitive.vertical_advection_scheme=centred",
                               "model.physics.primitive.shear_mixing=false"])
    assert cfg.model.physics.primitive == PrimitiveTerms(vertical_advection_scheme="centred",
                                                         shear_mixing=False)
    C.write_config(cfg, tmp_path)
    assert C.load_config(tmp_path / "config.yaml").model.physics.primitive == cfg.model.physics.primitive
    with pytest.raises(ConfigError, match=r"'model\.physics\.primitive\.shear'"):
        C.load_config(None, ["model.physics.primitive.shear=false"])
    with pytest.raises(ConfigError, match=r"model\.physics\.primitive\.shear_mixing.*true/false"):
        C.load_config(None, ["model.physics.primitive.shear_mixing=3"])
    with pytest.raises(ConfigError, match="vertical_advection_scheme must be one of"):
        C.load_config(None, ["model.physics.primitive.vertical_advection_scheme=quick"])


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: 3\n  curriculm: [[0, 1]]\n")
    with pytest.raises(ConfigError, match=r"train\.curriculm"):
        C.load_config(p)


@pytest.mark.parametrize(
    "override, key",
    [("optim.lr=fast", "optim.lr"), ("train.epochs=1.5", "train.epochs"),
     ("data.batch_size=true", "data.batch_size"), ("train.precision=fp16", "train.precision"),
     ("train.curriculum=[[0, x]]", r"train.curriculum\[0\]\[1\]"),
     ("data.root=[1, 2]", "data.root")],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        C.load_config(None, [override])


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_config(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        C.load_config(p)


def test_seed_flags_map_onto_config_keys():
    cfg = config_from_args(_args(
        ["--model", "unet", "--data_root", "/data/x", "--batch_size", "3", "--epochs", "7",
         "--lr", "0.002", "--set", "optim.warmup_steps=5"]))
    assert cfg.model.name == "unet"
    assert cfg.data.root == "/data/x" and cfg.data.batch_size == 3
    assert cfg.train.epochs == 7 and cfg.optim.lr == pytest.approx(2e-3)
    assert cfg.optim.warmup_steps == 5
    # --model picks configs/<model>.yaml as the base when no --config is given
    assert cfg.train.out_dir == "runs/unet"


def test_baseline_size_flags_reach_the_model_config():
    cfg = config_from_args(_args(["--model", "fourcastnet", "--fourcastnet_embed_dim", "64",
                                    "--simvp_hid_s", "16"]))
    assert cfg.model.fourcastnet.embed_dim == 64 and cfg.model.simvp.hid_S == 16


def test_generic_conversion_handles_nested_dataclasses():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        width: int = 4
        rates: tuple[float, ...] = (1.0, 2.0)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        name: str | None = None

    o = C.from_dict(Outer, {"inner": {"width": 8, "rates": [3, 4.5]}})
    assert o.inner == Inner(8, (3.0, 4.5)) and o.name is None
    assert C.from_dict(Outer, C.to_dict(o)) == o
    with pytest.raises(ConfigError, match=r"x\.inner\.depth"):
        C.from_dict(Outer, {"inner": {"depth": 1}}, "x")


def test_a_registered_model_takes_the_model_schema():
    cfg = C.load_config(None, ["model.name=diffusion_toy", "model.physics_coefficients.nu_m=3e4"])
    assert isinstance(cfg.model, ModelConfig) and cfg.model.name == "diffusion_toy"
    assert cfg.model.physics_coefficients == {"nu_m": 3e4}


def test_config_is_found_by_packaged_name_and_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: names resolve inside the package
    assert C.CONFIG_DIR.parent.name == "neuralogcm_jax"
    assert {"neuralogcm", "unet", "demo"} <= set(C.packaged_configs())
    by_name = config_from_args(_args(["--config", "demo"]))
    assert by_name.train.out_dir == "runs/demo"
    assert config_from_args(_args(["--config", "demo.yaml"])) == by_name
    own = tmp_path / "mine.yaml"
    own.write_text("train:\n  out_dir: runs/mine\n")
    assert config_from_args(_args(["--config", str(own)])).train.out_dir == "runs/mine"
    (tmp_path / "demo.yaml").write_text("train:\n  out_dir: runs/local\n")
    assert config_from_args(_args(["--config", "demo.yaml"])).train.out_dir == "runs/local"
    with pytest.raises(ConfigError, match=r"config 'nosuch' is neither a file nor a packaged "
                                          r"config \(packaged: .*neuralogcm"):
        C.resolve_config_path("nosuch")
    with pytest.raises(SystemExit) as e:  # the command line refuses it while parsing
        _args(["--config", "nosuch"])
    assert e.value.code == 2
