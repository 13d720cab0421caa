"""Primitive mode's vertical advection and baroclinic pressure gradient: do their known numerical
limits matter at 1.5 deg x 23 levels? (``python -m benchmarks.bench_numerics [--quick]``.)

Two runs of primitive mode (default coefficients, float32, the embedded world's climatology,
January forcing every day) from the same initial state for `DAYS` days, one with upwind
vertical advection (the default, `PrimitiveTerms.vertical_advection_scheme`), one centred.

Vertical advection (upwind's truncation error is a diffusivity ``|w| dzc / 2``):
* ``vadv_numerical_flux_ratio``: at the upwind run's last state, the area-weighted sum over the
  open inner interfaces of upwind's numerical heat flux ``|w| |dT| / 2`` against the physical
  diffusive flux ``kappa |dT| / dzc`` (kappa: ``kappa_v`` plus the convective and shear mixing
  of that state); above 1, the scheme mixes more heat across levels than the physics does (the
  notes give it also for the interfaces below `DEEP_M`, under the mixed layer);
* ``vadv_peclet_over_2``: the area fraction of those interfaces where ``|w| dzc / kappa > 2``
  (upwind's diffusivity exceeds the physical one; centred values are not monotone there);
* ``vadv_centred_minus_upwind_T`` / ``_S``: volume-weighted RMS difference of T (degC) / S
  (psu) between the two runs after `DAYS` days, against the RMS of the upwind run's own change
  over those days (notes); ``vadv_centred_undershoot``: wet cells of the centred run below the
  freezing point or outside the initial range of T by more than 0.01 degC (non-monotone).

Pressure gradient (the centred average of face gradients cannot see a 2 dx density
checkerboard, so the dynamics neither feel nor damp one), with a third run from the same state:
upwind with the Rhie-Chow face correction of the layer transports
(`PrimitiveTerms.baroclinic_face_correction` = `FACE_CORRECTION`):
* ``checkerboard_rho_day0`` / ``_dayN``: the checkerboard share of the density anomaly's
  2 x 2 variance: over every all-wet 2 x 2 block of cells, the RMS of its checkerboard
  component ``(q00 - q01 - q10 + q11) / 4`` against the RMS of all three non-mean components
  (0 for a smooth field, 0.58 for white noise), cos(lat)-weighted, at day 0 and after `DAYS`
  days of the upwind run (and at every `CHUNK` days in the notes); a checkerboard the
  pressure gradient lets grow would show as a rising share;
* ``checkerboard_rho_dayN_face_corrected``: the same share in the corrected run, and
  ``face_corrected_minus_upwind_T``: the RMS difference of T between the two runs after `DAYS`
  days (what the correction changes beside the checkerboard); ``..._face_corrected_max``: with
  the largest weight, 1;
* ``checkerboard_rho_dayN_rhie_chow_ssh``: with the barotropic subcycle's Rhie-Chow correction
  seeing eta alone (`PrimitiveTerms.rhie_chow_pressure` "ssh"; the default "total" gives the
  layer transports the same correction of the baroclinic pressure, so the default run is
  already partly checkerboard-aware);
* ``checkerboard_rho_dayN_no_pressure_gradient``: the control, a run without the baroclinic
  pressure gradient at all; if the pressure gradient's blindness let the checkerboard grow, this
  run's share would grow as the default's does, and the corrected runs' would not.

The barotropic mode over the real sea floor (`PrimitiveTerms.barotropic_depth` "sea_floor", a
further run from the same state):
* ``sea_floor_minus_default_T``: the RMS difference of T (degC) from the default run after
  `DAYS` days, with the differences of SSH and of the depth-mean current and the largest speeds
  in the notes.

The answer is written by hand under the section in ``benchmarks/BENCHMARKS.md``.
"""

from __future__ import annotations

import sys
import time

DAYS = 30
CHUNK = 10
DEEP_M = 100.0  # below the mixed layer: the interfaces the flux ratio is also given for
FACE_CORRECTION = 0.5  # the face-corrected run's PrimitiveTerms.baroclinic_face_correction


