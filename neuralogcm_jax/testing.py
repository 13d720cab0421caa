"""Idealised grids and states for tests, benchmarks and the physics demo.

Not part of the model: a realistic global grid without a dataset (`realistic_grid`) and a smooth,
analytic initial ocean state on it (`smooth_state`), from which the physics core can be run,
timed and checked (``neuralogcm physics-demo``, `benchmarks/bench_physics.py`,
`tests/test_physics_paper.py`); and `run_in_own_group`, how tests and benchmarks run a child
process.
"""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np

from neuralogcm_jax.data.world import World, load_world
from neuralogcm_jax.errors import NeuralOGCMError
from neuralogcm_jax.grid import GLORYS23_DEPTHS_M, Grid
from neuralogcm_jax.layout import OceanState


def coastline_wet_mask(grid: Grid, samples: int = 6, min_ocean_fraction: float = 0.5) -> np.ndarray:
    """``[H, W]`` bool: cells whose ocean fraction (from `global_land_mask`) is at least
    `min_ocean_fraction`, sampled on ``samples x samples`` points per cell.

    Only for spherical grids. The poleward rows beyond 80 deg N are kept as ocean only where the
    mask says so (the Arctic), Antarctica is land.
    """
    from global_land_mask import globe  # optional dependency (the test extra)

    h, w = grid.shape
    dlat = abs(grid.lat[1] - grid.lat[0])
    dlon = grid.lon[1] - grid.lon[0]
    off = (np.arange(samples) + 0.5) / samples - 0.5
    lat = np.clip(grid.lat[:, None] + off[None, :] * dlat, -89.999, 89.999)  # [H, s]
    lon = grid.lon[:, None] + off[None, :] * dlon  # [W, s]
    lon = (lon + 180.0) % 360.0 - 180.0
    la = np.broadcast_to(lat[:, None, :, None], (h, w, samples, samples))
    lo = np.broadcast_to(lon[None, :, None, :], (h, w, samples, samples))
    frac = globe.is_ocean(la.ravel(), lo.ravel()).reshape(h, w, -1).mean(axis=-1)
    return frac >= min_ocean_fraction


def embedded_world(resolution_deg: float, depth) -> World | None:
    """The embedded world (`neuralogcm_jax.data.world`) for these levels, or None."""
    depth = tuple(float(d) for d in depth)
    if depth != tuple(GLORYS23_DEPTHS_M[: len(depth)]):
        return None
    try:
        return load_world(resolution_deg, len(depth))
    except NeuralOGCMError:
        return None


def realistic_grid(resolution_deg: float = 1.5, depth=GLORYS23_DEPTHS_M) -> Grid:
    """A global grid (rows north to south) with a realistic wet mask at every level.

    The embedded world's depth-dependent masks when `neuralogcm_jax.data.world` can provide them
    (GLORYS levels, a resolution it supports), otherwise the `global_land_mask` coastline at
    every level.
    """
    world = embedded_world(resolution_deg, depth)
    if world is not None:
        return world.grid
    g = Grid.regular(resolution_deg, depth=depth)
    return g.with_wet(coastline_wet_mask(g))


def smooth_state(grid: Grid, max_speed_m_s: float = 1.5, dtype=np.float32) -> OceanState:
    """A smooth initial state on `grid` (fields ``[L, H, W]``, land zero).

    u: zonal jets ``max_speed * cos(phi) * sin(3 phi)`` plus a wave-2 meander in v; T: 28 degC at the
    equator to -1 degC at the poles, cooling with depth; S: 35 psu with a weak latitudinal
    contrast; ssh: 0. Speeds stay below `max_speed_m_s`.
    """
    L = grid.n_levels
    phi = np.deg2rad(grid.lat)[:, None]
    lam = np.deg2rad(grid.lon)[None, :]
    z = grid.depth[:, None, None]
    decay = np.exp(-z / 500.0)
    u = 0.8 * np.cos(phi) * np.sin(3 * phi) * decay
    v = 0.5 * np.cos(phi) ** 2 * np.sin(2 * lam) * np.sin(2 * phi) * decay
    speed = np.sqrt(u**2 + v**2)
    scale = max_speed_m_s / max(float(speed.max()), 1e-12)
    u, v = u * scale, v * scale
    T = (-1.0 + 29.0 * np.cos(phi) ** 2) * np.exp(-z / 800.0) + 4.0 * (1 - np.exp(-z / 800.0))
    T = T + 0.5 * np.cos(phi) * np.cos(3 * lam)
    S = 34.5 + 1.0 * np.cos(phi) ** 2 + 0.0 * z
    wet = grid.wet
    fields = [np.where(wet, np.broadcast_to(x, (L,) + grid.shape), 0.0).astype(dtype)
              for x in (u, v, T, S)]
    return OceanState(*fields, ssh=np.zeros(grid.shape, dtype))


def run_in_own_group(cmd, *, env=None, cwd=None, timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` (text output captured) in a process group of its own. After `timeout` seconds
    the whole group (the child and whatever it started) is killed and `subprocess.TimeoutExpired`
    raised, so no grandchild outlives a test or a benchmark."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
