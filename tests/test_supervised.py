"""The supervised method (cross-entropy against numpy, 1 vs 8 devices, its recipe and checks) and paper 004's
random targets: a tiny supervised run's checkpoints as `predicted:RUN@STEP` label sets."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jssl import checkpoint
from jssl import config as cfg
from jssl import sharding, train
from jssl import state as state_lib
from jssl.data import multicrop, pipeline, sources
from jssl.evaluators import analysis_eval, feature_cache, label_sets, program
from jssl.methods import supervised
from tests import recipes

RECIPE = os.path.join(recipes.ROOT, "configs", "supervised_res_lh_fmnist.py")


def _np_cross_entropy(logits, labels):
  """Mean over examples of log sum_k exp(z_k) - z_y, in float64."""
  z = np.asarray(logits, np.float64)
  top = z.max(axis=1, keepdims=True)
  log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
  return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def _tiny(c):
  c.model.update(depth=1, width=8)
  c.batch_size, c.total_steps = 16, 2
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.num_devices, c.probe.enabled, c.eval.pixels_baseline = 1, False, False
  c.log_every_steps, c.checkpoint_every_steps = 2, 100
  c.checkpoint_steps, c.keep_checkpoints = "0", 2   # saves the untrained state and the last step, 2
  return c


def test_loss_is_cross_entropy_of_the_first_view():
  c = _tiny(recipes.load(RECIPE))
  # Shapes only, then random weights: eager initialisation compiles every initializer on its own.
  abstract, _ = nnx.eval_shape(lambda: supervised.build(c, in_channels=1, rngs=nnx.Rngs(params=0)))
  graphdef, params, stats = state_lib.split(abstract)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: jnp.asarray(rng.normal(scale=0.5, size=a.shape), a.dtype), params)
  stats = jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), stats)   # unused in train mode
  views = {"global": jnp.asarray(rng.normal(size=(1, 6, 28, 28, 1)), jnp.float32),
           "label": jnp.asarray([0, 3, 9, 3, 1, 7], jnp.int32)}

  @jax.jit
  def run(params, stats, views):
    net = nnx.merge(graphdef, params, stats)
    value, (_, metrics, feats) = supervised.loss(net, None, {}, views, rng=None, ctx=None, config=c)
    out, inter = net.encoder(views["global"][0], train=True)   # batch statistics: the same logits again
    return value, metrics, feats, out, inter["logits"]

  value, metrics, feats, out, logits = jax.device_get(run(params, stats, views))
  head = jax.device_get(params["encoder"]["head"])
  np.testing.assert_allclose(logits, out @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-5)
  labels = np.asarray(views["label"])
  np.testing.assert_allclose(float(value), _np_cross_entropy(logits, labels), rtol=1e-5)
  assert float(metrics["cross_entropy"]) == float(value)
  assert float(metrics["train_acc"]) == pytest.approx(np.mean(logits.argmax(1) == labels))
  assert feats.shape == (6, 8)
  # Hand value: uniform logits over K classes give log K.
  np.testing.assert_allclose(float(supervised.cross_entropy(jnp.zeros((3, 10)), jnp.arange(3))), np.log(10),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="views\\['label'\\]"):
    supervised.loss(None, None, {}, {"global": views["global"]}, rng=None, ctx=None, config=c)


def _one_step(config, num_devices, batch):
  """State and metrics after one jitted train step over `num_devices` devices (unoptimised compiles)."""
  mesh = sharding.make_mesh(num_devices)
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=config.total_steps,
                                   steps_per_epoch=2)
  rng = jax.random.PRNGKey(config.seed)
  shardings = state_lib.state_shardings(config, jax.eval_shape(init_fn, rng), mesh)
  state = jax.jit(init_fn, out_shardings=shardings).lower(rng).compile(recipes._FAST_COMPILE)(rng)
  batch = pipeline.to_global(batch, sharding.batch_sharded(mesh))
  step = jax.jit(train.make_train_step(config, setup), in_shardings=(shardings, sharding.batch_sharded(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)))
  return jax.device_get(step.lower(state, batch).compile(recipes._FAST_COMPILE)(state, batch))


def test_one_and_eight_devices_agree():
  c = _tiny(recipes.load(RECIPE))
  batch = next(pipeline.train_iterator(c.data, global_batch_size=c.batch_size, seed=0))
  (s1, m1), (s8, m8) = _one_step(c, 1, batch), _one_step(c, 8, batch)
  for key in ("loss", "cross_entropy", "train_acc"):
    np.testing.assert_allclose(m1[key], m8[key], rtol=1e-5, atol=1e-6)
  for key in ("params", "batch_stats"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), s1[key], s8[key])


def test_recipe_keeps_log_spaced_checkpoints_and_checks_its_fields():
  c = recipes.load(RECIPE)
  assert (c.method, c.model.name, c.aug.recipe, c.aug.num_global) == ("supervised", "res_lh", "supervised", 1)
  assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.batch_size) == ("adamw", 1e-3, 1e-4, 256)
  info = cfg.validate(c, num_devices=1)   # keep_checkpoints covers every save
  total = cfg.total_steps(c, info["num_train"])
  assert cfg.checkpoint_steps(c)[0] == 0 and total == 1170
  bad = recipes.load(RECIPE)
  bad.keep_checkpoints = 2
  with pytest.raises(ValueError, match="keep_checkpoints=2 would delete some of checkpoint_steps"):
    cfg.validate(bad, num_devices=1)
  bad = recipes.load(RECIPE)
  bad.checkpoint_steps = "0,ten"
  with pytest.raises(ValueError, match="checkpoint_steps='0,ten' must be"):
    cfg.validate(bad, num_devices=1)
  bad = recipes.load(RECIPE)
  bad.supervised.num_classes = 100
  with pytest.raises(ValueError, match="supervised.num_classes=100 must equal the 10 classes"):
    cfg.validate(bad, num_devices=1)


def test_label_set_names_and_arithmetic():
  assert label_sets.parse_predicted("predicted:runs/a@b/sup@20") == ("runs/a@b/sup", 20)
  assert label_sets.parse_predicted("predicted:runs/sup@all") == ("runs/sup", None)
  for bad in ("predicted:runs/sup", "predicted:runs/sup@last", "predicted:@3"):
    with pytest.raises(ValueError, match="must be predicted:RUN@STEP"):
      label_sets.parse_predicted(bad)
  np.testing.assert_array_equal(label_sets.predicted_labels([[0.0, 2.0, 1.0], [3.0, 3.0, 0.0]]), [1, 0])
  assert label_sets.agreement([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
  assert (label_sets.randomness(0, 40), label_sets.randomness(10, 40), label_sets.randomness(40, 40)) == (1, 0.75, 0)


class _Store:
  """Stands in for FeatureStore where only the run's method matters."""

  def __init__(self, method):
    self.method = method

  def checkpoint_config(self, path, step=None):
    return ml_collections.ConfigDict({"method": self.method})


