"""The functional rollout API, for notebooks and for training (see `docs/design.md`).

    traj = rollout(model, state0, forcings, steps=90, doy0=doy)      # one lax.scan
    step_fn, variables = make_step_fn(model)                          # a pure step
    fn, variables = make_rollout_fn(model, remat=True)                # pure, for jax.grad
    ys, rngs = rollout_scan(graphdef, variables, state0, forcings, doys,   # the scan itself:
                            targets=y, per_step=loss_fn, rngs=rngs)   # what training runs

A rollout is a single `lax.scan`, so compile time does not grow with `steps` (the scan body is
traced once); one compiled function is cached per model structure (its `nnx.GraphDef`, hashable
because the model's static data are) and input shape. Training through K steps
wraps the scan body in `jax.checkpoint` (and the physics already rematerialises its substeps), so
activation memory grows with K only by one stored state per step. Every rollout, training's
K-day loss included (`neuralogcm_jax.train.state`), is a call of `rollout_scan`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from neuralogcm_jax import calendar, checkpointing
from neuralogcm_jax.errors import LayoutError
from neuralogcm_jax.model import Forecaster

Array = Any


def make_step_fn(model: Forecaster) -> tuple[Callable, nnx.State]:
    """A pure one-day step and the model's variables.

    ``step_fn(variables, state [B, n_ocean, H, W], forcing_next [B, n_forcing, H, W], doy [B],
    doy_next=None) -> next_state``: jittable, differentiable w.r.t. `variables`."""
    graphdef, variables = nnx.split(model)

    def step_fn(variables, state, forcing_next, doy, doy_next=None, deterministic=True):
        m = nnx.merge(graphdef, variables)
        return m.step(state, forcing_next, doy, doy_next=doy_next, deterministic=deterministic)

    return step_fn, variables


def make_rollout_fn(
    model: Forecaster,
    *,
    start_with_input: bool = False,
    post_process: Callable[[Array], Array] | None = None,
    remat: bool = False,
    stop_gradient_every: int | None = None,
    deterministic: bool = True,
) -> tuple[Callable, nnx.State]:
    """A pure rollout ``fn(variables, state0, forcings, doys) -> trajectory`` and the variables.

    Args:
      start_with_input: prepend `state0` to the trajectory.
      post_process: applied to every produced state (e.g. a clamp); it feeds the next step.
      remat: `jax.checkpoint` the scan body (training through many steps).
      stop_gradient_every: cut the gradient through the state every n steps (truncated
        backpropagation through time); None keeps the full gradient.

    ``fn`` takes ``state0 [B, n_ocean, H, W]``, ``forcings [B, S, n_forcing, H, W]`` (the forcing
    of days 1..S) and ``doys [B, S+1]`` (day-of-year index of days 0..S) and returns
    ``[B, S(+1), n_ocean, H, W]``. The number of steps is ``S``, the forcing's length. For a
    per-step value instead of the trajectory (a loss), or RNG streams carried through the
    steps, see `rollout_scan`.
    """
    graphdef, variables = nnx.split(model)
    fn = _rollout_fn(graphdef, start_with_input=start_with_input, post_process=post_process,
                     remat=remat, stop_gradient_every=stop_gradient_every,
                     deterministic=deterministic)
    return fn, variables


def rollout_scan(
    graphdef: nnx.GraphDef,
    variables: nnx.State | dict | tuple,
    state0: Array,
    forcings: Array,
    doys: Array,
    *,
    targets: Any = None,
    per_step: Callable[[Array, Any], Any] | None = None,
    rngs: dict | None = None,
    post_process: Callable[[Array], Array] | None = None,
    remat: bool = False,
    stop_gradient_every: int | None = None,
    deterministic: bool = True,
) -> tuple[Any, dict | None]:
    """The one `lax.scan` over ``model.step`` that every rollout runs: ``(ys, rngs)``.

    Args:
      graphdef, variables: the model, as `nnx.split` gives it; `variables` may be a tuple of
        states (the parts of a filtered split, e.g. ``(params, consts)``), merged every step.
      state0: ``[B, n_ocean, H, W]``; forcings: ``[B, S, n_forcing, H, W]`` (days 1..S);
      doys: ``[B, S+1]`` day-of-year index of days 0..S.
      targets: a pytree of ``[B, S, ...]`` arrays, handed to `per_step` one step at a time.
      per_step: ``per_step(state, target) -> value`` of each produced state (before its cast
        to the input's dtype) and the step's slice of `targets` (``[B, ...]``; None without
        targets). ``ys`` then stacks these values, ``[S, ...]``, so the trajectory is not
        kept; without it ``ys`` is the trajectory, time-major ``[S, B, n_ocean, H, W]``.
      rngs: the model's RNG streams (`nnx.RngState`, as a pure dict of `nnx.to_pure_dict`),
        merged into the model at each step and split out of it after the step, so a
        non-deterministic step draws fresh numbers every day; returned advanced (None when
        not given).
      post_process: applied to every produced state; it feeds the next step.
      remat: `jax.checkpoint` the scan body (training through many steps).
      stop_gradient_every: cut the gradient through the state every n steps.
    """
    parts = variables if isinstance(variables, tuple) else (variables,)

    def body(carry, xs):
        state, k, r = carry
        forcing, doy, doy_next, target = xs
        m = nnx.merge(graphdef, *parts, *(() if r is None else (r,)))
        nxt = m.step(state, forcing, doy, doy_next=doy_next, deterministic=deterministic)
        if r is not None:
            _, _, r, _ = nnx.split(m, nnx.Param, nnx.RngState, ...)
            r = nnx.to_pure_dict(r)
        if post_process is not None:
            nxt = post_process(nxt)
        if stop_gradient_every:
            cut = (k + 1) % stop_gradient_every == 0
            nxt = jnp.where(cut, jax.lax.stop_gradient(nxt), nxt)
        y = nxt if per_step is None else per_step(nxt, target)
        return (nxt.astype(state.dtype), k + 1, r), y

    if remat:
        body = jax.checkpoint(body)
    xs = (jnp.moveaxis(forcings, 1, 0), jnp.moveaxis(doys[:, :-1], 1, 0),
          jnp.moveaxis(doys[:, 1:], 1, 0), jax.tree.map(lambda t: jnp.moveaxis(t, 1, 0), targets))
    (_, _, rngs), ys = jax.lax.scan(body, (state0, jnp.int32(0), rngs), xs)
    return ys, rngs


def _rollout_fn(graphdef, *, start_with_input=False, post_process=None, remat=False,
                stop_gradient_every=None, deterministic=True) -> Callable:
    """The pure rollout of `make_rollout_fn` for the model structure `graphdef`."""

    def fn(variables, state0, forcings, doys):
        traj, _ = rollout_scan(graphdef, variables, state0, forcings, doys,
                               post_process=post_process, remat=remat,
                               stop_gradient_every=stop_gradient_every,
                               deterministic=deterministic)
        traj = jnp.moveaxis(traj, 0, 1)
        if start_with_input:
            traj = jnp.concatenate([state0[:, None], traj], axis=1)
        return traj

    return fn


def rollout(
    model: Forecaster,
    state0: Array,
    forcings: Array,
    steps: int | None = None,
    doy0: Array | int = 0,
    *,
    doys: Array | None = None,
    start_with_input: bool = False,
    post_process: Callable[[Array], Array] | None = None,
) -> Array:
    """Run `model` for `steps` days from `state0` under `forcings`.

    Args:
      state0: ``[B, n_ocean, H, W]`` (or unbatched ``[n_ocean, H, W]``) normalised anomalies.
      forcings: ``[B, S, n_forcing, H, W]`` (or ``[S, n_forcing, H, W]``) normalised forcing of
        days 1..S, S >= steps.
      steps: days to run (default S).
      doy0: day-of-year index of `state0` (int or ``[B]``); ignored if `doys` is given.
      doys: ``[B, steps+1]`` explicit day-of-year indices (the calendar knows leap years).
      start_with_input: include `state0` as the first entry of the trajectory.
      post_process: applied to every produced state.

    Returns:
      ``[B, steps(+1), n_ocean, H, W]`` (unbatched in, unbatched out).
    """
    unbatched = jnp.ndim(state0) == 3
    if unbatched:
        state0 = jnp.asarray(state0)[None]
        forcings = jnp.asarray(forcings)[None]
    if jnp.ndim(forcings) != 5:
        raise LayoutError(
            f"forcings have shape {tuple(jnp.shape(forcings))}; expected [batch, steps, "
            f"{model.layout.n_forcing}, lat, lon]"
        )
    n_avail = forcings.shape[1]
    steps = n_avail if steps is None else int(steps)
    if steps < 1:
        raise LayoutError(f"steps must be >= 1, got {steps}")
    if n_avail < steps:
        raise LayoutError(f"forcing sequence has {n_avail} days, shorter than steps={steps}")
    forcings = forcings[:, :steps]
    B = state0.shape[0]
    model.check_inputs(state0, forcings[:, 0])
    if doys is None:
        doys = calendar.doy_sequence(jnp.broadcast_to(jnp.asarray(doy0, jnp.int32), (B,)), steps)
    elif tuple(jnp.shape(doys)) != (B, steps + 1):
        raise LayoutError(f"doys have shape {tuple(jnp.shape(doys))}; expected {(B, steps + 1)}")

    graphdef, variables = nnx.split(model)
    traj = _jitted_rollout(graphdef, start_with_input, post_process)(variables, state0, forcings,
                                                                     doys)
    return traj[0] if unbatched else traj


@functools.lru_cache(maxsize=64)
def _jitted_rollout(graphdef, start_with_input: bool, post_process) -> Callable:
    """One jitted rollout per (model structure, options); jit itself caches per input shape."""
    return jax.jit(_rollout_fn(graphdef, start_with_input=start_with_input,
                               post_process=post_process))


def load_model(checkpoint_dir, step: int | None = None, *, stats=None,
               data_root=None) -> Forecaster:
    """The model stored in a training checkpoint or an export folder, rebuilt from that folder
    alone; see `neuralogcm_jax.checkpointing.load_model`."""
    return checkpointing.load_model(checkpoint_dir, step, stats=stats, data_root=data_root)
