"""MoCo v3: the loss against a loop-by-loop reference of the paper's formula, its symmetry and
stop-gradient, the networks, device-count invariance of a train step and the recipes' presets."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jssl import config as cfg
from jssl import optim, sharding, train
from jssl import state as state_lib
from jssl.data import pipeline
from jssl.losses.mocov3 import contrastive, mocov3_loss
from jssl.methods import mocov3
from tests import recipes


def _np_ctr(q, k, tau):
  """-log exp(q_i.k_i / tau) / sum_j exp(q_i.k_j / tau) on unit vectors, averaged over i, times 2 tau."""
  q = q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True)
  k = k.astype(np.float64) / np.linalg.norm(k, axis=1, keepdims=True)
  total = 0.0
  for i in range(len(q)):
    denom = sum(np.exp(q[i] @ k[j] / tau) for j in range(len(k)))
    total += -np.log(np.exp(q[i] @ k[i] / tau) / denom)
  return 2 * tau * total / len(q)


def _views(seed=0, b=6, d=5):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(2, b, d)).astype(np.float32), rng.normal(size=(2, b, d)).astype(np.float32)


def test_loss_matches_reference():
  q, k = _views()
  for tau in (0.2, 1.0):
    got = float(mocov3_loss(jnp.asarray(q), jnp.asarray(k), tau))
    np.testing.assert_allclose(got, _np_ctr(q[0], k[1], tau) + _np_ctr(q[1], k[0], tau), rtol=1e-5)


def test_loss_hand_values():
  # Queries equal to their keys, mutually orthogonal images: log-softmax of the positive is
  # 1/t - log(e^{1/t} + B - 1), so each direction is 2t (log(e^{1/t} + B - 1) - 1/t).
  z = jnp.eye(4)
  t = 0.2
  one = 2 * t * (np.log(np.exp(1 / t) + 3) - 1 / t)
  np.testing.assert_allclose(float(contrastive(z, z, t)), one, rtol=1e-6)
  np.testing.assert_allclose(float(mocov3_loss(jnp.stack([z, z]), jnp.stack([z, z]), t)), 2 * one, rtol=1e-6)
  # The scale 2t: queries orthogonal to every key (all logits 0) give 2t log B.
  queries, keys = jnp.eye(5)[:4], jnp.tile(jnp.eye(5)[4], (4, 1))
  np.testing.assert_allclose(float(contrastive(queries, keys, t)), 2 * t * np.log(4), rtol=1e-6)


def test_loss_is_symmetric_in_the_views():
  q, k = _views(1)
  a = float(mocov3_loss(jnp.asarray(q), jnp.asarray(k), 0.2))
  b = float(mocov3_loss(jnp.asarray(q[::-1]), jnp.asarray(k[::-1]), 0.2))
  np.testing.assert_allclose(a, b, rtol=1e-6)
  # Not symmetric in queries vs keys: they play different roles.
  assert not np.isclose(a, float(mocov3_loss(jnp.asarray(k), jnp.asarray(q), 0.2)))


def test_no_gradient_into_the_keys():
  q, k = map(jnp.asarray, _views(2))
  gq, gk = jax.grad(lambda a, b: mocov3_loss(a, b, 0.2), argnums=(0, 1))(q, k)
  assert np.all(np.asarray(gk) == 0)
  assert np.abs(np.asarray(gq)).max() > 1e-4


def test_loss_one_vs_eight_devices():
  q, k = _views(3, b=16)
  fn = jax.jit(lambda a, b: mocov3_loss(a, b, 0.2))
  single = float(fn(jnp.asarray(q), jnp.asarray(k)))
  devices = jax.devices()
  assert len(devices) == 8
  split = NamedSharding(Mesh(np.array(devices), ("data",)), P(None, "data"))   # [2, B, D]: B over devices
  sharded = float(fn(jax.device_put(q, split), jax.device_put(k, split)))
  np.testing.assert_allclose(sharded, single, rtol=1e-5)


def _tiny():
  """A MoCo v3 config on a one-block RES-L-H: building and compiling it is quick, and its BatchNorm
  layers (like the heads') normalise over the global batch per view, as a ResNet's would."""
  c = cfg.base("mocov3", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model = ml_collections.ConfigDict(dict(name="res_lh", depth=1, width=8, dtype="float32"))
  c.mocov3.proj_hidden, c.mocov3.proj_dim, c.mocov3.pred_hidden = 32, 16, 32
  c.mocov3.temperature = 0.2
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 2, 0.0
  return c


def _build(config):
  return nnx.eval_shape(lambda: mocov3.build(config, in_channels=1, rngs=nnx.Rngs(params=0)))


def test_networks_follow_the_official_heads():
  c = _tiny()
  student, teacher = _build(c)
  assert len(student.projector.linears) == 2 and student.projector.last_norm is not None
  assert len(student.predictor.linears) == 2 and student.predictor.last_norm is None
  assert set(nnx.to_pure_dict(nnx.state(teacher, nnx.Param))) == {"encoder", "projector"}  # no predictor
  c.mocov3.proj_layers, c.mocov3.pred_last_bn = 3, True
  student, _ = _build(c)
  assert len(student.projector.linears) == 3 and student.predictor.last_norm is not None
  c.mocov3.temperature = 0.0
  with pytest.raises(ValueError, match="mocov3.temperature"):
    _build(c)


def _one_step(config, num_devices, batch):
  """One jitted train step over `num_devices` devices: (host state after it, host metrics)."""
  mesh = sharding.make_mesh(num_devices)
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=config.total_steps,
                                   steps_per_epoch=2)
  rng = jax.random.PRNGKey(config.seed)
  shardings = state_lib.state_shardings(config, jax.eval_shape(init_fn, rng), mesh)
  state = jax.jit(init_fn, out_shardings=shardings).lower(rng).compile(recipes._FAST_COMPILE)(rng)
  # The momentum network starts as a copy of the online encoder and projector.
  for name in ("encoder", "projector"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state["teacher_params"][name]),
                 jax.device_get(state["params"][name]))
  batch = pipeline.to_global(batch, sharding.batch_sharded(mesh))
  step = jax.jit(train.make_train_step(config, setup), in_shardings=(shardings, sharding.batch_sharded(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)))
  state, metrics = step.lower(state, batch).compile(recipes._FAST_COMPILE)(state, batch)
  return jax.device_get(state), jax.device_get(metrics)


def test_one_and_eight_devices_agree():
  config = _tiny()
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16, dtype=np.int32)}
  s1, m1 = _one_step(config, 1, batch)
  s8, m8 = _one_step(config, 8, batch)
  assert np.isfinite(m1["mocov3_loss"]) and m1["mocov3_loss"] > 0
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5, atol=1e-6)
  for key in ("params", "teacher_params", "batch_stats", "teacher_stats"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), s1[key], s8[key])


def test_recipes_are_the_published_presets():
  def load(name):
    return recipes.load(os.path.join(recipes.ROOT, "configs", name))

  r50 = load("mocov3_resnet50_imagenet.py")
  assert (r50.num_epochs, r50.batch_size, r50.optim.name, r50.optim.lr, r50.optim.weight_decay) == (
      100, 4096, "lars", 0.6, 1e-6)
  assert (r50.mocov3.temperature, r50.mocov3.proj_layers, r50.mocov3.pred_last_bn, r50.ema.base,
          r50.aug.global_scale) == (1.0, 2, False, 0.99, (0.2, 1.0))
  vit = load("mocov3_vits16_imagenet.py")
  assert (vit.num_epochs, vit.batch_size, vit.optim.name, vit.optim.lr, vit.optim.weight_decay) == (
      300, 4096, "adamw", 1.5e-4, 0.1)
  assert (vit.mocov3.temperature, vit.mocov3.proj_layers, vit.mocov3.pred_last_bn, vit.optim.warmup_epochs,
          vit.ema.base) == (0.2, 3, True, 40, 0.99)
  assert vit.optim.freeze_epochs >= vit.num_epochs
  # The frozen pattern names exactly the patch projection of the online ViT.
  _, init_fn = state_lib.build(recipes.shrink(vit), in_channels=3, num_classes=10, total_steps=2, steps_per_epoch=1)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  mask = optim.frozen_mask(abstract["params"], vit.optim.frozen)
  frozen = [optim.path_str(path) for path, f in jax.tree.leaves_with_path(mask) if f]
  assert sorted(frozen) == ["encoder/patch_embed/bias", "encoder/patch_embed/kernel"]
  for name in ("mocov3_resnet50_imagenet.py", "mocov3_vits16_imagenet.py"):   # no number claimed for a run not made
    with open(os.path.join(recipes.ROOT, "configs", name)) as f:
      assert "not measured" in " ".join(f.read().lower().split())
