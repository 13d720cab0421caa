"""Claims about the STE corrector and the four baselines (neuralogcm_jax.nn)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from neuralogcm_jax.errors import ConfigError, LayoutError
from neuralogcm_jax.nn import (
    NETWORKS,
    ConvLSTMConfig,
    FourCastNetConfig,
    SimVPConfig,
    STEConfig,
    UNetConfig,
    build_network,
    network_config,
)
from neuralogcm_jax.nn.layers import pad_sphere, pixel_shuffle, pixel_unshuffle

C_IN, C_OUT = 97, 93  # 93 ocean channels + 4 forcing channels in, 93 ocean channels out

# Small widths so that every claim is checked in seconds; the default sizes are checked for
# shape on a small grid and (slow) at 1.5 degrees.
TINY = {
    "ste": STEConfig(hid_channels=16, num_heads=2),
    "unet": UNetConfig(base_channels=8, channel_mults=(1, 2)),
    "convlstm": ConvLSTMConfig(hid_channels=16, num_layers=2, kernel_size=3),
    "simvp": SimVPConfig(hid_S=16, hid_T=32, N_T=2, incep_kernels=(3, 5)),
    "fourcastnet": FourCastNetConfig(embed_dim=32, depth=1, num_blocks=4),
}
# 26 rows do not divide by the strides (4 or 8): exercises the row padding and cropping.
SMALL_GRID = (26, 48)


def _input(shape, seed=0, dtype=jnp.float32):
    # numpy's generator: an eager jax.random call would compile anew for every shape.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def _randomise_ste_head(model, seed=1):
    """Give the STE's zero-initialised projection random values, so its output is not zero."""
    k = model.head.conv.kernel
    k[...] = 0.1 * _input(k.shape, seed, k.dtype)
    b = model.head.conv.bias
    b[...] = 0.1 * _input(b.shape, seed + 1, b.dtype)


def _forward(model, x, deterministic=True):
    return nnx.jit(lambda m, x: m(x, deterministic=deterministic))(model, x)


TINY_GRID = (24, 48)
_TINY_CACHE: dict = {}


def _tiny(name):
    """(model, jitted forward) of the tiny config on TINY_GRID, built and compiled once per session.

    The STE's projection is randomised so that its output is not identically zero.
    """
    if name not in _TINY_CACHE:
        model = build_network(name, TINY[name], C_IN, C_OUT, TINY_GRID, nnx.Rngs(0))
        if name == "ste":
            _randomise_ste_head(model)
        _TINY_CACHE[name] = (model, nnx.jit(lambda m, x: m(x)))
    return _TINY_CACHE[name]


# ------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_default_network_maps_ocean_and_forcing_to_ocean_channels_on_a_small_grid(name):
    model = build_network(name, None, C_IN, C_OUT, SMALL_GRID, nnx.Rngs(0))
    y = _forward(model, _input((2, C_IN, *SMALL_GRID)))
    assert y.shape == (2, C_OUT, *SMALL_GRID)
    assert y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_default_network_runs_at_one_and_a_half_degrees(name):
    model = build_network(name, None, C_IN, C_OUT, (120, 240), nnx.Rngs(0))
    if name == "ste":
        _randomise_ste_head(model)
    y = _forward(model, _input((1, C_IN, 120, 240)))
    assert y.shape == (1, C_OUT, 120, 240)
    assert bool(jnp.all(jnp.isfinite(y)))
    assert float(jnp.std(y)) > 0.0


# ------------------------------------------------------------------------------------------
# periodicity in longitude


@pytest.mark.parametrize("name", ["ste", "unet", "convlstm", "simvp"])
def test_rolling_the_input_by_a_multiple_of_the_stride_rolls_the_output(name):
    """Convolutions wrap in longitude and attention has no absolute position, so a zonal roll by
    k = m * total_stride commutes with the network. k must be a multiple of the total stride:
    otherwise the strided layers sample the rolled field on a shifted lattice (aliasing)."""
    model, fwd = _tiny(name)
    stride = model.total_stride
    x = _input((1, C_IN, *TINY_GRID))
    y = fwd(model, x)
    scale = float(jnp.max(jnp.abs(y)))
    assert scale > 0.0
    for k in (stride, 5 * stride):  # 5*stride moves features across the date line
        y_rolled = fwd(model, jnp.roll(x, k, axis=-1))
        np.testing.assert_allclose(y_rolled, jnp.roll(y, k, axis=-1), atol=2e-5 * scale, rtol=0)
    # A roll by one longitude is not a symmetry of a strided network: the claim above is not vacuous.
    y_one = fwd(model, jnp.roll(x, 1, axis=-1))
    assert float(jnp.max(jnp.abs(y_one - jnp.roll(y, 1, axis=-1)))) > 1e-3 * scale


