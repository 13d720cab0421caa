"""Networks: parameter count, compile time and forward time of the STE corrector and the four
baselines with their default sizes, batch 1, float32, 97 channels in and 93 out.

Rows per network NAME (``ste``, ``unet``, ``convlstm``, ``simvp``, ``fourcastnet``):
* ``NAME_params``: trainable parameters;
* ``NAME_build`` (s): `build_network` with the default config in a fresh process (the random
  initialisers compile there for the first time, as in every command-line run); CPU seconds in
  the notes;
* ``NAME_compile`` (s): lowering + XLA compilation of the jitted forward pass;
* ``NAME_forward`` (s): median wall time of one jitted forward call after compilation;
* ``NAME_grad`` (s, full mode only): median wall time of one jitted gradient of a mean-square
  loss with respect to every parameter (forward + backward), the cost of a training step.
* ``NAME_grad_in_scan`` (s, full mode only): the same gradient with the network called inside a
  one-step `lax.scan`, as a rollout (and so every training step) calls it. XLA on CPU compiles
  the backward convolutions of a loop body differently from those of a whole function; the
  networks' own convolution (`neuralogcm_jax.nn.conv`) exists so that the two cost the same.

Full mode: 1.5 deg (120 x 240); quick mode: 3 deg (60 x 120), fewer repetitions, no gradient.
Run alone: ``python benchmarks/bench_networks.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh process: the build of network argv[1] on grid argv[2] x argv[3].
_BUILD = """
import json, sys, time
from flax import nnx
from neuralogcm_jax.nn import build_network
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import jax; jax.numpy.zeros(1).block_until_ready()  # the backend's start-up is not the build
t0, c0 = time.perf_counter(), time.process_time()
m = build_network(name, None, 97, 93, (h, w), nnx.Rngs(0))
jax.block_until_ready(jax.tree.leaves(nnx.state(m, nnx.Param)))
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""


def _build_seconds(name: str, grid: tuple[int, int]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-c", _BUILD, name, str(grid[0]), str(grid[1])],
                         env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tqdm import tqdm

    from neuralogcm_jax.nn import NETWORKS, build_network

    grid = (60, 120) if quick else (120, 240)
    repeats = 2 if quick else 5
    where = f"{grid[0]}x{grid[1]} ({'3' if quick else '1.5'} deg), batch 1, 97->93 channels, float32"
    x = jax.random.normal(jax.random.key(0), (1, 97, *grid), jnp.float32)
    target = jax.random.normal(jax.random.key(1), (1, 93, *grid), jnp.float32)
    rows: list[dict] = []
    for name in tqdm(sorted(NETWORKS), desc="networks", unit="net"):
        model = build_network(name, None, 97, 93, grid, nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        n_params = sum(int(p.size) for p in jax.tree.leaves(params))

        def forward(params, x, graphdef=graphdef, rest=rest):
            return nnx.merge(graphdef, params, rest)(x)

        t0 = time.perf_counter()
        fwd = jax.jit(forward).lower(params, x).compile()
        t_compile = time.perf_counter() - t0
        fwd(params, x).block_until_ready()
        t_fwd = _median_seconds(lambda: fwd(params, x).block_until_ready(), repeats)
        build = _build_seconds(name, grid)
        rows += [
            dict(name=f"{name}_params", value=n_params, unit="parameters", notes="default config"),
            dict(name=f"{name}_build", value=build["wall"], unit="s",
                 notes=f"{where}; default config, a fresh process; {build['cpu']:.2f} CPU-s"),
            dict(name=f"{name}_compile", value=t_compile, unit="s", notes=where),
            dict(name=f"{name}_forward", value=t_fwd, unit="s", notes=f"{where}; median of {repeats}"),
        ]
        if not quick:
            def loss(params, x, target):
                return jnp.mean((forward(params, x) - target) ** 2)

            grad = jax.jit(jax.grad(loss))
            jax.block_until_ready(grad(params, x, target))
            t_grad = _median_seconds(lambda: jax.block_until_ready(grad(params, x, target)), 3)
            rows.append(
                dict(name=f"{name}_grad", value=t_grad, unit="s",
                     notes=f"{where}; forward + backward of a mean-square loss; median of 3")
            )

            def scanned(params, x, target):
                def body(c, _):  # the input depends on the carry, as a rollout's state does
                    return c + loss(params, x + c, target), None
                return jax.lax.scan(body, jnp.zeros((), x.dtype), None, length=1)[0]

            grad_scan = jax.jit(jax.grad(scanned))
            jax.block_until_ready(grad_scan(params, x, target))
            t_scan = _median_seconds(lambda: jax.block_until_ready(grad_scan(params, x, target)), 3)
            rows.append(
                dict(name=f"{name}_grad_in_scan", value=t_scan, unit="s",
                     notes=f"{where}; the same gradient, the network inside a one-step lax.scan; "
                           "median of 3")
            )
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
