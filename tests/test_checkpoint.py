"""Claims about Orbax checkpoints: restore onto any mesh, refuse the wrong model, survive damage."""

import json
import os
import shutil
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import assert_trained
from helpers import run_child as run_command

from neuralogcm_jax import CheckpointError
from neuralogcm_jax.grid import Grid
from neuralogcm_jax.train import checkpoint as CK
from neuralogcm_jax.train import config as C
from neuralogcm_jax.train import export as EX
from neuralogcm_jax.train import sharding as SH
from neuralogcm_jax.train import state as S
from neuralogcm_jax.train.loop import open_data, train
from neuralogcm_jax.train.optim import make_optimizer
from tests.toy import write_array_dataset


def toy_dataset(path, seed=0):
    g = Grid.regular(15.0, depth=(5.0, 50.0))
    wet = g.wet.copy()
    wet[:, 3:6, 4:8] = False
    g = g.with_wet(wet)
    rng = np.random.default_rng(seed)
    mask = np.concatenate([wet, wet, wet, wet, wet[:1], np.ones((4, 12, 24), bool)])

    def split(T, off):
        return (rng.normal(size=(T, 13, 12, 24)) * mask).astype(np.float32), (np.arange(T) + off)

    return write_array_dataset(path, g, {"train": split(24, 0), "valid": split(10, 200)})


def toy_config(tmp_path, data, *extra):
    return C.load_config(None, [
        "model.name=diffusion_toy", f"data.root={data}", f"train.out_dir={tmp_path / 'run'}",
        "data.batch_size=1", "train.epochs=1", "train.steps_per_epoch=2", "optim.warmup_steps=0",
        "checkpoint.async_save=false", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run on the 8 faked devices; its checkpoint directory and final state."""
    tmp = tmp_path_factory.mktemp("ckpt")
    data = toy_dataset(tmp / "toy.npz")
    cfg = toy_config(tmp, data)
    res = train(cfg, progress=False)
    return cfg, res, S.checkpoint_view(jax.device_get(res.train_state))


def run_child(code: str, n_devices: int, timeout: float = 120.0) -> str:
    """Run `code` in a fresh Python with `n_devices` CPU devices; kill its group on timeout."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
               JAX_PLATFORMS="cpu")
    code = "import tests.toy  # the toy model and the .npz data format\n" + textwrap.dedent(code)
    rc, out, err = run_command([sys.executable, "-c", code], env=env, timeout=timeout,
                               what=f"child with {n_devices} devices")
    assert rc == 0, f"child failed ({rc}):\n{err[-3000:]}"
    return out


def test_the_run_applied_every_update(trained):
    cfg, res, _ = trained
    assert res.step == 2
    assert_trained(res, cfg)


def test_checkpoint_holds_state_data_position_and_metadata(trained):
    cfg, res, ts = trained
    d = cfg.checkpoint_dir
    assert CK.list_steps(d) == [2] and res.step == 2
    meta = CK.Checkpointer(d, read_only=True).read_metadata()
    assert meta["format_version"] == CK.FORMAT_VERSION and meta["model_name"] == "diffusion_toy"
    assert meta["config"]["model"]["name"] == "diffusion_toy" and meta["step"] == 2
    assert meta["grid"]["shape"] == [12, 24] and len(meta["layout_depths_m"]) == 2
    assert "val_loss" in meta["metrics"]
    assert (cfg.checkpoint_dir.parent / "config.yaml").is_file()


def test_restore_onto_a_smaller_mesh_in_process(trained):
    cfg, res, ts = trained
    mesh = SH.make_mesh(2, 1, devices=jax.devices()[:2])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=SH.replicated(mesh)), ts)
    ck = CK.Checkpointer(cfg.checkpoint_dir, read_only=True)
    got, data_state, step = ck.restore(abstract)
    assert step == 2 and data_state["epoch"] == 1
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ts)):
        assert a.sharding.mesh.devices.size == 2
        np.testing.assert_array_equal(np.asarray(a), b)