def test_sphere_padding_wraps_longitude_and_reflects_the_outer_rows():
    x = jnp.arange(4 * 6, dtype=jnp.float32).reshape(1, 4, 6, 1)
    p = pad_sphere(x, (2, 1), (1, 2))[0, :, :, 0]
    xn = np.asarray(x[0, :, :, 0])
    rows = [2, 1, 0, 1, 2, 3, 2]  # reflection without repeating the edge row
    cols = [5, 0, 1, 2, 3, 4, 5, 0, 1]  # periodic
    np.testing.assert_array_equal(p, xn[np.ix_(rows, cols)])


def test_pixel_shuffle_inverts_pixel_unshuffle():
    x = _input((2, 6, 8, 12))
    np.testing.assert_array_equal(pixel_shuffle(pixel_unshuffle(x, 2), 2), x)
    # Output cell (2i + r, 2j + s), channel c comes from input cell (i, j), channel (2r + s) * C + c.
    y = _input((1, 3, 4, 4 * 5))
    z = pixel_shuffle(y, 2)
    assert z.shape == (1, 6, 8, 5)
    for i, j, r, s_, c in [(0, 0, 0, 1, 2), (2, 3, 1, 0, 4), (1, 2, 1, 1, 0)]:
        assert z[0, 2 * i + r, 2 * j + s_, c] == y[0, i, j, (2 * r + s_) * 5 + c]


# ------------------------------------------------------------------------------------------
# the STE starts as a zero correction


def test_untrained_ste_outputs_exactly_zero_and_one_adam_step_makes_it_nonzero():
    model = build_network("ste", TINY["ste"], C_IN, C_OUT, TINY_GRID, nnx.Rngs(0))
    x = _input((2, C_IN, *TINY_GRID))
    target = _input((2, C_OUT, *TINY_GRID), seed=3)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, target):
        """One Adam step; returns the output and loss *before* the update, and the gradients."""

        def loss_fn(m):
            y = m(x)
            return jnp.mean((y - target) ** 2), y

        (loss, y), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return y, loss, grads

    y0, loss0, grads = train_step(model, optimizer, x, target)
    assert not bool(jnp.any(y0 != 0.0))
    # Behind a zero projection no upstream layer gets gradient yet; the projection does.
    assert float(jnp.max(jnp.abs(grads["head"]["conv"]["kernel"][...]))) > 0.0
    assert float(jnp.max(jnp.abs(grads["encoder"]["blocks"][0]["norm"]["scale"][...]))) == 0.0
    y1, loss1, _ = train_step(model, optimizer, x, target)
    assert float(jnp.max(jnp.abs(y1))) > 0.0
    assert float(loss1) < float(loss0)


# ------------------------------------------------------------------------------------------
# gradients reach every parameter


def _nonzero_gradient_leaves(model, x, target):
    grads = nnx.grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(grads))[0]
    return {jax.tree_util.keystr(path): bool(jnp.any(g != 0)) for path, g in flat}


@pytest.mark.parametrize("name", sorted(TINY) + ["convlstm-recurrent"])
def test_gradient_reaches_every_parameter(name):
    if name == "convlstm-recurrent":  # the full cell: recurrent convolution and forget gate
        cfg = ConvLSTMConfig(hid_channels=16, num_layers=2, kernel_size=3, n_iterations=2)
        model = build_network("convlstm", cfg, C_IN, C_OUT, TINY_GRID, nnx.Rngs(0))
        assert model.cells[0].conv_h is not None
    else:  # (the STE's head is randomised: a zero projection blocks the gradient on purpose)
        model = _tiny(name)[0]
    x, target = _input((1, C_IN, *TINY_GRID)), _input((1, C_OUT, *TINY_GRID), seed=5)
    flowing = _nonzero_gradient_leaves(model, x, target)
    assert len(flowing) > 5
    dead = [k for k, ok in flowing.items() if not ok]
    assert not dead, f"{name}: parameters without gradient: {dead}"


