"""The "analysis" evaluation on a real tiny VICReg / RES-L-H checkpoint, and the Fashion-MNIST superclasses."""
import os

import numpy as np
import pytest

from jssl import config as cfg
from jssl import sharding
from jssl.evaluators import label_sets, program
from tests import recipes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=2, width=8)
  c.vicreg.expander_hidden, c.vicreg.expander_dim, c.vicreg.expander_layers = 32, 16, 2
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 1, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.log_every_steps = c.checkpoint_every_steps = 1
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("vicreg_run")), c)


def test_analysis_recipe_per_layer_and_label_set(run_dir, tmp_path):
  config = recipes.shrink_eval(recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "analysis.py"), run_dir))
  config.cache_dir = str(tmp_path / "cache")
  config.analysis.layers = "block_1,block_2,pre_logits"
  rows = program.run(config, str(tmp_path / "out"), mesh=sharding.make_mesh(1))
  got = {(r["protocol"]["layer"], r["protocol"]["labels"], r["metric"]): r["value"] for r in rows}
  for layer in ("block_1", "block_2", "pre_logits"):
    for labels in ("classes", "superclasses"):
      for metric in ("ncc_train", "ncc_test", "linear_test", "ncc_linear_ratio"):
        assert 0.0 <= got[layer, labels, metric] <= 1.0 or metric == "ncc_linear_ratio"
      assert got[layer, labels, "cdnv"] > 0 and got[layer, labels, "class_distance"] > 0
      ratio = got[layer, labels, "ncc_test"] / got[layer, labels, "linear_test"]
      assert got[layer, labels, "ncc_linear_ratio"] == pytest.approx(ratio)
  assert {r["protocol"]["classes"] for r in rows} == {10, 4}
  assert "| analysis |" in (tmp_path / "out" / "results.md").read_text()


def test_fashion_mnist_superclasses():
  data = {"source": "fashion_mnist", "name": None}
  coarse, n = label_sets.relabel(np.arange(10), 10, "superclasses", data)
  assert n == 4
  groups = {g: [label_sets.FASHION_MNIST_CLASSES[i] for i in np.flatnonzero(coarse == g)] for g in range(n)}
  assert groups == {0: ["T-shirt/top", "Pullover", "Coat", "Shirt"], 1: ["Trouser", "Dress"],
                    2: ["Sandal", "Sneaker", "Ankle boot"], 3: ["Bag"]}
  same, n = label_sets.relabel(np.arange(10), 10, "classes", {"source": "tfds", "name": "cifar10"})
  assert n == 10 and np.array_equal(same, np.arange(10))
  with pytest.raises(ValueError, match="Fashion-MNIST only"):
    label_sets.relabel(np.arange(10), 10, "superclasses", {"source": "tfds", "name": "cifar10"})
  with pytest.raises(ValueError, match="must be one of"):
    label_sets.relabel(np.arange(10), 10, "coarse", data)
