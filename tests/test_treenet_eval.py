"""TreeNet's per-leaf evaluation (paper 000): per-leaf layers, best-subset selection on
validation only, saliency maps, and the evaluation program on a real TreeNet run."""
import inspect
import json
import os

import jax
import jax.numpy as jnp
import matplotlib.image
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jssl import config as cfg
from jssl import sharding, train
from jssl.data import multicrop, pipeline
from jssl.evaluators import feature_cache, program, treenet_eval
from jssl.models import leaf_cnn, treenet
from tests import recipes
from tests.test_treenet import _FAST_COMPILE, _SMALL, _init, _jit

M = 3


@pytest.fixture(scope="module")
def small_net():
  """(graphdef, params, aug) of a 3-leaf TreeNet on 12 px grayscale images."""
  model_cfg = treenet.model_config(num_leaves=M, join="dense", **_SMALL)
  graphdef, params = _init(lambda: treenet.create(model_cfg, in_channels=1, rngs=nnx.Rngs(0)))
  aug = cfg.base("treenet", aug_recipe="dino", global_size=12, channels=1, small_images=True).aug
  return graphdef, params, aug


def _uint8_images(n=4, side=12, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, side, side, 1), dtype=np.uint8)


def _leaf_net():
  """The graphdef of one leaf as a separate network, in `_SMALL`'s sizes."""
  return nnx.graphdef(nnx.eval_shape(lambda: leaf_cnn.LeafCNN(1, _SMALL["channels"], hidden_dim=_SMALL[
      "leaf_hidden_dim"], out_dim=_SMALL["leaf_out_dim"], rngs=nnx.Rngs(0))))


