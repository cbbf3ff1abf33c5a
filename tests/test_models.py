"""Tests for jssl.models: ResNet and ViT backbones, MLP and DINO heads."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jssl.models import heads
from jssl.models import resnet
from jssl.models import vit


def _resnet_cfg(**kw):
  return ml_collections.ConfigDict(dict(name="resnet", **kw))


def _vit_cfg(**kw):
  return ml_collections.ConfigDict(dict(name="vit", **kw))


def _num_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@functools.partial(jax.jit, static_argnames=("graphdef", "train"))
def _apply_jit(graphdef, state, x, train, kwargs):
  model = nnx.merge(graphdef, state)
  out, inter = model(x, train=train, **kwargs)
  return out, inter, nnx.state(model)


def _apply(model, x, *, train, **kwargs):
  """Pure forward pass as the trainer runs it: (out, intermediates, new state)."""
  graphdef, state = nnx.split(model)
  return _apply_jit(graphdef, state, x, train, kwargs)


def _images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.fixture(scope="module")
def tiny_resnet():
  return resnet.create(_resnet_cfg(variant="resnet_tiny", small_stem=True),
                       in_channels=1, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tiny_vit():
  return vit.create(_vit_cfg(variant="Ti/4", image_size=28), in_channels=1,
                    rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def small_vit():
  """A 3-block ViT with stochastic depth: cheap to compile, same code paths."""
  return vit.VisionTransformer(
    width=64, depth=3, num_heads=2, mlp_dim=256, patch_size=4, image_size=16,
    in_channels=1, drop_path=0.3, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------- shapes


def test_resnet_tiny_shapes(tiny_resnet):
  out, inter, _ = _apply(tiny_resnet, _images((2, 28, 28, 1)), train=False)
  assert tiny_resnet.out_dim == 128
  assert out.shape == (2, 128)
  expected = {"stage1": (2, 28, 28, 16), "stage2": (2, 14, 14, 32),
              "stage3": (2, 7, 7, 64), "stage4": (2, 4, 4, 128),
              "local": (2, 4, 4, 128), "pre_logits": (2, 128)}
  assert {k: v.shape for k, v in inter.items()} == expected
  np.testing.assert_array_equal(inter["pre_logits"], out)
  np.testing.assert_allclose(out, inter["local"].mean(axis=(1, 2)), atol=1e-6)


def test_resnet18_small_stem_shapes():
  model = resnet.create(_resnet_cfg(variant="resnet18", small_stem=True),
                        in_channels=3, rngs=nnx.Rngs(0))
  out, inter, _ = _apply(model, _images((2, 32, 32, 3)), train=False)
  assert model.out_dim == 512 and out.shape == (2, 512)
  assert inter["stage1"].shape == (2, 32, 32, 64)
  assert inter["stage4"].shape == inter["local"].shape == (2, 4, 4, 512)
  assert np.all(np.isfinite(out))


def test_resnet_imagenet_stem_downsamples_by_32():
  model = nnx.eval_shape(lambda: resnet.create(
    _resnet_cfg(variant="resnet_tiny", width=2), in_channels=3,
    rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  out, inter, _ = jax.eval_shape(
    functools.partial(_apply_jit, graphdef, train=False, kwargs={}), state,
    jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
  assert model.out_dim == 256 and out.shape == (2, 256)
  assert inter["stage1"].shape == (2, 16, 16, 32)
  assert inter["local"].shape == (2, 2, 2, 256)


def test_vit_shapes(tiny_vit):
  out, inter, _ = _apply(tiny_vit, _images((2, 28, 28, 1)), train=False)
  assert tiny_vit.out_dim == 192 and out.shape == (2, 192)
  blocks = {f"block_{i}" for i in range(1, 13)}
  assert set(inter) == blocks | {"cls", "tokens", "local", "pre_logits"}
  assert all(inter[k].shape == (2, 192) for k in blocks)
  assert inter["tokens"].shape == (2, 49, 192)
  assert inter["local"].shape == (2, 7, 7, 192)
  np.testing.assert_array_equal(inter["pre_logits"], inter["cls"])
  np.testing.assert_array_equal(inter["local"].reshape(2, 49, 192),
                                inter["tokens"])


def test_vit_smaller_input_resizes_pos_embed(tiny_vit):
  out, inter, _ = _apply(tiny_vit, _images((2, 16, 16, 1)), train=False)
  assert out.shape == (2, 192)
  assert inter["tokens"].shape == (2, 16, 192)
  assert inter["local"].shape == (2, 4, 4, 192)
  assert np.all(np.isfinite(out))


def test_resize_pos_embed_keeps_cls_and_constant_fields():
  d = 3
  cls = jnp.full((1, 1, d), 7.0)
  patch = jnp.broadcast_to(jnp.arange(d, dtype=jnp.float32), (1, 49, d))
  resized = vit.resize_pos_embed(jnp.concatenate([cls, patch], 1), (7, 7),
                                 (4, 3))
  assert resized.shape == (1, 13, d)
  np.testing.assert_array_equal(resized[:, 0], cls[:, 0])
  np.testing.assert_allclose(resized[0, 1:], np.broadcast_to(np.arange(d),
                                                             (12, d)),
                             atol=1e-6)


def test_vit_mean_pool(tiny_vit):
  graphdef, state = nnx.split(tiny_vit)
  mean_model = vit.create(_vit_cfg(variant="Ti/4", image_size=28, pool="mean"),
                          in_channels=1, rngs=nnx.Rngs(0))
  nnx.update(mean_model, state)
  out, inter, _ = _apply(mean_model, _images((2, 16, 16, 1)), train=False)
  np.testing.assert_allclose(out, inter["tokens"].mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("variant, channels, kernels", [
  ("Ti/7", (8,), [(3, 3, 1, 8), (7, 7, 8, 32)]),            # odd patch: stride-1 stem, 7x7 embedding
  ("Ti/4", (8, 16), [(3, 3, 1, 8), (3, 3, 8, 16), (1, 1, 16, 32)]),   # strides 2, 2, then 1x1
])
def test_vit_conv_stem(variant, channels, kernels):
  model = vit.create(_vit_cfg(variant=variant, image_size=28, width=32, num_heads=2, depth=1,
                              stem_channels=channels), in_channels=1, rngs=nnx.Rngs(0))
  got = [c.conv.kernel.shape for c in model.stem] + [model.patch_embed.kernel.shape]
  assert got == kernels
  patch = int(variant.split("/")[1])
  x = _images((4, 28, 28, 1))
  out, inter, new_state = _apply(model, x, train=True)
  assert out.shape == (4, 32) and inter["local"].shape == (4, 28 // patch, 28 // patch, 32)
  # Training updates the stem's BatchNorm statistics; evaluation reads them and leaves them be.
  old = nnx.state(model, nnx.BatchStat)
  new = new_state.filter(nnx.BatchStat)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))
  _, _, eval_state = _apply(model, x, train=False)
  for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(eval_state.filter(nnx.BatchStat))):
    np.testing.assert_array_equal(a, b)
  # A local crop gets the grid the plain patch embedding would give it.
  _, small, _ = _apply(model, _images((2, 2 * patch, 2 * patch, 1)), train=False)
  assert small["local"].shape[1:3] == (2, 2)
  with pytest.raises(ValueError, match="stem_channels"):
    vit.create(_vit_cfg(variant=variant, image_size=28, stem_channels=(0,)), in_channels=1,
               rngs=nnx.Rngs(0))


# ----------------------------------------------------------- parameter counts


@pytest.mark.parametrize("variant, expected", [
  # torchvision's counts minus the 1000-way fc layer.
  ("resnet50", 25_557_032 - 2_049_000),
  ("resnet18", 11_689_512 - 513_000),
])
def test_resnet_param_counts(variant, expected):
  model = nnx.eval_shape(lambda: resnet.create(
    _resnet_cfg(variant=variant, small_stem=False), in_channels=3,
    rngs=nnx.Rngs(0)))
  assert _num_params(model) == expected


@pytest.mark.parametrize("variant, width, timm_count", [
  # timm's counts with num_classes=0 at 224 px; jssl adds a mask token [1, 1, D].
  ("S/16", 384, 21_665_664),
  ("B/16", 768, 85_798_656),
])
def test_vit_param_counts(variant, width, timm_count):
  model = nnx.eval_shape(lambda: vit.create(
    _vit_cfg(variant=variant, image_size=224), in_channels=3,
    rngs=nnx.Rngs(0)))
  assert _num_params(model) == timm_count + width


def test_byol_mlp_param_count():
  mlp = nnx.eval_shape(lambda: heads.MLP(2048, 4096, 256, 2, rngs=nnx.Rngs(0)))
  assert _num_params(mlp) == (2048 * 4096 + 4096) + 2 * 4096 + (4096 * 256 + 256)


# ----------------------------------------------------------------- BatchNorm


def _batch_stats(state):
  return jax.tree.leaves(nnx.filter_state(state, nnx.BatchStat))


def test_batchnorm_train_and_eval(tiny_resnet):
  x = _images((4, 28, 28, 1)) * 3.0 + 1.0
  before = _batch_stats(nnx.state(tiny_resnet))
  out_train, _, state_train = _apply(tiny_resnet, x, train=True)
  out_eval, _, state_eval = _apply(tiny_resnet, x, train=False)
  after_train = _batch_stats(state_train)
  after_eval = _batch_stats(state_eval)
  assert any(not np.allclose(a, b) for a, b in zip(before, after_train))
  for a, b in zip(before, after_eval):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(out_train, out_eval, atol=1e-3)
  # First stem BN update with momentum 0.9: 0.9 * 0 + 0.1 * batch mean.
  conv_out = tiny_resnet.stem.conv(x)
  new_mean = nnx.merge(nnx.graphdef(tiny_resnet), state_train).stem.bn.mean[...]
  np.testing.assert_allclose(new_mean, 0.1 * conv_out.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_mlp_batchnorm_and_shapes():
  mlp = heads.MLP(8, 16, 4, 3, last_bn=True, rngs=nnx.Rngs(0))
  x = _images((6, 8))
  graphdef, state = nnx.split(mlp)

  @functools.partial(jax.jit, static_argnums=1)
  def run(state, train):
    m = nnx.merge(graphdef, state)
    return m(x, train=train), nnx.state(m)

  y_train, s_train = run(state, True)
  y_eval, s_eval = run(state, False)
  assert y_train.shape == y_eval.shape == (6, 4)
  # last_bn with batch statistics: the output is standardised per feature.
  np.testing.assert_allclose(y_train.mean(0), 0.0, atol=1e-5)
  stats = _batch_stats(state)
  assert len(stats) == 2 * 3  # two hidden BNs and the last one
  assert any(not np.allclose(a, b) for a, b in zip(stats, _batch_stats(s_train)))
  for a, b in zip(stats, _batch_stats(s_eval)):
    np.testing.assert_array_equal(a, b)
  plain = heads.MLP(8, 16, 4, 2, batchnorm=False, act="gelu", rngs=nnx.Rngs(0))
  assert not _batch_stats(nnx.state(plain))
  assert plain(x, train=True).shape == (6, 4)


# ------------------------------------------------------------------ bfloat16


def _param_dtypes(model):
  return {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}


def test_resnet_bfloat16(tiny_resnet):
  model = resnet.create(
    _resnet_cfg(variant="resnet_tiny", small_stem=True, dtype="bfloat16"),
    in_channels=1, rngs=nnx.Rngs(0))
  assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}
  x = _images((2, 28, 28, 1))
  out, inter, state = _apply(model, x, train=True)
  assert out.dtype == inter["pre_logits"].dtype == jnp.float32
  assert inter["stage4"].dtype == inter["local"].dtype == jnp.bfloat16
  assert {s.dtype for s in _batch_stats(state)} == {jnp.dtype(jnp.float32)}
  # Same seed, so same float32 parameters: outputs agree up to bf16 rounding.
  ref, _, _ = _apply(tiny_resnet, x, train=True)
  assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.05


def test_vit_bfloat16(tiny_vit):
  model = vit.create(_vit_cfg(variant="Ti/4", image_size=28, dtype="bfloat16"),
                     in_channels=1, rngs=nnx.Rngs(0))
  assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}
  x = _images((2, 16, 16, 1))
  out, inter, _ = _apply(model, x, train=False)
  for name in ("pre_logits", "cls", "tokens", "local"):
    assert inter[name].dtype == jnp.float32, name
  assert out.dtype == jnp.float32
  assert inter["block_12"].dtype == jnp.bfloat16
  ref, _, _ = _apply(tiny_vit, x, train=False)
  assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.05


def test_heads_bfloat16():
  head = heads.DINOHead(16, 32, 24, 8, dtype="bfloat16", rngs=nnx.Rngs(0))
  assert _param_dtypes(head) == {jnp.dtype(jnp.float32)}
  assert head(_images((2, 16)), train=False).dtype == jnp.bfloat16


# ---------------------------------------------------------------- mask token


def test_vit_mask_token(tiny_vit):
  x = _images((2, 16, 16, 1))
  none, _, _ = _apply(tiny_vit, x, train=False)
  all_false, _, _ = _apply(tiny_vit, x, train=False,
                           mask=jnp.zeros((2, 16), bool))
  np.testing.assert_array_equal(none, all_false)
  mask = jnp.zeros((2, 16), bool).at[:, :4].set(True)  # the top row of patches
  masked, inter, _ = _apply(tiny_vit, x, train=False, mask=mask)
  assert not np.allclose(masked, none, atol=1e-4)
  # Pixels under masked patches no longer reach the output.
  x_changed = x.at[:, :4].add(5.0)
  masked_changed, inter_changed, _ = _apply(tiny_vit, x_changed, train=False,
                                            mask=mask)
  np.testing.assert_allclose(masked_changed, masked, atol=1e-5)
  np.testing.assert_allclose(inter_changed["tokens"], inter["tokens"], atol=1e-5)


def test_resnet_rejects_mask(tiny_resnet):
  with pytest.raises(ValueError, match="mask"):
    tiny_resnet(_images((1, 8, 8, 1)), train=False, mask=jnp.ones((1, 4), bool))


# ----------------------------------------------------------------- DINO head


def test_dino_head():
  head = heads.DINOHead(16, out_dim=40, hidden_dim=24, bottleneck_dim=8,
                        rngs=nnx.Rngs(0))
  x = _images((3, 16))
  logits = head(x, train=True)
  assert logits.shape == (3, 40)
  kernel = head.last_layer.kernel()
  assert kernel.shape == (8, 40)
  np.testing.assert_allclose(jnp.linalg.norm(kernel, axis=0), 1.0, rtol=1e-5)
  # With a unit bottleneck and unit prototypes, logits are cosines.
  assert np.all(np.abs(logits) <= 1.0 + 1e-5)
  # g = 1 is a constant: the prototype layer's only state of any kind is v.
  paths = {"/".join(map(str, path))
           for path, _ in nnx.to_flat_state(nnx.state(head))}
  assert {p for p in paths if p.startswith("last_layer")} == {"last_layer/v"}
  # Four linear layers in all: three in the MLP and the prototype layer.
  assert len(head.mlp.linears) == 3
  # Token inputs [B, N, D] go through the same head.
  assert head(_images((2, 5, 16)), train=False).shape == (2, 5, 40)
  # Gradients flow through the normalisation: with g fixed, dL/dv is orthogonal
  # to each prototype direction v[:, j].
  graphdef, params, rest = nnx.split(head, nnx.Param, ...)
  grads = jax.grad(lambda p: jnp.sum(
    nnx.merge(graphdef, p, rest)(x, train=False) * jnp.arange(40.0)))(params)
  v, dv = params["last_layer"]["v"][...], grads["last_layer"]["v"][...]
  assert np.abs(dv).max() > 1e-3
  np.testing.assert_allclose(jnp.sum(v * dv, axis=0), 0.0, atol=1e-5)


def test_dino_head_trainable_scale():
  head = heads.DINOHead(16, out_dim=40, hidden_dim=24, bottleneck_dim=8,
                        norm_last_layer=False, rngs=nnx.Rngs(0))
  params = nnx.state(head, nnx.Param)
  assert params["last_layer"]["g"][...].shape == (40,)
  head.last_layer.g[...] = jnp.full((40,), 2.0)
  np.testing.assert_allclose(
    jnp.linalg.norm(head.last_layer.kernel(), axis=0), 2.0, rtol=1e-5)


# ------------------------------------------------------------ stochastic depth


def test_vit_drop_path(small_vit):
  x = _images((4, 16, 16, 1))
  rng = jax.random.key(1)
  eval1, _, _ = _apply(small_vit, x, train=False, rng=rng)
  eval2, _, _ = _apply(small_vit, x, train=False, rng=jax.random.key(2))
  np.testing.assert_array_equal(eval1, eval2)
  train1, _, _ = _apply(small_vit, x, train=True, rng=rng)
  train2, _, _ = _apply(small_vit, x, train=True, rng=rng)
  train3, _, _ = _apply(small_vit, x, train=True, rng=jax.random.key(2))
  np.testing.assert_array_equal(train1, train2)
  assert not np.allclose(train1, eval1, atol=1e-4)
  assert not np.allclose(train1, train3, atol=1e-4)
  # Without a key nothing is dropped (how EMA teachers are run).
  no_key, _, _ = _apply(small_vit, x, train=True)
  np.testing.assert_allclose(no_key, eval1, atol=1e-6)


def test_vit_drop_path_rates(small_vit):
  assert [b.drop_path for b in small_vit.blocks] == pytest.approx([0, 0.15, 0.3])


# ------------------------------------------------------------------ sharding


@pytest.mark.parametrize("which", ["resnet", "vit"])
def test_sharded_jit_matches_unsharded(which, tiny_resnet, small_vit):
  """8-way batch sharding gives the unsharded result, also in training mode:
  global-batch BatchNorm and per-example stochastic depth are layout-free."""
  assert jax.device_count() == 8
  model = tiny_resnet if which == "resnet" else small_vit
  x = _images((8, 16, 16, 1), seed=3)
  kwargs = {"rng": jax.random.key(0)} if which == "vit" else {}
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  for train in (False, True):
    ref_out, ref_inter, ref_state = _apply(model, x, train=train, **kwargs)
    with jax.set_mesh(mesh):
      xs = jax.device_put(x, NamedSharding(mesh, P("data")))
      out, inter, state = _apply(model, xs, train=train, **kwargs)
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(inter["local"], ref_inter["local"], atol=2e-5,
                               rtol=2e-5)
    # Global-batch BatchNorm: running statistics match the unsharded ones.
    for a, b in zip(_batch_stats(state), _batch_stats(ref_state)):
      np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5)


def test_vit_explicit_mesh_matches_unsharded(small_vit):
  """The [CLS] concatenation also holds under an Explicit-axis mesh."""
  x = _images((8, 16, 16, 1), seed=6)
  mask = jnp.broadcast_to(jnp.arange(16) % 3 == 0, (8, 16))
  rng = jax.random.key(7)
  ref, _, _ = _apply(small_vit, x, train=True, rng=rng, mask=mask)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    batch = NamedSharding(mesh, P("data"))
    out, _, _ = _apply(small_vit, jax.device_put(x, batch), train=True, rng=rng,
                       mask=jax.device_put(mask, batch))
  np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)


# -------------------------------------------------------------------- errors


def test_config_errors():
  rngs = nnx.Rngs(0)
  with pytest.raises(ValueError, match="model.variant"):
    resnet.create(_resnet_cfg(variant="resnet19"), in_channels=3, rngs=rngs)
  with pytest.raises(ValueError, match="model.dtype"):
    resnet.create(_resnet_cfg(variant="resnet_tiny", dtype="float16"),
                  in_channels=3, rngs=rngs)
  with pytest.raises(ValueError, match="model.variant"):
    vit.create(_vit_cfg(variant="XL/16", image_size=224), in_channels=3,
               rngs=rngs)
  with pytest.raises(ValueError, match="model.image_size"):
    vit.create(_vit_cfg(variant="Ti/16", image_size=100), in_channels=3,
               rngs=rngs)
  with pytest.raises(ValueError, match="model.pool"):
    vit.create(_vit_cfg(variant="Ti/16", image_size=32, pool="max"),
               in_channels=3, rngs=rngs)
  assert vit.decode_variant("L/14") == dict(
    width=1024, depth=24, num_heads=16, mlp_dim=4096, patch_size=14)