@pytest.mark.slow
def test_gradient_of_the_ste_matches_a_finite_difference():
    grid = (8, 16)
    cfg = STEConfig(hid_channels=8, num_heads=2, n_attention_blocks=1)
    model = build_network("ste", cfg, 5, 3, grid, nnx.Rngs(0), dtype=jnp.float64)
    _randomise_ste_head(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    x = _input((1, 5, *grid), dtype=jnp.float64)

    def loss(params):
        return jnp.sum(nnx.merge(graphdef, params, rest)(x) ** 2)

    loss = jax.jit(loss)
    g = jax.jit(jax.grad(loss))(params)
    direction = jax.tree.map(lambda p: _input(p.shape, 7, p.dtype), params)
    eps = 1e-6
    shifted = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, params, direction)  # noqa: E731
    fd = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
    ad = sum(jnp.sum(a * d) for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction)))
    np.testing.assert_allclose(float(ad), float(fd), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# precision and stochastic layers


@pytest.mark.parametrize("name", sorted(TINY))
def test_bfloat16_compute_with_float32_parameters(name):
    x = _input((1, C_IN, *TINY_GRID))
    m16 = build_network(name, TINY[name], C_IN, C_OUT, TINY_GRID, nnx.Rngs(0), dtype=jnp.bfloat16)
    if name == "ste":
        _randomise_ste_head(m16)
    assert {p.dtype for p in jax.tree.leaves(nnx.state(m16, nnx.Param))} == {jnp.dtype(jnp.float32)}
    m32, fwd32 = _tiny(name)  # same seed, hence the same parameters
    y16, y32 = _forward(m16, x), fwd32(m32, x)
    assert y16.dtype == jnp.bfloat16
    assert bool(jnp.all(jnp.isfinite(y16)))
    # Same weights, so bfloat16 must agree with float32 to a few per cent.
    rel = jnp.linalg.norm(y16.astype(jnp.float32) - y32) / jnp.linalg.norm(y32)
    assert float(rel) < 0.05


@pytest.mark.slow
def test_ste_dropout_acts_only_when_not_deterministic():
    cfg = STEConfig(hid_channels=8, num_heads=2, n_conv_blocks=2, n_down=1, dropout=0.2, drop_path=0.2)
    model = build_network("ste", cfg, 3, 2, (8, 16), nnx.Rngs(0))
    _randomise_ste_head(model)
    x = _input((2, 3, 8, 16))
    fwd = nnx.jit(lambda m, x, deterministic: m(x, deterministic=deterministic), static_argnums=2)
    np.testing.assert_array_equal(fwd(model, x, True), fwd(model, x, True))
    a, b = fwd(model, x, False), fwd(model, x, False)  # fresh dropout masks each call
    assert float(jnp.max(jnp.abs(a - fwd(model, x, True)))) > 0.0
    assert float(jnp.max(jnp.abs(a - b))) > 0.0


# ------------------------------------------------------------------------------------------
# errors


def test_unknown_network_name_is_a_config_error_listing_the_known_names():
    with pytest.raises(ConfigError, match="transformer") as err:
        build_network("transformer", None, C_IN, C_OUT, (24, 48), nnx.Rngs(0))
    for name in NETWORKS:
        assert name in str(err.value)


def test_unknown_config_key_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="hid_chanels"):
        network_config("ste", {"hid_chanels": 32})
    assert network_config("unet", {"channel_mults": [1, 2]}).channel_mults == (1, 2)


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="num_heads"):
        STEConfig(hid_channels=30, num_heads=8)
    with pytest.raises(ConfigError, match="W=50"):  # 50 longitudes, total stride 4
        build_network("ste", TINY["ste"], C_IN, C_OUT, (24, 50), nnx.Rngs(0))


def test_wrong_input_shape_is_a_layout_error_naming_the_shape():
    model = _tiny("unet")[0]
    with pytest.raises(LayoutError, match=r"\(1, 93, 24, 48\)"):
        model(jnp.zeros((1, 93, 24, 48)))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.bfloat16])
def test_chunked_attention_equals_the_one_shot_softmax(dtype):
    """Query chunks (here 7 tokens of 30, so the last chunk is padded) give the one-shot
    attention's output and gradients: the speed-up changes nothing but the evaluation order."""
    from neuralogcm_jax.nn.layers import SelfAttention

    def make(chunk):
        return SelfAttention(16, 4, query_chunk=chunk, rngs=nnx.Rngs(3), dtype=dtype)

    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 30, 16)) * 3.0, jnp.float64)
    one_shot, chunked = make(None), make(7)

    def loss(m, x):
        return jnp.sum(jnp.sin(m(x.astype(dtype)).astype(jnp.float64)))

    tol = 1e-12 if dtype == jnp.float64 else 2e-2
    np.testing.assert_allclose(np.asarray(chunked(x.astype(dtype)), np.float64),
                               np.asarray(one_shot(x.astype(dtype)), np.float64), rtol=tol, atol=tol)
    g_one = jax.grad(loss, argnums=1)(one_shot, x)
    g_chunk = jax.grad(loss, argnums=1)(chunked, x)
    scale = float(jnp.abs(g_one).max())
    np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_one), rtol=0, atol=tol * scale)
    assert scale > 0
    with pytest.raises(ConfigError, match="query_chunk"):
        SelfAttention(16, 4, query_chunk=0, rngs=nnx.Rngs(0))


# ------------------------------------------------------------------------------------------
# the networks' convolution (`neuralogcm_jax.nn.conv`)

