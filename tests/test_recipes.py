"""Every recipe in configs/ takes real train steps, and every recipe in configs/eval/ evaluates a run.

Shrunk by tests/recipes.py (sizes only); the step is the trainer's jitted step.
"""
import os

import jax
import numpy as np
import pytest

from jssl import sharding
from jssl.evaluators import program
from tests import recipes
from tests.helpers import tiny_config


@pytest.mark.parametrize("path", recipes.TRAIN_CONFIGS, ids=os.path.basename)
def test_recipe_trains(path):
  config = recipes.shrink(recipes.load(path))
  recipe = recipes.load(path)
  for key in ("method", "model.name", "model.variant", "model.dtype", "aug.num_local", "optim.name"):
    a, b = config, recipe
    for part in key.split("."):
      a, b = a.get(part), b.get(part)
    assert a == b, key     # the helper changes sizes only
  first, last, history = recipes.train_steps(config)
  for metrics in history:
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics)), metrics
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(first["params"]), jax.tree.leaves(last["params"]))]
  assert any(moved)
  assert int(last["step"]) == 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  config = tiny_config("byol")
  config.total_steps = 1
  config.eval.train_examples, config.eval.test_examples = 64, 32
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("recipe_run")), config)


# configs/eval/treenet.py reads a TreeNet's leaves; tests/test_treenet_eval.py runs it on a TreeNet run.
_NEEDS_TREENET = pytest.mark.skip(reason="needs a TreeNet run: tests/test_treenet_eval.py runs this recipe")


@pytest.mark.parametrize("path", [pytest.param(p, marks=_NEEDS_TREENET) if os.path.basename(p) == "treenet.py" else p
                                  for p in recipes.EVAL_CONFIGS], ids=os.path.basename)
def test_eval_recipe_runs(path, run_dir, tmp_path):
  config = recipes.shrink_eval(recipes.load(path, run_dir))
  config.cache_dir = str(tmp_path / "cache")
  rows = program.run(config, str(tmp_path / "out"), mesh=sharding.make_mesh(1))
  evals = {r["evaluation"] for r in rows}
  assert evals == set(config.evals.split(","))
  accuracies = [r for r in rows if r["evaluation"] != "analysis"]   # analysis also reports variances, distances
  assert all(0.0 <= r["value"] <= 1.0 for r in accuracies)


def test_imagenet_recipes_are_one_published_preset_each():
  byol = recipes.load(os.path.join(recipes.ROOT, "configs", "byol_resnet50_imagenet.py"))
  assert (byol.num_epochs, byol.optim.lr, byol.optim.weight_decay, byol.ema.base) == (300, 0.3, 1e-6, 0.99)
  dino = recipes.load(os.path.join(recipes.ROOT, "configs", "dino_vits16_imagenet.py"))
  assert (dino.num_epochs, dino.batch_size, dino.aug.num_local, dino.dino.teacher_temp) == (100, 512, 8, 0.04)
  for name, number in (("byol_resnet50_imagenet.py", "72.5% linear"), ("dino_vits16_imagenet.py", "69.3% k-NN")):
    with open(os.path.join(recipes.ROOT, "configs", name)) as f:
      assert number in f.read()
