"""Claims about the optional freshwater forcing (ERA5's evaporation ``e`` and total precipitation
``tp``) through the data path: the layout turns the day's totals in ECMWF's signs into the
physics' rates, year files say which forcing they carry (and mixed or inconsistent roots are
refused), the model hands them to primitive mode's ``freshwater_flux: e_minus_p`` exactly as the
functional physics takes them, a run trains on them and its checkpoint restores the layout, and
a configuration asking for the flux on data without the channels is one error naming the key."""

from __future__ import annotations

import dataclasses

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_no_step_skipped, assert_params_moved, initial_params

from neuralogcm_jax import cli
from neuralogcm_jax.data import convert as cv
from neuralogcm_jax.data import h5format as hf
from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.forcing import climatological_daily
from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.data.world import SURFACE_VARIABLES, load_world
from neuralogcm_jax.errors import CheckpointError, ConfigError, DataError, LayoutError
from neuralogcm_jax.layout import (
    FORCING_VARIABLES,
    FRESHWATER_VARIABLES,
    ChannelLayout,
    Forcing,
)
from neuralogcm_jax.model import ModelConfig, PurePhysics, build_model
from neuralogcm_jax.physics import PhysicsConfig
from neuralogcm_jax.physics.primitive_terms import PrimitiveTerms

LEVELS = 2
FRESH = ChannelLayout.with_levels(LEVELS, freshwater=True)
PLAIN = ChannelLayout.with_levels(LEVELS)
YEAR = 2001


# ---------------------------------------------------------------------------------- the layout
def test_the_layout_turns_ecmwf_daily_totals_into_the_physics_rates():
    """``e`` (negative where water evaporates) and ``tp`` (m of water a day) become
    `Forcing.evaporation = -e / 86400` and `precipitation = tp / 86400` (m/s), and back; the
    channels follow the four of the NeuralOGCM files; a layout without them names them."""
    assert FRESH.n_forcing == 6 and FRESH.n_channels == 4 * LEVELS + 7 == PLAIN.n_channels + 2
    assert FRESH.channel_names[-6:] == list(FORCING_VARIABLES + FRESHWATER_VARIABLES)
    assert FRESH.var_slice("e").start == FRESH.n_ocean + 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, FRESH.n_channels, 4, 5))
    x[:, FRESH.channel("e")] = -0.004  # 4 mm a day evaporate
    x[:, FRESH.channel("tp")] = 0.0015
    f = FRESH.to_forcing(x)
    np.testing.assert_allclose(f.evaporation, 0.004 / 86400, rtol=1e-15)
    np.testing.assert_allclose(f.precipitation, 0.0015 / 86400, rtol=1e-15)
    np.testing.assert_array_equal(f.msl, x[:, FRESH.channel("msl")])
    np.testing.assert_allclose(FRESH.from_forcing(f), x[:, FRESH.n_ocean:], rtol=1e-15)
    g = PLAIN.to_forcing(x[:, FRESH.n_ocean:FRESH.n_ocean + 4])
    assert g.evaporation is None and g.precipitation is None
    with pytest.raises(LayoutError, match="'e' is a freshwater forcing channel; this layout has "
                                          "none"):
        PLAIN.var_slice("e")
    with pytest.raises(LayoutError, match="has freshwater channels .* no evaporation"):
        FRESH.from_forcing(g)
    with pytest.raises(LayoutError, match=r"forcing channels \['u10', 'v10', 't2m', 'msl', 'tp'\]"):
        ChannelLayout.from_forcing_variables(PLAIN.depths_m, FORCING_VARIABLES + ("tp",))
    with pytest.raises(LayoutError, match="freshwater must be true or false, got 'yes'"):
        ChannelLayout(PLAIN.depths_m, "yes")
    assert FRESH != PLAIN and hash(FRESH) != hash(PLAIN)