def test_per_leaf_layers_are_the_leaf_networks_outputs(small_net):
  graphdef, params, aug = small_net
  images = _uint8_images()
  names = feature_cache.intermediate_names(graphdef, params, {}, aug, images.shape[1:])
  for j in range(M):
    assert {f"leaf_{j}", f"leaf_hidden_{j}", f"leaf_pooled_{j}"} <= set(names)
  assert treenet.leaf_layer_name("leaf_hidden", 2) == "leaf_hidden_2"

  # The feature extractor's own path (layer spec -> pooled, concatenated features), every spec in one program.
  specs = [f"{layer}_concat" for layer in treenet.LEAF_LAYERS] + ["leaf_2+leaf_0"]
  specs += [treenet.leaf_layer_name(layer, j) for layer in treenet.LEAF_LAYERS for j in range(M)]
  fns = {spec: feature_cache.make_pooled_fn(graphdef, aug, feature_cache.resolve_layer(spec, names)) for spec in specs}
  got = _jit(lambda p, im: {spec: fn(p, {}, im) for spec, fn in fns.items()}, params, jnp.asarray(images))

  leaf_def = _leaf_net()
  x = multicrop.eval_preprocess(jnp.asarray(images), aug)
  alone = _jit(lambda p: [nnx.merge(leaf_def, leaf_cnn.leaf_params(p["leaves"], j))(x) for j in range(M)], params)
  for layer, key in (("leaves", "out"), ("leaf_hidden", "hidden"), ("leaf_pooled", "pooled")):
    concat = np.asarray(got[f"{layer}_concat"]).reshape(len(images), M, -1)
    for j in range(M):
      one = np.asarray(got[treenet.leaf_layer_name(layer, j)])
      np.testing.assert_allclose(one, alone[j][key], rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(concat[:, j], one, rtol=1e-6, atol=1e-6)   # what the evaluator slices
    if layer == "leaves":
      np.testing.assert_allclose(got["leaf_2+leaf_0"], treenet_eval.concat(concat, [2, 0]), rtol=1e-6, atol=1e-6)


def _leaf_data(seed, n, m=5, d=4, classes=3):
  """[n, m, d] features whose leaf j carries the class with strength (j + 1) / m, plus noise; labels [n]."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n).astype(np.int32)
  centres = np.random.default_rng(99).normal(size=(m, classes, d))
  strength = (np.arange(m) + 1.0) / m
  x = strength[None, :, None] * centres[:, y].transpose(1, 0, 2) + rng.normal(size=(n, m, d))
  return x.astype(np.float32), y


def test_best_subset_selection_never_reads_test_labels():
  xtr, ytr = _leaf_data(0, 400)
  xte, yte = _leaf_data(1, 200)
  scorer = treenet_eval.KnnScorer(k=10, temperature=0.07, num_classes=3,
                                  split=dict(val_fraction=0.1, seed=0, stratified=True))
  sizes = treenet_eval.subset_sizes([1, 2, 4, 8, "all"], 5)
  assert sizes == [1, 2, 4, 5]
  res = treenet_eval.evaluate(xtr, ytr, xte, yte, sizes, scorer)
  assert res["ranking"] == [int(j) for j in np.argsort(-res["val_by_leaf"], kind="stable")]
  assert res["ranking"][0] in (3, 4) and res["test_by_leaf"][4] > res["test_by_leaf"][0]   # stronger leaves win
  assert res["chosen"] == max(sizes, key=lambda s: (res["subsets"][s]["val_acc"], -s))
  for s, sub in res["subsets"].items():
    assert sub["leaves"] == res["ranking"][:s]
  # Corrupted test labels (and test features): the same choices, different test numbers.
  rng = np.random.default_rng(5)
  bad = treenet_eval.evaluate(xtr, ytr, rng.normal(size=xte.shape).astype(np.float32), (yte + 1) % 3, sizes, scorer)
  shuffled = treenet_eval.evaluate(xtr, ytr, xte, rng.permutation(yte), sizes, scorer)
  for other in (bad, shuffled):
    assert other["ranking"] == res["ranking"] and other["chosen"] == res["chosen"]
    np.testing.assert_array_equal(other["val_by_leaf"], res["val_by_leaf"])
    assert {s: (v["leaves"], v["val_acc"]) for s, v in other["subsets"].items()} == \
           {s: (v["leaves"], v["val_acc"]) for s, v in res["subsets"].items()}
  assert not np.allclose(bad["test_by_leaf"], res["test_by_leaf"])
  assert not [a for a in inspect.signature(treenet_eval.select).parameters if "test" in a]   # it cannot see test


def test_config_errors_are_one_sentence():
  c = ml_collections.ConfigDict(dict(layers="leaves", protocols="knn", knn_k=20, subset_sizes="1,2,all",
                                     saliency_images=4, saliency_leaves="best", saliency_layer="leaves"))
  assert treenet_eval.parse(c)["sizes"] == [1, 2, "all"]
  for field, value, needle in (("layers", "pre_logits", "per-leaf layers"), ("protocols", "svm", "protocols"),
                               ("subset_sizes", "0,2", "positive integers"),
                               ("saliency_leaves", "1,2,3,4", "one to three"),
                               ("saliency_layer", "leaf_hidden", "does not evaluate")):
    bad = ml_collections.ConfigDict(c.to_dict())
    bad[field] = value
    with pytest.raises(ValueError, match=needle):
      treenet_eval.parse(bad)
  with pytest.raises(ValueError, match="leaves no size"):
    treenet_eval.subset_sizes([8], 4)


def test_saliency_is_the_leaf_networks_input_gradient_and_png_is_written(small_net, tmp_path):
  graphdef, params, aug = small_net
  images = _uint8_images(n=5)
  leaves = [2, 0, 1]
  unit, maps = treenet_eval.saliency_maps(graphdef, params, {}, aug, images, leaves)
  assert unit.shape == (5, 12, 12, 1) and maps.shape == (5, 12, 12, 3)
  assert 0.0 <= unit.min() and unit.max() <= 1.0 and np.all(np.isfinite(maps)) and maps.min() >= 0.0
  leaf_def = _leaf_net()
  mean, std = jnp.asarray(aug.mean), jnp.asarray(aug.std)

  def norm(x, p, j):
    z = nnx.merge(leaf_def, leaf_cnn.leaf_params(p["leaves"], j))((x - mean) / std)["out"]
    return jnp.sum(jnp.linalg.norm(z, axis=-1))
  # |d ||z_j|| / d pixel| of leaf j as a separate network.
  grads = _jit(lambda x, p: [jax.grad(norm)(x, p, j) for j in leaves], jnp.asarray(unit), params)
  for i, grad in enumerate(grads):
    want = np.abs(grad).max(-1)
    np.testing.assert_allclose(maps[..., i], want, rtol=1e-4, atol=1e-4 * want.max())
  rgb, over = treenet_eval.overlay(unit, maps[..., :2])   # two leaves: blue stays empty
  assert rgb.shape == over.shape == (5, 12, 12, 3) and rgb[..., 2].max() == 0.0
  assert 0.0 <= over.min() and over.max() <= 1.0 and rgb[..., :2].max() == 1.0
  # One column per image, five rows (image, overlay, three leaves): more images, a wider picture of the same height.
  shapes = []
  for n in (2, 5):
    path = treenet_eval.saliency_png(unit[:n], maps[:n], str(tmp_path / f"s{n}.png"), leaves=leaves, title="test")
    png = matplotlib.image.imread(path)
    assert png.ndim == 3 and png.shape[2] in (3, 4)
    shapes.append(png.shape[:2])
  (h2, w2), (h5, w5) = shapes
  assert abs(h5 - h2) < 0.05 * h2 and w5 > 2 * w2 and h2 > 5 * 40


def _train_tiny_treenet(workdir: str) -> str:
  """configs/treenet_fmnist.py shrunk (3 leaves, narrow convolutions, batch 8), trained 2 steps by the
  trainer; the step is compiled without XLA's backend optimisation, as tests/recipes.py does."""
  config = recipes.shrink(recipes.load(os.path.join(recipes.ROOT, "configs", "treenet_fmnist.py")))
  config.model.update(num_leaves=M, channels=(4, 4, 8, 8, 8), leaf_hidden_dim=8, leaf_out_dim=8)
  config.total_steps = config.checkpoint_every_steps = 2
  config.eval.train_examples, config.eval.test_examples, config.eval.batch_size = 64, 64, 64
  config.eval.pixels_baseline = False
  trainer = train.Trainer(config, workdir, verbose=False).prepare()
  try:
    batch = pipeline.to_global(next(trainer.data), trainer.batch_sharding)
    trainer.step_fn = trainer.step_fn.lower(trainer.state, batch).compile(_FAST_COMPILE)
    trainer.run()
  finally:
    trainer.checkpointer.close()
  return workdir


@pytest.mark.slow
def test_evaluation_program_on_a_treenet_run(tmp_path):
  run_dir = _train_tiny_treenet(str(tmp_path / "run"))
  config = recipes.shrink_eval(recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "treenet.py"), run_dir))
  config.cache_dir = str(tmp_path / "cache")
  config.treenet.protocols = "knn,linear"
  config.treenet.subset_sizes = "1,all"   # each new feature width compiles the probe again
  config.treenet.saliency_images = 4
  out = tmp_path / "out"
  rows = program.run(config, str(out), mesh=sharding.make_mesh(1))
  metrics = {r["metric"]: r for r in rows}
  assert metrics["knn_k20_t0.07_cosine"]["protocol"]["layer"] == "pre_logits"   # the join's output
  for name in ("knn_k20_t0.07_cosine", "linear"):
    for j in range(M):
      assert metrics[f"leaf {j}: {name}"]["protocol"]["layer"] == f"leaf_{j}"
    for s in (1, M):
      assert f"best {s} leaves: {name}" in metrics
    chosen = metrics[f"chosen subset: {name}"]
    s = chosen["protocol"]["subset_size"]
    assert metrics[f"best {s} leaves: {name}"]["protocol"]["chosen"] is True
    assert chosen["value"] == metrics[f"best {s} leaves: {name}"]["value"]
  assert all(0.0 <= r["value"] <= 1.0 for r in rows)
  assert metrics["best 3 leaves: linear"]["protocol"]["layer"] == "leaves_concat"
  saved = json.loads((out / "results.json").read_text())
  assert len(saved["plots"]) == 1 and os.path.basename(saved["plots"][0]).startswith("treenet_saliency_")
  assert matplotlib.image.imread(saved["plots"][0]).shape[0] > 5 * 40
  report = (out / "results.md").read_text()
  assert "TreeNet: each leaf alone" in report and "| treenet |" in report
  assert f"({os.path.basename(saved['plots'][0])})" in report