def _checkerboard_share(q, wet, lat):
    """The checkerboard share of the 2 x 2 block variance of ``q`` ``[L, H, W]`` (see above)."""
    import numpy as np

    q = np.asarray(q, np.float64)
    w = np.asarray(wet, bool)
    r = lambda a: np.roll(a, -1, axis=-1)  # noqa: E731  (periodic in longitude)
    q00, q01, q10, q11 = q[:, :-1], r(q)[:, :-1], q[:, 1:], r(q)[:, 1:]
    ok = w[:, :-1] & r(w)[:, :-1] & w[:, 1:] & r(w)[:, 1:]
    cb = (q00 - q01 - q10 + q11) / 4
    gx = (q01 + q11 - q00 - q10) / 4
    gy = (q10 + q11 - q00 - q01) / 4
    lat_c = 0.5 * (lat[:-1] + lat[1:])
    wt = np.cos(np.deg2rad(lat_c))[None, :, None] * ok
    num = (wt * cb**2).sum()
    den = (wt * (cb**2 + gx**2 + gy**2)).sum()
    return float(np.sqrt(num / den))


def _vertical_diagnostics(physics, coeffs, state):
    """Upwind's numerical against the physical vertical heat flux at `state` (see above)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from neuralogcm_jax.grid import layer_interfaces
    from neuralogcm_jax.physics.primitive import PrimitiveEquation, _interfaces
    from neuralogcm_jax.physics.vertical import interface_open

    geo = physics.geometry(jnp.float32)
    eq = PrimitiveEquation.from_coefficients(geo, coeffs, physics.terms, physics.eos,
                                             physics.n_barotropic, physics.dt_barotropic_s,
                                             physics.specs)
    dt = physics.dt_substep_s

    @jax.jit
    def diag(s):
        e = eq.with_step_convection(s.T, s.S, s.u, s.v)
        u, v, slow = e.baroclinic_momentum(s, dt)
        *_, h_new, w, _ = e.layer_transports(u, v, s.ssh, dt, slow)
        kappa = _interfaces(e.coeffs["kappa_v"]) * jnp.ones_like(w[1:-1])
        if e.conv is not None:
            kappa = kappa + e.conv
        if e.shear is not None:
            kappa = kappa + e.shear[0]
        return w[1:-1], kappa, h_new

    w, kappa, h = (np.asarray(x, np.float64) for x in diag(state))
    wet = np.asarray(physics.grid.wet, bool)
    open_ = np.asarray(interface_open(jnp.asarray(wet)), bool)
    dzc = 0.5 * (h[1:] + h[:-1])
    T = np.asarray(state.T, np.float64)
    dT = np.abs(T[:-1] - T[1:])
    area = np.asarray(physics.grid.area, np.float64)[None, :, None] * open_
    f_num = (area * np.abs(w) * dT / 2).sum()
    f_phys = (area * kappa * dT / dzc).sum()
    deep = (layer_interfaces(np.asarray(physics.grid.depth, np.float64))[1:-1] > DEEP_M)[:, None, None]
    f_num_deep = (deep * area * np.abs(w) * dT / 2).sum()
    f_phys_deep = (deep * area * kappa * dT / dzc).sum()
    pe = np.abs(w) * dzc / kappa
    frac = float((area * (pe > 2)).sum() / area.sum())
    return (float(f_num / f_phys), float(f_num_deep / f_phys_deep), frac,
            float(np.median(pe[open_])))


def run(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from neuralogcm_jax.data.world import load_world
    from neuralogcm_jax.physics import PhysicsConfig, make_physics
    from neuralogcm_jax.physics.params import default_raw, to_si
    from neuralogcm_jax.physics.primitive import FREEZING_SLOPE_K_PSU, PrimitiveTerms

    res, days, chunk = (3.0, 4, 2) if quick else (1.5, DAYS, CHUNK)
    world = load_world(res, 23)
    grid = world.grid
    L, (H, W) = grid.n_levels, grid.shape
    shape = f"{res:g} deg, {L}x{H}x{W}, float32, embedded world, January forcing"
    state0 = jax.tree.map(jnp.asarray, world.initial_state(jnp.float32))
    forcing = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), world.monthly_forcing(0))
    forcings = jax.tree.map(lambda x: jnp.broadcast_to(x, (chunk,) + x.shape), forcing)
    wet = np.asarray(grid.wet, bool)
    vol = (np.asarray(grid.dz)[:, None, None] * np.asarray(grid.area)[None, :, None]) * wet

    def rms(a):
        return float(np.sqrt((vol * np.asarray(a, np.float64) ** 2).sum() / vol.sum()))

    def density(phys, s):
        return np.asarray(phys.eos.density_anomaly(s.T, s.S, jnp.asarray(grid.depth)[:, None, None]))

    runs, t_run = {}, {}
    shares = {"upwind": [], "face": [], "face_max": [], "no_pg": [], "ssh": []}
    for name, terms in (("upwind", PrimitiveTerms()),
                        ("centred", PrimitiveTerms(vertical_advection_scheme="centred")),
                        ("face", PrimitiveTerms(baroclinic_face_correction=FACE_CORRECTION)),
                        ("face_max", PrimitiveTerms(baroclinic_face_correction=1.0)),
                        ("no_pg", PrimitiveTerms(pressure_gradient=False)),
                        ("ssh", PrimitiveTerms(rhie_chow_pressure="ssh")),
                        ("sea_floor", PrimitiveTerms(barotropic_depth="sea_floor"))):
        phys = make_physics(grid, PhysicsConfig(mode="primitive", primitive=terms))
        coeffs = to_si({k: jnp.asarray(v) for k, v in default_raw(phys.specs).items()}, phys.specs)
        step = jax.jit(lambda s, c=coeffs, p=phys: p.integrate(c, s, forcings, chunk))
        s = state0
        t0 = time.perf_counter()
        if name in shares:
            shares[name].append(_checkerboard_share(density(phys, s), wet, grid.lat))
        for _ in range(days // chunk):
            s = jax.block_until_ready(step(s))
            if name in shares:
                shares[name].append(_checkerboard_share(density(phys, s), wet, grid.lat))
        t_run[name] = time.perf_counter() - t0
        runs[name] = (phys, coeffs, s)
    phys, coeffs, up = runs["upwind"]
    cen, fc = runs["centred"][2], runs["face"][2]
    finite = all(bool(np.isfinite(np.asarray(x)[wet if x.ndim == 3 else wet[0]]).all())
                 for _, _, s in runs.values() for x in s)
    flux_ratio, flux_ratio_deep, frac_pe, pe_median = _vertical_diagnostics(phys, coeffs, up)
    T0, Tc, Sc = (np.asarray(x, np.float64) for x in (state0.T, cen.T, cen.S))
    below = (Tc < FREEZING_SLOPE_K_PSU * Sc - 0.01) | (Tc < T0[wet].min() - 0.01) | (
        Tc > T0[wet].max() + 0.01)
    cb_t = (_checkerboard_share(state0.T, wet, grid.lat), _checkerboard_share(up.T, wet, grid.lat))
    d_t, d_s = rms(np.asarray(cen.T) - np.asarray(up.T)), rms(np.asarray(cen.S) - np.asarray(up.S))
    ch_t, ch_s = rms(np.asarray(up.T) - T0), rms(np.asarray(up.S) - np.asarray(state0.S))
    d_face = rms(np.asarray(fc.T) - np.asarray(up.T))
    d_ssh = rms(np.asarray(runs["ssh"][2].T) - np.asarray(up.T))
    sf = runs["sea_floor"][2]
    area2 = np.asarray(grid.area, np.float64)[:, None] * wet[0]

    def rms2(a):
        return float(np.sqrt((area2 * np.asarray(a, np.float64) ** 2).sum() / area2.sum()))

    def depth_mean(s):
        dzw = np.asarray(grid.dz)[:, None, None] * wet
        return [(dzw * np.asarray(x, np.float64)).sum(0) / np.maximum(dzw.sum(0), 1e-9)
                for x in (s.u, s.v)]

    def speed_max(s):
        return float(np.sqrt(np.asarray(s.u, np.float64) ** 2
                             + np.asarray(s.v, np.float64) ** 2)[wet].max())

    (ub_d, vb_d), (ub_s, vb_s) = depth_mean(up), depth_mean(sf)
    every = {k: ", ".join(f"day {i * chunk}: {x:.4f}" for i, x in enumerate(v))
             for k, v in shares.items()}
    return [
        {"name": "vadv_numerical_flux_ratio", "value": flux_ratio, "unit": "ratio",
         "notes": f"{shape}; upwind's numerical vertical heat flux / the physical diffusive one "
                  f"(kappa_v + convective + shear mixing), day {days} of the upwind run; "
                  f"below {DEEP_M:g} m: {flux_ratio_deep:.3g}"},
        {"name": "vadv_peclet_over_2", "value": frac_pe, "unit": "area fraction",
         "notes": f"open inner interfaces with |w| dzc / kappa > 2; median cell Peclet number "
                  f"{pe_median:.3g}"},
        {"name": "vadv_centred_minus_upwind_T", "value": d_t, "unit": "degC",
         "notes": f"RMS after {days} days (volume-weighted); the upwind run's own change of T "
                  f"over them: {ch_t:.4f} degC"},
        {"name": "vadv_centred_minus_upwind_S", "value": d_s, "unit": "psu",
         "notes": f"RMS after {days} days; the upwind run's own change of S: {ch_s:.4f} psu"},
        {"name": "vadv_centred_undershoot", "value": int(below[wet].sum()), "unit": "cells",
         "notes": f"of {int(wet.sum())} wet cells: below freezing or outside the initial T range "
                  f"by > 0.01 degC; all seven runs finite: {finite}"},
        {"name": "checkerboard_rho_day0", "value": shares["upwind"][0], "unit": "share",
         "notes": f"{shape}; checkerboard share of the density anomaly's 2x2 block variance "
                  f"(white noise 0.58); T: {cb_t[0]:.4f}"},
        {"name": f"checkerboard_rho_day{days}", "value": shares["upwind"][-1], "unit": "share",
         "notes": f"upwind run; {every['upwind']}; T at day {days}: {cb_t[1]:.4f}"},
        {"name": f"checkerboard_rho_day{days}_face_corrected", "value": shares["face"][-1],
         "unit": "share",
         "notes": f"upwind with baroclinic_face_correction {FACE_CORRECTION:g}; {every['face']}; "
                  f"T at day {days}: {_checkerboard_share(fc.T, wet, grid.lat):.4f}"},
        {"name": f"checkerboard_rho_day{days}_face_corrected_max", "value": shares["face_max"][-1],
         "unit": "share", "notes": f"upwind with baroclinic_face_correction 1; {every['face_max']}"},
        {"name": f"checkerboard_rho_day{days}_no_pressure_gradient", "value": shares["no_pg"][-1],
         "unit": "share", "notes": f"upwind without the baroclinic pressure gradient (control); "
                                   f"{every['no_pg']}"},
        {"name": f"checkerboard_rho_day{days}_rhie_chow_ssh", "value": shares["ssh"][-1],
         "unit": "share", "notes": f"upwind, the barotropic Rhie-Chow correction seeing eta alone "
                                   f"(rhie_chow_pressure: ssh; the default before 2026-12-05); "
                                   f"{every['ssh']}; T RMS difference from the default run "
                                   f"after {days} days: {d_ssh:.4f} degC"},
        {"name": "face_corrected_minus_upwind_T", "value": d_face, "unit": "degC",
         "notes": f"RMS after {days} days (volume-weighted); the upwind run's own change of T: "
                  f"{ch_t:.4f} degC"},
        {"name": "sea_floor_minus_default_T", "value": rms(np.asarray(sf.T) - np.asarray(up.T)),
         "unit": "degC",
         "notes": f"barotropic_depth sea_floor ({runs['sea_floor'][0].n_barotropic} short steps "
                  f"a substep, default {phys.n_barotropic}); RMS after {days} days, the default "
                  f"run's own change {ch_t:.4f}; SSH RMS difference {rms2(sf.ssh - up.ssh):.4f} m "
                  f"(the default's SSH RMS {rms2(up.ssh):.4f}); depth-mean current RMS: "
                  f"default {rms2(np.hypot(ub_d, vb_d)):.4f}, sea floor "
                  f"{rms2(np.hypot(ub_s, vb_s)):.4f} m/s, difference "
                  f"{rms2(np.hypot(ub_s - ub_d, vb_s - vb_d)):.4f}; largest speed "
                  f"{speed_max(up):.3f} / {speed_max(sf):.3f} m/s"},
        {"name": "run_time", "value": sum(t_run.values()), "unit": "s",
         "notes": f"seven {days}-day runs with compilation (" + ", ".join(
             f"{k} {v:.0f} s" for k, v in t_run.items()) + ")"},
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv[1:]):
        print(f"{row['name']:28s} {row['value']:12.4g} {row['unit']:14s} {row['notes']}")