# ---------------------------------------------------------------------------------- year files
def _root(path, layout, *, years=((YEAR, "train"),), attrs=None, depth=True):
    """A data root on the embedded world at 7.5 deg: Levitus T/S at rest with a small daily
    wobble, the world's daily surface climatology as u10 .. msl and, with freshwater, a zonal
    E - P of a few mm a day (evaporation in the subtropics, rain at the equator and poleward)."""
    world = load_world(7.5, LEVELS)
    g = world.grid
    s0 = world.initial_state()
    lat = np.deg2rad(g.lat)[:, None] * np.ones(g.shape)
    rng = np.random.default_rng(3)
    wet_c = layout.wet_channels(g.wet)
    for year, split in years:
        clim = climatological_daily(world, year)
        n = clim.shape[0]
        x = np.zeros((n, layout.n_channels) + g.shape, np.float32)
        wobble = 0.05 * np.sin(2 * np.pi * np.arange(n) / n)[:, None, None, None]
        noise = rng.normal(size=(2, n) + s0.T.shape)  # day-to-day weather of 0.1 K, 0.02 psu
        x[:, layout.var_slice("T")] = s0.T[None] + wobble + 0.1 * noise[0]
        x[:, layout.var_slice("S")] = s0.S[None] - wobble + 0.02 * noise[1]
        for c, name in enumerate(FORCING_VARIABLES):
            x[:, layout.n_ocean + c] = clim[:, SURFACE_VARIABLES.index(name)]
        if layout.freshwater:
            evap = 0.004 * np.cos(lat) ** 2 * (0.5 + np.sin(3 * lat) ** 2)  # m a day
            rain = 0.006 * np.exp(-(lat / 0.15) ** 2) + 0.003 * np.sin(lat) ** 2
            x[:, layout.channel("e")] = -evap
            x[:, layout.channel("tp")] = rain
        x[:, ~wet_c] = np.nan
        h5write.write_year(path / split / f"{year}.h5", x, g.lat, g.lon,
                           g.depth if depth else None, attrs=attrs)
    h5write.write_land_mask(path, wet_c, g.lat, g.lon)
    if any(split == "train" for _, split in years):
        cv.compute_stats(path, "train", progress=False)
    return path


def test_year_files_say_which_forcing_they_carry(tmp_path):
    """A written year file names its forcing channels (attribute ``forcing_variables``); a file
    without it is read by its channel count (4 L + 7: freshwater); a root mixing the two, an
    attribute that does not fit the channel count, or a layout asked for that the files do not
    have, is one DataError naming the file."""
    root = _root(tmp_path / "fresh", FRESH)
    with h5py.File(root / "train" / f"{YEAR}.h5", "r") as f:
        assert f.attrs[hf.FORCING_ATTR] == "u10 v10 t2m msl e tp"
    dr = hf.open_dataset(root)
    assert dr.layout == FRESH and dr.load_stats().layout == FRESH
    stats = dr.load_stats()
    e = stats.mean[FRESH.channel("e")], stats.std[FRESH.channel("e")]
    assert -0.004 < e[0] < 0 and e[1] > 1e-4  # the statistics cover the new channels
    # no attribute, no depths: read from the channel count alone
    bare = tmp_path / "bare"
    _root(bare, FRESH, depth=False)
    with h5py.File(bare / "train" / f"{YEAR}.h5", "a") as f:
        del f.attrs[hf.FORCING_ATTR]
    assert hf.open_dataset(bare).layout == FRESH
    # a plain year beside a freshwater one (the same levels): refused, naming the later file
    mixed = _root(tmp_path / "mixed", FRESH)
    plain = _root(tmp_path / "plain", PLAIN, years=((YEAR + 1, "valid"),))
    (mixed / "valid").mkdir()
    (plain / "valid" / f"{YEAR + 1}.h5").rename(mixed / "valid" / f"{YEAR + 1}.h5")
    with pytest.raises(DataError, match=rf"valid/{YEAR + 1}\.h5: {PLAIN.n_channels} channels.*"
                                        rf"train/{YEAR}\.h5 has {FRESH.n_channels}"):
        hf.open_dataset(mixed)
    with pytest.raises(DataError, match=rf"{YEAR}\.h5: 15 channels in fields .*the layout "
                                        r"expects 13 \(2 levels, forcing u10 v10 t2m msl "):
        hf.open_dataset(root, PLAIN)
    with pytest.raises(DataError, match=r"attribute 'forcing_variables' is 'u10 v10 t2m msl e'"):
        h5write.write_year(tmp_path / "x.h5", np.zeros((365, FRESH.n_channels, 2, 4)),
                           attrs={hf.FORCING_ATTR: "u10 v10 t2m msl e"})
    with pytest.raises(DataError, match=rf"{FRESH.n_channels} channels in fields, but 2 depth "
                                        "levels without freshwater forcing make 13"):
        h5write.write_year(tmp_path / "y.h5", np.zeros((365, FRESH.n_channels, 2, 4)),
                           depth=FRESH.depths_m, attrs={hf.FORCING_ATTR: "u10 v10 t2m msl"})
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


