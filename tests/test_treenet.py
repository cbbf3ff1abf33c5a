"""TreeNet (paper 000): the grouped leaves equal separate leaf networks, the joins, the
diversity loss against its formula, the parameter-matched baseline, 1 vs 8 devices."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import config as cfg
from jssl.methods import treenet as method
from jssl.methods.common import StepContext
from jssl.models import leaf_cnn, treenet
from jssl import sharding, train
from jssl import state as state_lib
from jssl.data import pipeline
from tests.test_train import _batches

_SMALL = dict(channels=(4, 4, 8, 8, 8), leaf_hidden_dim=8, leaf_out_dim=8, join_hidden_dim=16, join_dim=12,
              num_heads=2)


# XLA:CPU spends most of these one-off compiles optimising (18 s for a leaf stack's random
# initialisation, 1 s without), as tests/recipes.py notes; eager calls compile every op alone.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, *args, **kw):
  """fn compiled for `args` without XLA's backend optimisation, called on them."""
  return jax.jit(fn, **kw).lower(*args).compile(_FAST_COMPILE)(*args)


def _init(factory):
  """(graphdef, params as a pure dict) of the module `factory()` builds."""
  graphdef = nnx.graphdef(nnx.eval_shape(factory))
  return graphdef, _jit(lambda: nnx.to_pure_dict(nnx.state(factory(), nnx.Param)))


def _images(b=2, side=8, c=1, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, side, side, c)), jnp.float32)


def test_grouped_leaves_equal_separate_networks():
  m, x = 3, _images(b=2, side=8, c=3)
  stack_def, params = _init(lambda: leaf_cnn.LeafStack(m, 3, (4, 4, 8, 8, 8), hidden_dim=6, out_dim=5,
                                                       rngs=nnx.Rngs(0)))
  leaf_def = nnx.graphdef(nnx.eval_shape(lambda: leaf_cnn.LeafCNN(3, (4, 4, 8, 8, 8), hidden_dim=6, out_dim=5,
                                                                  rngs=nnx.Rngs(1))))
  w = jnp.asarray(np.random.default_rng(1).normal(size=(2, m, 5)), jnp.float32)

  def grouped(p):
    return nnx.merge(stack_def, p)(x)

  def one_by_one(p):   # a Python loop over m separate LeafCNNs, each with leaf j's parameters
    outs = [nnx.merge(leaf_def, leaf_cnn.leaf_params(p, j))(x) for j in range(m)]
    return {k: jnp.stack([o[k] for o in outs], axis=1) for k in outs[0]}

  a, b = _jit(grouped, params), _jit(one_by_one, params)
  assert a["out"].shape == (2, m, 5) and a["hidden"].shape == (2, m, 6) and a["pooled"].shape == (2, m, 8)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)
  # Each leaf has its own initialisation.
  assert not np.allclose(params["conv1"]["kernel"][0], params["conv1"]["kernel"][1])
  # Same gradients for a loss that weighs every leaf differently.
  ga = _jit(jax.grad(lambda p: jnp.sum(grouped(p)["out"] * w)), params)
  gb = _jit(jax.grad(lambda p: jnp.sum(one_by_one(p)["out"] * w)), params)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5), ga, gb)


def _net(join, m=4, **kw):
  """(graphdef, params, out_dim) of a small TreeNet."""
  cfg_ = treenet.model_config(num_leaves=m, join=join, **{**_SMALL, **kw})
  graphdef, params = _init(lambda: treenet.create(cfg_, in_channels=1, rngs=nnx.Rngs(0)))
  return graphdef, params, nnx.eval_shape(lambda: treenet.create(cfg_, in_channels=1, rngs=nnx.Rngs(0))).out_dim


def _apply(graphdef, x, train=False):
  return lambda p: _jit(lambda q: nnx.merge(graphdef, q)(x, train=train), p)


def _permute_leaves(params: dict, perm) -> dict:
  """The leaf parameters of a TreeNet's state with the leaves reordered by `perm`."""
  m = len(perm)

  def move(path, p):
    if path[0].key != "leaves":
      return p
    if path[-1].key == "kernel":
      return p[perm]
    return p.reshape(m, -1)[perm].reshape(-1)
  return jax.tree_util.tree_map_with_path(move, params)


@pytest.mark.parametrize("join", ["average", "max", "attention"])
def test_symmetric_joins_ignore_leaf_order(join):
  graphdef, params, _ = _net(join)
  x = _images(b=3)
  apply = _apply(graphdef, x)
  out, inter = apply(params)
  perm = np.array([2, 0, 3, 1])
  out_p, inter_p = apply(_permute_leaves(params, perm))
  np.testing.assert_allclose(inter_p["leaves"], inter["leaves"][:, perm], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out_p, out, rtol=1e-5, atol=1e-6)
  if join == "average":
    np.testing.assert_allclose(out, inter["leaves"].mean(axis=1), rtol=1e-6)
  if join == "max":
    np.testing.assert_array_equal(out, inter["leaves"].max(axis=1))


def test_dense_and_attention_shapes():
  x, m = _images(b=3), 4
  graphdef, params, out_dim = _net("dense", m)
  out, inter = _apply(graphdef, x, train=True)(params)
  assert out_dim == 12 and out.shape == (3, 12)
  assert inter["join_hidden1"].shape == inter["join_hidden2"].shape == (3, 16)
  assert inter["leaves"].shape == (3, m, 8) and inter["leaf_hidden"].shape == (3, m, 8)
  assert inter["leaf_pooled"].shape == (3, m, 8) and inter["leaves_concat"].shape == (3, m * 8)
  np.testing.assert_array_equal(inter["pre_logits"], out)
  graphdef, params, out_dim = _net("attention", m)
  out, inter = _apply(graphdef, x)(params)
  assert out_dim == 8 and out.shape == (3, 8)
  assert inter["join_tokens"].shape == (3, m, 8)
  np.testing.assert_allclose(out, inter["join_tokens"].mean(axis=1), rtol=1e-6)
  with pytest.raises(ValueError, match="model.join"):
    _net("concat")
  with pytest.raises(ValueError, match="num_heads"):
    _net("attention", num_heads=3)