def test_checkpoint_saved_on_8_devices_restores_on_a_2x2_mesh_and_on_1(trained):
    cfg, res, ts = trained
    want = {k: float(np.asarray(v).sum()) for k, v in ts["params"]["physics_params"].items()}
    want["kernel"] = float(np.abs(ts["params"]["corrector"]["kernel"]).sum())
    code = f"""
        import json, jax, numpy as np
        from neuralogcm_jax.train import config as C, state as S, sharding as SH
        from neuralogcm_jax.train import checkpoint as CK, export as EX
        from neuralogcm_jax.train.loop import open_data
        from neuralogcm_jax.train.optim import make_optimizer
        cfg = C.load_config({str(cfg.checkpoint_dir.parent / 'config.yaml')!r})
        data = open_data(cfg)
        mesh = SH.make_mesh(-1, MESH_X)
        gd, *mv = S.split_model(S.build_forecaster(cfg.model, data.grid, data.stats, seed=0))
        tx = make_optimizer(cfg.optim, 2)
        ab = S.abstract_train_state(tuple(mv), tx, 0, mesh)
        ts, pos, step = CK.Checkpointer(cfg.checkpoint_dir, read_only=True).restore(
            S.checkpoint_view(ab))
        p = jax.device_get(ts["params"])
        model = EX.load_model(cfg.checkpoint_dir)
        x = np.ones((1, 9, 12, 24), np.float32) * data.layout.wet_channels(data.grid.wet)[:9]
        y = model.step(x, np.zeros((1, 4, 12, 24), np.float32), np.zeros(1, np.int32))
        out = {{k: float(np.asarray(v).sum()) for k, v in p["physics_params"].items()}}
        out["kernel"] = float(np.abs(p["corrector"]["kernel"]).sum())
        out["devices"] = len(ts["step"].sharding.device_set)
        out["finite"] = bool(np.isfinite(np.asarray(y)).all())
        out["mesh"] = list(mesh.devices.shape)
        out["forecast"] = float(np.asarray(y, np.float64).sum())
        print("RESULT" + json.dumps(out))
    """
    forecasts = []
    for n, x in ((4, 2), (1, 1)):  # a 2 x 2 ('data', 'x') mesh, and one device
        out = run_child(code.replace("MESH_X", str(x)), n)
        got = json.loads(out.split("RESULT")[-1])
        assert got.pop("devices") == n and got.pop("finite")
        assert got.pop("mesh") == [n // x, x]
        forecasts.append(got.pop("forecast"))
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-7), k
    assert forecasts[0] == pytest.approx(forecasts[1], rel=1e-6)  # the same forecast


def test_export_writes_a_params_only_checkpoint_that_load_model_reads(trained, tmp_path):
    cfg, res, ts = trained
    out = EX.export(cfg.checkpoint_dir, tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "grid.npz", "metadata.json",
                                                     "params", "stats.npz"]
    model = EX.load_model(out)
    _, params, _, _ = S.split_model(model)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ts["params"])):
        np.testing.assert_array_equal(np.asarray(a), b)
    with pytest.raises(CheckpointError, match="not empty"):
        EX.export(cfg.checkpoint_dir, out)


def test_checkpoint_of_another_model_or_grid_is_refused(trained, tmp_path):
    cfg, res, ts = trained
    meta = CK.Checkpointer(cfg.checkpoint_dir, read_only=True).read_metadata()
    data = open_data(cfg)
    CK.check_compatible(meta, model_name="diffusion_toy", grid=data.grid, layout=data.layout,
                        where="x")
    with pytest.raises(CheckpointError, match="model 'diffusion_toy'.*'unet'"):
        CK.check_compatible(meta, model_name="unet", grid=data.grid, layout=data.layout,
                            where="x")
    other = data.grid.with_wet(np.ones_like(data.grid.wet))
    with pytest.raises(CheckpointError, match="land mask"):
        CK.check_compatible(meta, model_name="diffusion_toy", grid=other, layout=data.layout,
                            where="x")
    coarse = Grid.regular(30.0, depth=tuple(data.grid.depth))
    with pytest.raises(CheckpointError, match=r"\[6, 12\]"):
        CK.check_compatible(meta, model_name="diffusion_toy", grid=coarse, layout=data.layout,
                            where="x")