# ---------------------------------------------------------------------------------- the model
def _physics(flux: str) -> PhysicsConfig:
    return PhysicsConfig(mode="primitive", primitive=PrimitiveTerms(freshwater_flux=flux))


def test_the_model_hands_e_and_tp_to_the_physics_as_the_functional_api_takes_them(tmp_path):
    """One day of the pure physics of a hybrid on freshwater data equals the functional
    physics given `Forcing.evaporation/precipitation` computed by hand from the raw ``e`` and
    ``tp`` (sign and units); with the flux the top level is saltier where evaporation wins and
    fresher where rain does, by about ``S (E - P) dt / dz`` in the top cell; without it the
    channels change nothing in the physics."""
    root = _root(tmp_path / "fresh", FRESH)
    dr = hf.open_dataset(root)
    stats, g = dr.load_stats(), dr.grid
    with h5py.File(root / "train" / f"{YEAR}.h5", "r") as f:
        days = np.nan_to_num(f["fields"][10:12])
    doy = jnp.asarray([10])
    state = jnp.asarray(stats.physical_to_anomaly(days[:1, :FRESH.n_ocean], np.array([10])))
    forcing = jnp.asarray(stats.normalize_forcing(days[1:, FRESH.n_ocean:]))
    out = {}
    for flux in ("e_minus_p", "none"):
        cfg = ModelConfig(name="neuralogcm", physics=_physics(flux))
        m = PurePhysics.of(build_model(cfg, g, stats, seed=0))
        out[flux] = m.step(state, forcing, doy)
        if flux == "e_minus_p":  # by hand: the raw totals, ECMWF's signs
            raw = days[1, FRESH.n_ocean:]
            by_hand = Forcing(*(jnp.asarray(raw[k]) for k in range(4)),
                              evaporation=jnp.asarray(-raw[4] / 86400.0),
                              precipitation=jnp.asarray(raw[5] / 86400.0))
            ocean = FRESH.to_state(m.anomaly_to_physical(state, doy)[0])
            new = m.physics.day_step(m.physics_params.core_si(), ocean, by_hand)
            got = np.asarray(m.anomaly_to_physical(out[flux], doy + 1))[0]
            want = np.asarray(FRESH.from_state(new))
            wet = np.asarray(m.wet[...]) > 0
            np.testing.assert_allclose(got[wet], want[wet], rtol=1e-6, atol=1e-6)
        else:  # salt closed: other e and tp leave the physics' day exactly as it was
            other = forcing.at[:, 4:].set(3.0)
            np.testing.assert_array_equal(np.asarray(m.step(state, other, doy)),
                                          np.asarray(out[flux]))
    s = FRESH.channel("S", 0)
    ds = (np.asarray(out["e_minus_p"] - out["none"])[0, s]) * stats.std[s]
    e_minus_p = (-days[1, FRESH.channel("e")] - days[1, FRESH.channel("tp")])  # m that day
    top = g.wet[0]
    evap, rain = top & (e_minus_p > 1e-3), top & (e_minus_p < -1e-3)
    assert evap.sum() > 10 and rain.sum() > 10
    assert (ds[evap] > 0).all() and (ds[rain] < 0).all()
    # the size: the virtual salt flux S E-P over the top cell's thickness, spread by the day's
    # mixing and advection over a little more (so within a factor of a few, and same order)
    dz0 = float(np.asarray(g.dz)[0])
    ratio = np.median(ds[evap] / (35.0 * e_minus_p[evap] / dz0))
    print(f"top-level salinity change over S (E - P) dt / dz0: median {ratio:.3f}")
    assert 0.05 < ratio <= 1.05, ratio