def test_diversity_loss_matches_formula():
  z = np.random.default_rng(2).normal(size=(2, 3, 5, 4))   # [V, B, m, D]
  v, b, m, _ = z.shape
  total = 0.0
  for i, j, k in itertools.product(range(v), range(b), range(m)):
    for l in range(k + 1, m):
      a, c = z[i, j, k], z[i, j, l]
      total += a @ c / (np.linalg.norm(a) * np.linalg.norm(c))
  expected = total / (v * b * m * (m - 1) / 2)
  np.testing.assert_allclose(float(method.diversity_loss(jnp.asarray(z, jnp.float32))), expected, rtol=1e-5)
  same = np.repeat(z[:, :, :1], m, axis=2)   # identical leaves: cosine 1
  np.testing.assert_allclose(float(method.diversity_loss(jnp.asarray(same))), 1.0, rtol=1e-6)
  assert float(method.diversity_loss(jnp.asarray(z[:, :, :1]))) == 0.0


def _config(join="dense", beta=0.0, m=3):
  c = cfg.base("treenet", aug_recipe="dino", global_size=12, channels=1, small_images=True)
  c.model = treenet.model_config(num_leaves=m, join=join, **_SMALL)
  c.treenet.beta = beta
  c.dino.update(out_dim=32, hidden_dim=16, bottleneck_dim=8)
  c.aug.global_scale = (0.5, 1.0)
  c.batch_size = 16
  c.total_steps = 4
  c.optim.warmup_epochs = 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 256, 128, 64
  return c


def test_beta_adds_the_diversity_term():
  views = {"global": _images(b=4 * 2, side=12).reshape(2, 4, 12, 12, 1)}
  ctx = StepContext(jnp.zeros([], jnp.int32), 2, 4)
  values = {}
  for beta in (0.0, 0.5):
    config = _config(beta=beta)
    build = lambda c=config: method.build(c, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
    student_def = nnx.graphdef(nnx.eval_shape(lambda: build()[0]))
    params = _jit(lambda: nnx.to_pure_dict(nnx.state(build()[0], nnx.Param)))

    def loss(p, config=config, student_def=student_def):   # the teacher starts as a copy of the student
      student, teacher = nnx.merge(student_def, p), nnx.merge(student_def, p)
      return method.loss(student, teacher, method.init_state(config), views, rng=jax.random.key(1), ctx=ctx,
                         config=config)
    value, (_, metrics, feats) = _jit(loss, params)
    values[beta] = (float(value), metrics)
  (v0, m0), (v1, m1) = values[0.0], values[0.5]
  np.testing.assert_allclose(v0, float(m0["dino_loss"]), rtol=1e-6)
  np.testing.assert_allclose(v1 - v0, 0.5 * float(m0["diversity_loss"]), rtol=1e-5)
  assert feats.shape == (4, 12)
  bad = _config()
  bad.treenet.views = "per_leaf"
  with pytest.raises(ValueError, match="treenet.views"):
    method.build(bad, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))


def test_matched_width_baseline():
  tree = treenet.model_config(num_leaves=8, join="dense", join_hidden_dim=64, join_dim=32)
  target = treenet.param_counts(tree, 1)["total"]
  single = treenet.model_config(num_leaves=1, join="dense", join_hidden_dim=64, join_dim=32)
  single.width = treenet.matched_width(single, target, 1)
  got = treenet.param_counts(single, 1)["total"]
  assert target <= got < 1.02 * target
  single.width -= 0.01
  assert treenet.param_counts(single, 1)["total"] < target
  table = treenet.param_table({"tree": tree, "cnn": single}, 1)
  assert "tree" in table and f"{target:,}" in table


def _train_step(config, num_devices, batch):
  """One jitted trainer step over `num_devices` devices (tests/test_train.py's `_run_steps`, compiled
  without backend optimisation): (host state, host metrics)."""
  mesh = sharding.make_mesh(num_devices)
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=config.total_steps,
                                   steps_per_epoch=2)
  rng = jax.random.PRNGKey(config.seed)
  shardings = state_lib.state_shardings(config, jax.eval_shape(init_fn, rng), mesh)
  state = _jit(init_fn, rng, out_shardings=shardings)
  data = sharding.batch_sharded(mesh)
  state, metrics = _jit(train.make_train_step(config, setup), state, pipeline.to_global(batch, data),
                        in_shardings=(shardings, data), out_shardings=(shardings, sharding.replicated(mesh)))
  return jax.device_get(state), jax.device_get(metrics)


def test_one_and_eight_devices_agree():
  config = _config(beta=0.1)
  batch = _batches(config, 1)[0]
  s1, m1 = _train_step(config, 1, batch)
  s8, m8 = _train_step(config, 8, batch)
  for key in ("loss", "dino_loss", "diversity_loss"):
    np.testing.assert_allclose(m1[key], m8[key], rtol=1e-5, atol=1e-6)
  assert m1["diversity_loss"] != 0.0
  for key in ("params", "teacher_params", "method_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), s1[key], s8[key])
