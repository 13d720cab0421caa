"""One case of the gradient-health matrix, run in a fresh process (see tests/test_gradients.py).

    python tests/gradient_worker.py '{"res": 6.0, "levels": 4, "mode": "paper", ...}'

Prints one JSON line. Two phases, as training and checking need them:

1. float32 with ``jax_enable_x64`` off (what a training run does): the gradient of the K-day hybrid
   training loss (`train.state._rollout_loss`, batch of one, realistic state) with respect to every
   parameter of NeuralOGCM, physics coefficients and corrector; reports which leaves are
   non-finite and the physics coefficients' gradients.
2. float64 (x64 on): the same loss, same parameter values, by central differences in each
   physics coefficient, for comparison, and the float64 autodiff gradient in the same directions
   (which tells a float32 error, ad32 far from ad64, from a loss that is not smooth at the step,
   ad64 far from fd64). A per-level coefficient (a vector) is differenced along two directions:
   its float64 gradient's own (``fd64``, ``ad32``, ``ad64``: no cancellation between levels) and
   a random +-1 one (``fd64_random`` ...: an independent check of the float64 gradient); and its
   whole float32 gradient is compared with the float64 one (``rel32_norm``: the norm-wise
   relative difference) and level by level (``rel32_worst_level``, reported only).

The state is the embedded world's climatology plus smooth random anomalies, with currents of up to
`u_max` m/s everywhere, the polar rows included, so the polar filter and the coasts inside its band
(Antarctica, Greenland, the Arctic shelves) are exercised.
"""

from __future__ import annotations

import json
import sys

import neuralogcm_jax  # noqa: F401  (XLA settings before the backend starts)
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuralogcm_jax.data.normalize import Stats
from neuralogcm_jax.data.world import load_world
from neuralogcm_jax.layout import ChannelLayout
from neuralogcm_jax.model import ModelConfig, build_model, cast_model
from neuralogcm_jax.nn.ste import STEConfig
from neuralogcm_jax.physics import PhysicsConfig
from neuralogcm_jax.train.loss import loss_weights
from neuralogcm_jax.train.state import _rollout_loss

# Typical surface standard deviations of the real data (T, S, U, V, SSH) and forcing statistics.
STD = {"T": 0.58, "S": 0.32, "U": 0.15, "V": 0.11, "SSH": 0.064}
FORCING_MEAN = [-0.05, 0.19, 277.98, 100966.0]
FORCING_STD = [5.39, 4.63, 21.55, 1307.0]
PHYSICS_OPTIONS = ("tracer_advection", "momentum_advection", "pressure_gradient", "integrator",
                   "polar_filter_transfer", "imbalance", "output")


def smooth_noise(rng, shape, passes=4):
    """Random field smoothed by repeated 1-2-1 averaging in both directions (periodic in x)."""
    x = rng.normal(size=shape)
    for _ in range(passes):
        x = 0.25 * (np.roll(x, 1, -1) + 2 * x + np.roll(x, -1, -1))
        x[..., 1:-1, :] = 0.25 * (x[..., :-2, :] + 2 * x[..., 1:-1, :] + x[..., 2:, :])
    return x / np.abs(x).max()


def make_case(case: dict):
    world = load_world(case["res"], case["levels"])
    grid = world.grid
    layout = ChannelLayout.with_levels(grid.n_levels)
    n = layout.n_ocean
    wet = grid.wet
    rng = np.random.default_rng(case.get("seed", 0))
    mean = np.zeros(layout.n_channels)
    std = np.ones(layout.n_channels)
    for var in ("T", "S", "U", "V"):
        std[layout.var_slice(var)] = STD[var]
    std[layout.channel("SSH")] = STD["SSH"]
    mean[n:] = FORCING_MEAN
    std[n:] = FORCING_STD
    clim = np.zeros((366, n) + grid.shape, np.float32)
    clim[:, layout.var_slice("T")] = world.T_clim[None]
    clim[:, layout.var_slice("S")] = world.S_clim[None]
    stats = Stats.build(mean, std, clim, wet, layout)

    # Currents from a smooth streamfunction, largest speed u_max; T/S/SSH anomalies of order std.
    psi = smooth_noise(rng, (grid.n_levels,) + grid.shape)
    u = -(np.roll(psi, -1, -2) - np.roll(psi, 1, -2))
    v = np.roll(psi, -1, -1) - np.roll(psi, 1, -1)
    speed = np.sqrt(u**2 + v**2)[wet].max()
    u, v = (case.get("u_max", 1.5) / speed) * u, (case.get("u_max", 1.5) / speed) * v
    phys = np.zeros((n,) + grid.shape)
    phys[layout.var_slice("U")] = u
    phys[layout.var_slice("V")] = v
    phys[layout.var_slice("T")] = 1.5 * smooth_noise(rng, (grid.n_levels,) + grid.shape)
    phys[layout.var_slice("S")] = 0.5 * smooth_noise(rng, (grid.n_levels,) + grid.shape)
    phys[layout.channel("SSH")] = 0.2 * smooth_noise(rng, grid.shape)
    state = phys / std[:n, None, None] * stats.wet  # anomalies (climatology removed)
    k = max(case["days"])
    forcing = smooth_noise(rng, (1, k, 4) + grid.shape)
    target = state[None, None] + 0.3 * smooth_noise(rng, (1, k, n) + grid.shape) * stats.wet
    batch = {
        "state": state[None].astype(np.float32),
        "forcing": forcing.astype(np.float32),
        "target": target.astype(np.float32),
        "doy": np.array([100], np.int32),
    }
    # the case's physics options; the rest keep PhysicsConfig's defaults
    options = {k: case[k] for k in PHYSICS_OPTIONS if k in case}
    physics = PhysicsConfig(mode=case["mode"], **options)
    corrector = STEConfig(hid_channels=16, n_conv_blocks=2, n_down=1, n_attention_blocks=1,
                          num_heads=2, norm_groups=4, drop_path=0.0)
    cfg = dict(name="neuralogcm", physics=physics, corrector=corrector,
               per_level_coefficients=bool(case.get("per_level", False)))
    return grid, layout, stats, batch, cfg


