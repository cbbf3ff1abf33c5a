"""Tests for jssl.models.swin: shapes, parameter count, masks, stochastic depth, sharding."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jssl.models import swin


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(name="swin", **kw))


@functools.partial(jax.jit, static_argnames=("graphdef", "train"))
def _apply_jit(graphdef, state, x, train, kwargs):
  out, inter = nnx.merge(graphdef, state)(x, train=train, **kwargs)
  return out, inter


def _apply(model, x, *, train=False, **kwargs):
  graphdef, state = nnx.split(model)
  return _apply_jit(graphdef, state, x, train, kwargs)


def _images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _build(cfg, in_channels=3):
  """A model with random numpy parameters (LayerNorm scales near 1).

  The real initialisers cost XLA:CPU ~15 s of compilation even for a toy model,
  and these tests are about the forward computation, not initialisation.
  """
  graphdef, state = nnx.split(nnx.eval_shape(
    lambda: swin.create(cfg, in_channels=in_channels, rngs=nnx.Rngs(0))))
  gen = np.random.default_rng(0)

  def fill(path, leaf):
    noise = gen.normal(0.0, 0.1, leaf.shape).astype(np.float32)
    is_scale = any(getattr(k, "key", None) == "scale" for k in path)
    return jnp.asarray(noise + 1.0 if is_scale else noise)

  return nnx.merge(graphdef, jax.tree.map_with_path(fill, state))


@pytest.fixture(scope="module")
def tiny_swin():
  """Window 3 on a 32 px input: the 8x8 stage (two blocks, the second shifted)
  and the 4x4 stage need padding; 2x2 and 1x1 stages use a single window."""
  return _build(_cfg(variant="tiny-test", depths=(2, 1, 1, 1), window_size=3,
                     drop_path=0.3))


def _expected_swin_params(embed_dim, depths, heads, window, in_channels=3):
  """Parameter count written out from the architecture, independent of the code."""
  n = 4 * 4 * in_channels * embed_dim + embed_dim  # patch conv
  n += 2 * embed_dim + embed_dim  # patch LayerNorm, mask token
  for i, (depth, h) in enumerate(zip(depths, heads)):
    c = embed_dim * 2 ** i
    block = (2 * c + (3 * c * c + 3 * c) + (c * c + c) + (2 * window - 1) ** 2 * h
             + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c))
    n += depth * block
    if i < len(depths) - 1:
      n += 2 * 4 * c + 4 * c * 2 * c  # merging LayerNorm and bias-free Linear
  return n + 2 * embed_dim * 2 ** (len(depths) - 1)  # final LayerNorm



def test_swin_t_shapes_and_params_224():
  model = nnx.eval_shape(lambda: swin.create(
    _cfg(variant="T", image_size=224, window_size=7), in_channels=3,
    rngs=nnx.Rngs(0)))
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert n == _expected_swin_params(96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
  # timm's swin_tiny_patch4_window7_224: 28,288,354 with its 769,000-parameter
  # classifier; here there is no classifier and one 96-d mask token more.
  assert n == 28_288_354 - 769_000 + 96
  assert model.out_dim == 768

  graphdef, state = nnx.split(model)
  for size, grids in ((224, (56, 28, 14, 7)), (96, (24, 12, 6, 3))):
    out, inter = jax.eval_shape(
      lambda s, x: nnx.merge(graphdef, s)(x, train=False), state,
      jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32))
    widths = (96, 192, 384, 768)
    expected = {f"stage{i + 1}": (2, g, g, c)
                for i, (g, c) in enumerate(zip(grids, widths))}
    expected.update(tokens=(2, grids[3] ** 2, 768), local=(2, grids[3], grids[3], 768),
                    pre_logits=(2, 768))
    assert out.shape == (2, 768) and out.dtype == jnp.float32
    assert {k: v.shape for k, v in inter.items()} == expected


def test_variants_and_overrides():
  assert swin.decode_variant("S")["depths"] == (2, 2, 18, 2)
  assert swin.decode_variant("B")["num_heads"] == (4, 8, 16, 32)
  with pytest.raises(ValueError, match="variant"):
    swin.decode_variant("T/4")
  model = nnx.eval_shape(lambda: swin.create(
    _cfg(variant="T", embed_dim=8, depths=(1, 1), num_heads=(1, 2)),
    in_channels=1, rngs=nnx.Rngs(0)))
  assert model.out_dim == 16 and len(model.stages) == 2


@pytest.mark.parametrize("size", [32, 64])
def test_tiny_forward(tiny_swin, size):
  x = _images((2, size, size, 3))
  out, inter = _apply(tiny_swin, x)
  g = size // 4
  assert out.shape == (2, 128) and out.dtype == jnp.float32
  assert inter["stage1"].shape == (2, g, g, 16)
  assert inter["stage4"].shape == (2, g // 8, g // 8, 128)
  assert inter["local"].shape == (2, g // 8, g // 8, 128)
  assert np.isfinite(np.asarray(out)).all()
  np.testing.assert_allclose(out, inter["tokens"].mean(axis=1), atol=1e-6)


def test_bfloat16_dtypes():
  model = nnx.eval_shape(lambda: swin.create(
    _cfg(variant="tiny-test", window_size=2, dtype="bfloat16"), in_channels=3,
    rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  out, inter = jax.eval_shape(
    lambda s, x: nnx.merge(graphdef, s)(x, train=False), state,
    jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert out.dtype == jnp.float32 and inter["tokens"].dtype == jnp.float32
  assert inter["stage2"].dtype == jnp.bfloat16
  assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {
    jnp.dtype(jnp.float32)}


def test_mask_token(tiny_swin):
  x = _images((2, 32, 32, 3))
  out, _ = _apply(tiny_swin, x)
  none_masked, _ = _apply(tiny_swin, x, mask=jnp.zeros((2, 64), bool))
  np.testing.assert_array_equal(none_masked, out)
  mask = jnp.zeros((2, 64), bool).at[0, :20].set(True)
  masked, _ = _apply(tiny_swin, x, mask=mask)
  assert not np.allclose(masked[0], out[0], atol=1e-4)
  np.testing.assert_allclose(masked[1], out[1], atol=1e-5)
  with pytest.raises(ValueError, match="mask"):
    _apply(tiny_swin, x, mask=jnp.zeros((2, 63), bool))


def test_mask_on_token_grid_covers_merged_patches(tiny_swin):
  # 40 px: a 10 x 10 patch grid merged to 5, 3 and 2 (odd sides padded); a final
  # token covers an 8 x 8 block of patch embeddings, cropped at the border.
  assert tiny_swin.token_grid(40, 40) == (2, 2)
  token_mask = jnp.array([[True, False, False, False], [False, False, False, True]])
  grid = np.asarray(tiny_swin.expand_mask(token_mask, 40, 40))
  expected = np.zeros((2, 10, 10), bool)
  expected[0, :8, :8] = expected[1, 8:, 8:] = True
  np.testing.assert_array_equal(grid, expected)
  x = _images((2, 40, 40, 3))
  by_token, _ = _apply(tiny_swin, x, mask=token_mask)
  by_patch, _ = _apply(tiny_swin, x, mask=jnp.asarray(expected.reshape(2, 100)))
  np.testing.assert_array_equal(by_token, by_patch)


def test_drop_path_needs_rng(tiny_swin):
  x = _images((2, 32, 32, 3))
  ref, _ = _apply(tiny_swin, x, train=False)
  no_rng, _ = _apply(tiny_swin, x, train=True)
  np.testing.assert_array_equal(no_rng, ref)
  dropped, _ = _apply(tiny_swin, x, train=True, rng=jax.random.key(1))
  assert not np.allclose(dropped, ref, atol=1e-4)
  again, _ = _apply(tiny_swin, x, train=True, rng=jax.random.key(1))
  np.testing.assert_array_equal(again, dropped)


def test_window_layout():
  assert swin.window_layout(56, 56, 7, True) == (7, 3)
  assert swin.window_layout(24, 24, 7, True) == (7, 3)
  assert swin.window_layout(6, 6, 7, True) == (6, 0)
  assert swin.window_layout(7, 7, 7, True) == (7, 0)
  assert swin.window_layout(14, 14, 7, False) == (7, 0)
  assert swin.window_attention_mask(14, 14, 7, 0) is None


@pytest.mark.parametrize("height,width,window,shift",
                         [(4, 4, 2, 1), (6, 6, 3, 1), (5, 7, 3, 1), (5, 5, 3, 0)])
def test_shifted_window_mask(height, width, window, shift):
  """Pairs allowed iff they are neighbours in the unrolled (padded) grid, i.e. the
  roll did not wrap one of them around, and the key is a real token."""
  mask = swin.window_attention_mask(height, width, window, shift)
  hp, wp = -(-height // window) * window, -(-width // window) * window
  nw_w = wp // window
  assert mask.shape == ((hp // window) * nw_w, window ** 2, window ** 2)
  for wi in range(mask.shape[0]):
    for q in range(window ** 2):
      for k in range(window ** 2):
        # Position in the rolled grid, then where it came from before the roll.
        pos = [((wi // nw_w) * window + t // window, (wi % nw_w) * window + t % window)
               for t in (q, k)]
        orig = [((r + shift) % hp, (c + shift) % wp) for r, c in pos]
        contiguous = (orig[1][0] - orig[0][0] == pos[1][0] - pos[0][0]
                      and orig[1][1] - orig[0][1] == pos[1][1] - pos[0][1])
        real_key = orig[1][0] < height and orig[1][1] < width
        assert mask[wi, q, k] == (contiguous and real_key), (wi, q, k)


def test_relative_position_index():
  idx = swin.relative_position_index(3, 3)
  assert idx.shape == (9, 9) and idx.min() == 0 and idx.max() == 24
  assert (np.diag(idx) == 12).all()  # zero offset is the table's centre
  # A smaller window uses the same rows for the same offsets.
  small = swin.relative_position_index(2, 3)
  np.testing.assert_array_equal(small[0], idx[0][[0, 1, 3, 4]])


def test_padding_does_not_leak():
  """A 3x3 window on a 4x4 grid pads to 6x6; padded keys must be ignored."""
  block = swin.SwinBlock(8, 2, 3, shift=False, drop_path=0.0, dtype=jnp.float32,
                         attention_impl=None, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(block)
  run = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  x = _images((1, 4, 4, 8))
  y = run(state, x)
  # The top-left window holds 9 real tokens, the bottom-right one a single real
  # token among 8 padded ones: each must match the block run on its tokens alone.
  np.testing.assert_allclose(y[:, :3, :3], run(state, x[:, :3, :3]), atol=1e-5)
  np.testing.assert_allclose(y[:, 3:, 3:], run(state, x[:, 3:, 3:]), atol=1e-5)


def test_sharded_equals_unsharded(tiny_swin):
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  x = _images((8, 32, 32, 3))
  mask = jax.random.bernoulli(jax.random.key(2), 0.3, (8, 64))
  # Unsharded reference, two examples at a time so the compiled program is shared.
  ref = np.concatenate([_apply(tiny_swin, x[i:i + 2], mask=mask[i:i + 2])[0]
                        for i in range(0, 8, 2)])
  graphdef, state = nnx.split(tiny_swin)
  data = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  state = jax.device_put(state, replicated)
  out, inter = _apply_jit(graphdef, state, jax.device_put(x, data), False,
                          {"mask": jax.device_put(mask, data)})
  assert out.sharding.spec[0] == "data" or out.sharding.is_equivalent_to(data, 2)
  np.testing.assert_allclose(out, ref, atol=1e-5)