def test_asking_for_e_minus_p_on_data_without_the_channels_is_one_error_naming_the_key(
        tmp_path, capsys):
    root = _root(tmp_path / "plain", PLAIN)
    dr = hf.open_dataset(root)
    with pytest.raises(ConfigError, match=r"physics\.primitive\.freshwater_flux is 'e_minus_p' "
                                          r"but the data have no freshwater forcing channels"):
        build_model(ModelConfig(name="neuralogcm", physics=_physics("e_minus_p")), dr.grid,
                    dr.load_stats(), seed=0)
    out = tmp_path / "run"
    rc = cli.main(["train", "--data_root", str(root), "--out_dir", str(out), "--model",
                   "neuralogcm", "--no_progress", "--set", "model.physics.mode=primitive",
                   "--set", "model.physics.output=end", "--set", "model.physics.imbalance=free",
                   "--set", "model.physics.primitive.freshwater_flux=e_minus_p"])
    err = capsys.readouterr().err
    assert rc == 2 and "physics.primitive.freshwater_flux is 'e_minus_p'" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


HYBRID = [  # a tiny corrector on primitive physics with the freshwater flux
    "model.name=neuralogcm", "model.corrector.hid_channels=8", "model.corrector.n_conv_blocks=2",
    "model.corrector.n_down=1", "model.corrector.n_attention_blocks=1",
    "model.corrector.num_heads=2", "model.corrector.norm_groups=4",
    "model.physics.mode=primitive", "model.physics.output=end", "model.physics.imbalance=free",
    "model.physics.primitive.freshwater_flux=e_minus_p",
    "data.batch_size=1", "train.epochs=1", "train.max_steps=2", "optim.warmup_steps=0",
    "data.read_threads=1", "checkpoint.async_save=false",
]


def test_a_hybrid_trains_on_freshwater_data_and_its_checkpoint_restores_the_layout(tmp_path):
    """`neuralogcm train` with ``e_minus_p`` on a freshwater root: two steps, none skipped,
    every physics coefficient and the corrector moved; the checkpoint's metadata names the six
    forcing channels and `load_model` rebuilds the freshwater layout and rolls out on six
    forcing channels (four are a LayoutError naming the shape), as its export does bit for bit; the checkpoint's metadata
    checked against a data root without the channels (as a resumed run is) is a CheckpointError
    naming them, and evaluating the model on that root a LayoutError naming them."""
    from neuralogcm_jax.checkpointing import load
    from neuralogcm_jax.checkpointing.metadata import check_compatible
    from neuralogcm_jax.rollout import rollout
    from neuralogcm_jax.train import config as C
    from neuralogcm_jax.train.loop import train

    root = _root(tmp_path / "fresh", FRESH)
    cfg = C.load_config(None, [f"data.root={root}", f"train.out_dir={tmp_path / 'run'}",
                               *HYBRID])
    res = train(cfg, progress=False)
    assert res.step == 2
    assert_no_step_skipped(res)
    assert_params_moved(initial_params(cfg), res.train_state["params"])
    ck = tmp_path / "run" / "checkpoints"
    loaded = load(ck)
    assert loaded.meta["layout_forcing_variables"] == list(FRESH.forcing_variables)
    m = loaded.model
    assert m.layout == FRESH and m.physics.terms.freshwater_flux == "e_minus_p"
    stats = loaded.stats
    with h5py.File(root / "train" / f"{YEAR}.h5", "r") as f:
        days = np.nan_to_num(f["fields"][40:43])
    state = stats.physical_to_anomaly(days[:1, :FRESH.n_ocean], np.array([40]))
    forcing = stats.normalize_forcing(days[1:, FRESH.n_ocean:])[None]
    a = np.asarray(rollout(m, jnp.asarray(state), jnp.asarray(forcing), 2, 40))
    assert np.isfinite(a).all() and a.shape == (1, 2, FRESH.n_ocean) + m.grid.shape
    # its export loads from its own folder with the same layout and rolls out the same
    from neuralogcm_jax.train.export import export

    ex = load(export(ck, tmp_path / "export"))
    assert ex.model.layout == FRESH and ex.meta["layout_forcing_variables"][-2:] == ["e", "tp"]
    np.testing.assert_array_equal(
        np.asarray(rollout(ex.model, jnp.asarray(state), jnp.asarray(forcing), 2, 40)), a)
    with pytest.raises(LayoutError, match=r"forcing has shape .*expected \[1, 6,"):
        rollout(m, jnp.asarray(state), jnp.asarray(forcing[:, :, :4]), 2, 40)
    plain = _root(tmp_path / "plain", PLAIN)
    with pytest.raises(CheckpointError, match="forcing channels u10 v10 t2m msl e tp, the data "
                                              "have u10 v10 t2m msl"):
        check_compatible(loaded.meta, model_name="neuralogcm",
                         grid=hf.open_dataset(plain).grid, layout=PLAIN, where="ck")
    # evaluating it on that root: one LayoutError naming the forcing before any compute
    from neuralogcm_jax.eval.evaluate import check_compatible as fits_data
    from neuralogcm_jax.eval.evaluate import load_split

    with pytest.raises(LayoutError, match="forcing channels u10 v10 t2m msl e tp vs u10 v10 t2m "
                                          "msl"):
        fits_data(m, load_split(plain, "train"), "data root plain")
    jax.clear_caches()