def test_predicted_label_sets_fail_with_one_sentence(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="holds no jssl checkpoint"):
    analysis_eval._expand([f"predicted:{tmp_path}/none@0"], _Store("supervised"))
  monkeypatch.setattr(feature_cache, "checkpoint_steps", lambda path: [0, 5, 10])
  with pytest.raises(ValueError, match=r"asks for step 7, but .* has checkpoints at steps \[0, 5, 10\] only"):
    analysis_eval._expand(["predicted:run@7"], _Store("supervised"))
  with pytest.raises(ValueError, match="needs a run trained with method 'supervised', but run was trained with"):
    analysis_eval._expand(["predicted:run@5"], _Store("vicreg"))
  got = analysis_eval._expand(["classes", "predicted:run@all"], _Store("supervised"))
  assert got == ["classes", ("predicted:run@0", "run", 0, 10), ("predicted:run@5", "run", 5, 10),
                 ("predicted:run@10", "run", 10, 10)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("supervised_run")), _tiny(recipes.load(RECIPE)))


def _logits_by_hand(run_dir, step, images):
  """The classifier's logits at `step`, from the checkpoint's arrays: linear head on the pooled features."""
  config, setup, state = checkpoint.load_pretrained(run_dir, step=step, mesh=sharding.make_mesh(1))
  params, stats = setup.encoder_params(state)

  @jax.jit
  def pooled(params, stats, images):
    backbone = nnx.merge(setup.encoder_def, params, stats).backbone
    return backbone(multicrop.eval_preprocess(images, config.aug), train=False)[0]

  head = jax.device_get(params["head"])
  return np.asarray(pooled(params, stats, jnp.asarray(images)), np.float64) @ head["kernel"] + head["bias"]


def test_random_targets_from_a_supervised_run(run_dir, tmp_path):
  assert feature_cache.checkpoint_steps(run_dir) == [0, 2]
  config = recipes.shrink_eval(recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "analysis.py"), run_dir))
  config.cache_dir = str(tmp_path / "cache")
  config.analysis.linear = False
  config.analysis.labels = f"classes,predicted:{run_dir}@all"
  rows = program.run(config, str(tmp_path / "out"), mesh=sharding.make_mesh(1))
  agree = {(r["protocol"]["labels"], r["metric"]): r for r in rows if r["metric"].startswith("agreement")}
  names = [label_sets.predicted_name(run_dir, s) for s in (0, 2)]
  assert set(agree) == {(n, f"agreement_{s}") for n in names for s in ("train", "test")}
  assert all(0.0 <= r["value"] <= 1.0 for r in agree.values())
  assert [agree[n, "agreement_test"]["protocol"]["randomness"] for n in names] == [1.0, 0.0]
  images, classes = sources.load_arrays(recipes.load(RECIPE).data, "test", config.data.max_test_examples)
  for step, name in zip((0, 2), names):
    labels = _logits_by_hand(run_dir, step, images).argmax(axis=1)
    assert agree[name, "agreement_test"]["value"] == pytest.approx(np.mean(labels == classes))
  for name in ["classes"] + names:   # every metric under every label set
    got = {r["metric"]: r["value"] for r in rows if r["protocol"]["labels"] == name and r["protocol"]["layer"]}
    assert {"ncc_train", "ncc_test", "cdnv", "class_variance", "class_distance"} <= set(got)
    assert 0.0 <= got["ncc_test"] <= 1.0
  assert f"labels={names[0]}; classes=10; randomness=1.0" in (tmp_path / "out" / "results.md").read_text()