def split(model):
    graphdef, params, rngs, consts = nnx.split(model, nnx.Param, nnx.RngState, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rngs), nnx.to_pure_dict(consts)


def flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        out.update(flat(v, name) if isinstance(v, dict) else {name: v})
    return out


def main(case: dict) -> dict:
    jax.config.update("jax_enable_x64", False)
    grid, layout, stats, batch, cfg = make_case(case)
    weights = jnp.asarray(loss_weights(grid, layout))
    model = build_model(ModelConfig(**cfg), grid, stats, seed=0)
    graphdef, params, rngs, consts = split(model)
    result = {"case": case, "days": {}}
    for k in case["days"]:
        def loss(p, k=k):
            value, _ = _rollout_loss(graphdef, p, rngs, consts, batch, weights, k, True, True)
            return value

        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        g = {name: np.asarray(x) for name, x in flat(grads).items()}
        result["days"][k] = {
            "loss32": float(value),
            "nonfinite": sorted(name for name, x in g.items() if not np.isfinite(x).all()),
            "n_leaves": len(g),
            "physics_grad32": {name: x.tolist() for name, x in g.items()
                               if name.startswith("physics_params.")},
        }

    # float64 central differences at the same parameter values
    jax.config.update("jax_enable_x64", True)
    model64 = build_model(ModelConfig(**cfg, dtype="float64"), grid, stats, seed=0)
    cast_model(model64, jnp.float64)
    graphdef64, _, rngs64, consts64 = split(model64)
    params64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    batch64 = {key: (x.astype(np.float64) if x.dtype == np.float32 else x)
               for key, x in batch.items()}
    weights64 = jnp.asarray(loss_weights(grid, layout, dtype=np.float64))
    rng = np.random.default_rng(1)
    # A small step: the primitive loss is smooth only at the scale of its kinks (the freezing
    # clamp, the convective ramp's ends, upwind switches); at 1e-3 central differences crossed
    # enough of them on the 3 deg, 23-level world to differ from float64 autodiff by 7 %.
    h = float(case.get("fd_step", 1e-5))
    for k in case["days"]:
        loss64 = jax.jit(lambda p, k=k: _rollout_loss(
            graphdef64, p, rngs64, consts64, batch64, weights64, k, True, False)[0])
        g64 = jax.jit(jax.grad(lambda p: loss64(p)))(params64)["physics_params"]
        r = result["days"][k]
        for key in ("fd64", "ad32", "ad64", "fd64_random", "ad32_random", "ad64_random",
                    "rel32_norm", "rel32_worst_level"):
            r[key] = {}
        for name in params64["physics_params"]:
            raw = np.asarray(params64["physics_params"][name])
            g32 = np.asarray(r["physics_grad32"][f"physics_params.{name}"], np.float64)
            gr64 = np.asarray(g64[name])

            def at(step, name=name, raw=raw):
                p = jax.tree.map(lambda x: x, params64)
                p["physics_params"] = dict(p["physics_params"])
                p["physics_params"][name] = raw + step
                return float(loss64(p))

            def compare(direction, suffix=""):
                r["fd64" + suffix][name] = (at(h * direction) - at(-h * direction)) / (2 * h)
                r["ad32" + suffix][name] = float(np.sum(g32 * direction))
                r["ad64" + suffix][name] = float(np.sum(gr64 * direction))

            if raw.ndim == 0:
                compare(np.ones_like(raw))
                continue
            # A +-1 direction sums the levels' gradients with random signs; where they nearly
            # cancel, the sum is small against each level's float32 round-off (5-day nu_t of
            # primitive mode, 6 deg x 23 levels: 1.08 % from central differences along a random
            # direction, 0.22 % norm-wise against central differences level by level).
            norm = float(np.linalg.norm(gr64))
            compare(gr64 / norm if norm > 0 else np.ones_like(raw))
            compare(rng.choice([-1.0, 1.0], raw.shape), "_random")
            r["rel32_norm"][name] = float(np.linalg.norm(g32 - gr64) / max(norm, 1e-300))
            r["rel32_worst_level"][name] = float(np.max(np.abs(g32 - gr64) / np.abs(gr64)))
        result["days"][k]["loss64"] = float(loss64(params64))
    return result


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