# (H, W, C_in, C_out, kernel, stride, groups): dense, strided with rows no window reaches,
# depthwise, grouped, 1x1, a patch embedding (kernel = stride)
CONV_CASES = [(9, 12, 5, 7, 3, 1, 1), (9, 13, 5, 7, 3, 2, 1), (11, 13, 6, 6, 3, 1, 6),
              (10, 12, 4, 4, 3, 2, 4), (9, 11, 6, 4, 3, 2, 2), (8, 8, 3, 5, 1, 1, 1),
              (8, 12, 3, 5, 4, 4, 1)]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_the_networks_convolution_has_lax_convolutions_value_and_gradients(case):
    """`nn.conv.conv_general_dilated` (hand-written backward pass) against autodiff of
    `jax.lax.conv_general_dilated`, in float64 and inside a `lax.scan`, as a rollout runs it."""
    from jax import lax

    from neuralogcm_jax.nn.conv import conv_general_dilated

    h, w, cin, cout, k, s, g = case
    rng = np.random.default_rng(sum(case))
    x = jnp.asarray(rng.normal(size=(2, h, w, cin)))
    kernel = jnp.asarray(rng.normal(size=(k, k, cin // g, cout)))
    dn = lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))

    def rolled(conv):
        def loss(x, kernel):
            def body(c, _):
                y = conv(x + c, kernel, (s, s), "VALID", dimension_numbers=dn,
                         feature_group_count=g)
                return c + 1e-3 * jnp.mean(jnp.sin(y)), None
            return lax.scan(body, 0.0, None, length=2)[0]
        return loss

    want = jax.grad(rolled(lax.conv_general_dilated), argnums=(0, 1))(x, kernel)
    got = jax.grad(rolled(conv_general_dilated), argnums=(0, 1))(x, kernel)
    for a, b in zip(got, want):
        assert float(jnp.abs(b).max()) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                   atol=1e-12 * float(jnp.abs(b).max()))
    y = conv_general_dilated(x, kernel, (s, s), "VALID", dimension_numbers=dn,
                             feature_group_count=g)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(lax.conv_general_dilated(
        x, kernel, (s, s), "VALID", dimension_numbers=dn, feature_group_count=g)))


def test_every_convolution_of_the_networks_goes_through_the_networks_convolution():
    from neuralogcm_jax.nn.conv import conv_general_dilated

    for name in sorted(TINY):
        model = _tiny(name)[0]
        convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
        assert convs, name
        assert all(c.conv_general_dilated is conv_general_dilated for c in convs), name


# ----------------------------------------------------------------------------- initialisers
@pytest.mark.parametrize("shape", [(3,), (7, 5), (3, 3, 97, 16), (2, 4, 8, 32), (1, 5, 9, 300)])
def test_initialisers_draw_the_values_of_jax_bit_for_bit(shape):
    """`nn.initializers` cut a power-of-two flat draw (one compilation per size class): the
    values are JAX's own initialisers' for every shape, small (under one `MIN_DRAW`) and large
    (13500 values: a 16384 draw), and the flat draw really is longer than the shape."""
    from neuralogcm_jax.nn import initializers as ini

    key = jax.random.key(11)
    pairs = [
        (ini.normal(key, shape), jax.random.normal(key, shape, jnp.float32)),
        (ini.truncated_normal(key, -2.0, 2.0, shape),
         jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)),
    ]
    if len(shape) >= 2:
        pairs.append((ini.lecun_normal(key, shape, jnp.float32),
                      jax.nn.initializers.lecun_normal()(key, shape, jnp.float32)))
    else:  # no fan-in without an input axis: refused, as by JAX
        with pytest.raises(ValueError, match="input and an output axis"):
            ini.lecun_normal(key, shape)
    for ours, theirs in pairs:
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    n = int(np.prod(shape))
    assert max(n, ini.MIN_DRAW) <= ini._draw_length(n) < 2 * max(n, ini.MIN_DRAW)


@pytest.mark.slow
def test_every_network_builds_the_parameters_of_jax_initialisers(monkeypatch):
    """The networks' weights with the flat-draw initialisers equal those of a build in which
    the cut is replaced by JAX's draw of each exact shape (what the networks drew before).
    Slow: 38 s, the exact-shape builds compile once per shape, what the cut avoids."""
    from neuralogcm_jax.nn import initializers as ini

    def params(name):
        m = build_network(name, TINY[name], C_IN, C_OUT, TINY_GRID, nnx.Rngs(3))
        return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(m, nnx.Param)))

    ours = {name: params(name) for name in sorted(TINY)}
    monkeypatch.setattr(ini, "_cut", lambda draw, key, shape: draw(key, tuple(shape)))
    for name in sorted(TINY):
        theirs = params(name)
        flat_ours = jax.tree_util.tree_flatten_with_path(ours[name])[0]
        flat_theirs = jax.tree.leaves(theirs)
        assert len(flat_ours) == len(flat_theirs) > 5
        for (path, a), b in zip(flat_ours, flat_theirs):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}{jax.tree_util.keystr(path)}")