def test_a_corrupt_checkpoint_is_a_checkpoint_error_and_others_stay_intact(trained, tmp_path):
    cfg, res, ts = trained
    bad = tmp_path / "bad"
    shutil.copytree(cfg.checkpoint_dir, bad)
    n = 0
    for root, _, files in os.walk(bad / "2" / "state"):
        for f in files:
            with open(os.path.join(root, f), "r+b") as fh:
                fh.write(b"\x00garbage\xff" * 8)
            n += 1
    assert n > 0
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                       sharding=SH.replicated(SH.make_mesh())), ts)
    with pytest.raises(CheckpointError, match="cannot restore step 2"):
        CK.Checkpointer(bad, read_only=True).restore(abstract)
    (bad / "2" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        CK.Checkpointer(bad, read_only=True).read_metadata()
    # the original is untouched and still restores
    got, _, _ = CK.Checkpointer(cfg.checkpoint_dir, read_only=True).restore(abstract)
    np.testing.assert_array_equal(np.asarray(got["params"]["corrector"]["kernel"]),
                                  ts["params"]["corrector"]["kernel"])


def test_prng_key_leaves_round_trip(tmp_path):
    mesh = SH.make_mesh()
    tree = {"k": jax.random.key(3), "x": np.arange(3.0)}
    tree = jax.device_put(tree, SH.replicated(mesh))
    ck = CK.Checkpointer(tmp_path / "c", async_save=False, keep_best=False)
    ck.save(1, tree, {"epoch": 0}, {"format_version": CK.FORMAT_VERSION})
    ck.wait()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=SH.replicated(mesh)), tree)
    got, pos, step = ck.restore(abstract)
    assert pos == {"epoch": 0} and step == 1
    assert jax.random.key_data(got["k"]).tolist() == jax.random.key_data(tree["k"]).tolist()
    ck.close()


def test_abstract_target_matches_a_fresh_state(trained):
    cfg, res, ts = trained
    data = open_data(cfg)
    gd, *mv = S.split_model(S.build_forecaster(cfg.model, data.grid, data.stats, seed=0))
    ab = S.abstract_train_state(tuple(mv), make_optimizer(cfg.optim, 2), 0, SH.make_mesh())
    assert jax.tree.structure(S.checkpoint_view(ab)) == jax.tree.structure(ts)


@pytest.mark.slow
def test_real_model_checkpoint_from_8_devices_rolls_out_on_1(tmp_path):
    """A U-Net trained 2 steps on 8 devices; a 1-device process rebuilds it with `load_model`
    and rolls it out 3 days with `neuralogcm_jax.rollout.rollout`."""
    g = Grid.regular(7.5, depth=(5.0, 50.0))
    rng = np.random.default_rng(0)
    fields = rng.normal(size=(12, 13) + g.shape).astype(np.float32)
    data = write_array_dataset(tmp_path / "d.npz", g, {"train": (fields, np.arange(12))})
    cfg = C.load_config(None, [
        "model.name=unet", "model.unet.base_channels=8", "model.unet.channel_mults=[1, 2]",
        f"data.root={data}", f"train.out_dir={tmp_path / 'run'}", "data.batch_size=1",
        "train.epochs=1", "train.max_steps=2", "optim.warmup_steps=0",
        "checkpoint.async_save=false"])
    res = train(cfg, progress=False)
    assert_trained(res, cfg, physics=False)
    kernel_sum = float(sum(np.abs(np.asarray(x)).sum()
                           for x in jax.tree.leaves(res.train_state["params"])))
    code = f"""
        import json, numpy as np
        from neuralogcm_jax.train.export import load_model
        from neuralogcm_jax.rollout import rollout
        import jax
        m = load_model({str(cfg.checkpoint_dir)!r})
        s = sum(float(np.abs(np.asarray(x)).sum()) for x in jax.tree.leaves(
            __import__("flax").nnx.state(m, __import__("flax").nnx.Param)))
        x0 = np.zeros((1, 9) + {g.shape!r}, np.float32)
        f = np.zeros((1, 3, 4) + {g.shape!r}, np.float32)
        traj = rollout(m, x0, f, 3, 0)
        print("RESULT" + json.dumps({{"sum": s, "shape": list(traj.shape),
                                     "finite": bool(np.isfinite(np.asarray(traj)).all())}}))
    """
    got = json.loads(run_child(code, 1, timeout=900).split("RESULT")[-1])
    assert got["shape"] == [1, 3, 9, *g.shape]
    assert got["finite"]
    assert got["sum"] == pytest.approx(kernel_sum, rel=1e-6)