def test_an_old_checkpoints_metadata_means_the_four_forcing_channels():
    """Metadata written before the freshwater channels has no ``layout_forcing_variables``: it
    is the four-channel layout; a damaged entry is a CheckpointError naming it."""
    from neuralogcm_jax.checkpointing.metadata import layout_of_metadata

    meta = {"layout_depths_m": list(PLAIN.depths_m)}
    assert layout_of_metadata(meta, "ck") == PLAIN
    meta["layout_forcing_variables"] = ["u10", "v10", "t2m", "msl", "e", "tp"]
    assert layout_of_metadata(meta, "ck") == FRESH
    meta["layout_forcing_variables"] = ["u10", "tp"]
    with pytest.raises(CheckpointError, match="ck: metadata's channel layout: forcing channels"):
        layout_of_metadata(meta, "ck")
    assert Stats.identity(np.ones((LEVELS, 2, 3), bool), FRESH).mean.shape == (FRESH.n_channels,)


# ---------------------------------------------------------------------------------- twins
def test_the_twins_freshwater_forcing_is_bulk_evaporation_and_balanced_rain():
    """`freshwater_daily` on the 6 deg world: evaporation is the bulk formula (checked by hand
    at one cell), never negative; rain is never negative and the ocean's E - P integrates to
    zero every day (to 1e-12 of the evaporation); the ocean-mean evaporation is a few mm a day
    (real: about 3.3) and the ITCZ's rain follows the sun (north of the equator in August,
    south of its August position in February)."""
    from neuralogcm_jax.constants import RHO_AIR_KG_M3
    from neuralogcm_jax.data.forcing import (
        ForcingSynthesizer,
        freshwater_daily,
        saturation_humidity,
    )

    world = load_world(6.0, 2)
    g = world.grid
    yf = ForcingSynthesizer(world, 1, freshwater=True).year(1985)
    f = yf.forcing.astype(np.float64)
    assert f.shape == (365, 6) + g.shape
    e, tp = f[:, 4], f[:, 5]
    assert (e <= 0).all() and (tp >= 0).all() and np.isfinite(f).all()
    fw = freshwater_daily(world, f[:, :4], yf.sst_clim)
    # from the float32-stored forcing: equal to 1e-7 m a day (0.1 micrometre)
    np.testing.assert_allclose(fw, f[:, 4:], rtol=1e-5, atol=1e-7)
    area = np.broadcast_to(g.area[:, None], g.shape) * g.wet[0]
    evap_int = np.einsum("thw,hw->t", -fw[:, 0], area)
    net = np.einsum("thw,hw->t", -fw[:, 0] - fw[:, 1], area)
    assert np.abs(net / evap_int).max() < 1e-12
    mean_evap_mm = 1e3 * evap_int.mean() / area.sum()
    assert 2.0 < mean_evap_mm < 6.0, mean_evap_mm
    # one ocean cell by hand
    t, j, i = 200, *np.argwhere(g.wet[0])[len(np.argwhere(g.wet[0])) // 2]
    wind = max(np.hypot(f[t, 0, j, i], f[t, 1, j, i]), 1.0)
    dq = (saturation_humidity(float(yf.sst_clim[t, j, i]), f[t, 3, j, i])
          - 0.8 * saturation_humidity(f[t, 2, j, i] - 273.15, f[t, 3, j, i]))
    want = max(RHO_AIR_KG_M3 * 1.2e-3 * wind * dq, 0.0) / 1000.0 * 86400.0
    assert -fw[t, 0, j, i] == pytest.approx(want, rel=1e-12)
    zonal = tp.mean(axis=2)
    peak = lambda days: g.lat[np.argmax(zonal[days].mean(axis=0))]  # noqa: E731
    assert peak(slice(213, 244)) > 0 and peak(slice(31, 59)) < peak(slice(213, 244))


def test_a_freshwater_twin_stores_e_and_tp_and_its_salinity_feels_them(tmp_path):
    """``DatasetSpec(freshwater=True)`` (``make-data --freshwater``): the same seed gives the
    same u10 .. msl as the plain twin plus the channels e, tp (a 4 L + 7 channel file naming
    them); the truth's top-level salinity over the year is higher than the plain twin's where
    evaporation wins and lower where rain does; the paper-mode truth refuses the option."""
    from neuralogcm_jax.data.twin import DatasetSpec, TruthSpec, generate_dataset

    # 8 levels (10 m): the 2-level ocean is 2 m deep, where the virtual salt flux of a few mm a
    # day changes salinity by ~0.1 psu a day and the truth does not survive the year
    spec = DatasetSpec(resolution_deg=12.0, n_levels=8, train_years=(1984,),
                       valid_years=(), test_years=(), spinup_days=0,
                       truth=TruthSpec(resolution_deg=6.0, substep_s=21600.0,
                                       polar_filter_lat_deg=60.0))
    fresh = generate_dataset(tmp_path / "fresh", dataclasses.replace(spec, freshwater=True),
                             seed=4, progress=False)
    plain = generate_dataset(tmp_path / "plain", spec, seed=4, progress=False)
    dr = hf.open_dataset(fresh)
    lay = ChannelLayout.with_levels(8, freshwater=True)
    assert dr.layout == lay
    with h5py.File(fresh / "train" / "1984.h5", "r") as f:
        xf = f["fields"][()]
        assert f.attrs[hf.FORCING_ATTR] == "u10 v10 t2m msl e tp"
    with h5py.File(plain / "train" / "1984.h5", "r") as f:
        xp = f["fields"][()]
    n = lay.n_ocean
    np.testing.assert_array_equal(xf[:, n:n + 4], xp[:, n:n + 4])
    e, tp = xf[:, lay.channel("e")], xf[:, lay.channel("tp")]
    assert np.isfinite(e).all() and (e <= 0).all() and (tp >= 0).all()
    s0 = lay.channel("S", 0)
    top = dr.grid.wet[0]
    ds = np.where(top, np.nan_to_num(xf[:, s0] - xp[:, s0]).mean(axis=0), 0.0)  # psu, the year
    emp = np.mean(-e - tp, axis=0)  # m a day
    evap, rain = top & (emp > 1e-3), top & (emp < -1e-3)
    assert evap.sum() > 5 and rain.sum() > 5
    print(f"year-mean top S difference: evaporative cells {np.median(ds[evap]):+.3f} psu, rainy "
          f"cells {np.median(ds[rain]):+.3f} psu")
    assert np.mean(ds[evap] > 0) > 0.9 and np.mean(ds[rain] < 0) > 0.9
    with pytest.raises(ConfigError, match="freshwater: the paper-mode truth has no surface salt"):
        DatasetSpec(freshwater=True, truth=TruthSpec(mode="paper"))
