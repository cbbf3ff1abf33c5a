"""The sample-level label set "samples" of the analysis evaluation (paper 004, section 4)."""
import os

import jax
import numpy as np
import pytest

from jssl import checkpoint, sharding, train
from jssl import config as cfg
from jssl.data import multicrop
from jssl.evaluators import program, sample_level
from tests import recipes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A tiny VICReg / RES-L-H run saved at step 0 (its training step is never compiled)."""
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=2, width=8)
  c.vicreg.expander_hidden, c.vicreg.expander_dim, c.vicreg.expander_layers = 32, 16, 2
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 1, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.num_devices = 1
  workdir = str(tmp_path_factory.mktemp("vicreg_run"))
  trainer = train.Trainer(c, workdir, verbose=False)
  trainer.build()
  key = jax.random.PRNGKey(c.seed)   # the initial state, compiled without XLA's optimisation passes
  init = jax.jit(trainer._init_fn, out_shardings=trainer.state_shardings).lower(key)
  trainer.state = init.compile({"xla_backend_optimization_level": 0})(key)
  trainer.checkpointer = checkpoint.Checkpointer(workdir, keep=c.keep_checkpoints)
  try:
    trainer.save()
  finally:
    trainer.checkpointer.close()
  return workdir


def _images(n=5, side=16):
  return np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_views_are_seeded_and_test_views_are_new():
  aug = multicrop.aug_config("byol", global_size=12, channels=3)
  images = _images()
  a = sample_level.views(images, seed=3, train_augs=4, test_augs=2, aug=aug)
  b = sample_level.views(images, seed=3, train_augs=4, test_augs=2, aug=aug)
  c = sample_level.views(images, seed=4, train_augs=4, test_augs=2, aug=aug)
  for x, y in zip(a, b):
    assert np.array_equal(x, y)
  assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
  xtr, ytr, xte, yte = a
  assert xtr.shape == (20, 12, 12, 3) and xte.shape == (10, 12, 12, 3) and xtr.dtype == np.float32
  assert np.array_equal(ytr, np.repeat(np.arange(5), 4)) and np.array_equal(yte, np.repeat(np.arange(5), 2))
  for i in range(5):   # every view of an image is its own draw, train and test alike
    own = np.concatenate([xtr[ytr == i], xte[yte == i]]).reshape(6, -1)
    assert len(np.unique(own, axis=0)) == 6
  more = sample_level.views(images, seed=3, train_augs=4, test_augs=3, aug=aug)
  assert np.array_equal(more[0], xtr) and np.array_equal(more[2][more[3] == 0][:2], xte[yte == 0])


def test_choose_and_view_settings():
  first = sample_level.choose(100, 10, seed=0)
  assert np.array_equal(first, sample_level.choose(100, 10, seed=0))
  assert len(set(first.tolist())) == 10 and first.max() < 100
  assert not np.array_equal(first, sample_level.choose(100, 10, seed=1))
  assert np.array_equal(sample_level.choose(100, 20, seed=0)[:10], first)
  with pytest.raises(ValueError, match="larger than the train split 'train'"):
    sample_level.choose(100, 101, seed=0)
  aug = multicrop.aug_config("dino", global_size=32, local_size=16, num_local=6)
  one = sample_level.view_aug(aug)
  assert (one.num_global, one.num_local, one.blur_p, one.solarize_p) == (1, 0, (1.0,), (0.0,))
  assert one.global_scale == aug.global_scale and aug.num_local == 6


def test_samples_rows_through_the_program(run_dir, tmp_path):
  config = recipes.shrink_eval(recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "analysis.py"), run_dir))
  config.cache_dir = str(tmp_path / "cache")
  config.analysis.labels, config.analysis.layers = "samples", "block_1,pre_logits"
  config.analysis.samples.update(images=10, train_augs=10, test_augs=2)
  rows = program.run(config, str(tmp_path / "out"), mesh=sharding.make_mesh(1))
  got = {(r["protocol"]["layer"], r["metric"]): r for r in rows}
  for layer in ("block_1", "pre_logits"):
    for metric in ("ncc_train", "ncc_test", "cdnv", "class_variance", "class_distance", "linear_test",
                   "ncc_linear_ratio"):
      p = got[layer, metric]["protocol"]
      assert p["labels"] == "samples" and p["classes"] == 10 and p["sample_seed"] == 0
      assert p["train"].endswith("10 images x 10 views (100)") and p["test"].endswith("2 other views (20)")
    assert 0.0 <= got[layer, "ncc_test"]["value"] <= 1.0 and got[layer, "cdnv"]["value"] > 0
  again = program.run(config, str(tmp_path / "again"), mesh=sharding.make_mesh(1))   # from the cache
  assert [r["value"] for r in again] == [r["value"] for r in rows]
  config.analysis.samples.images = 201   # shrink_eval analyses 200 train images
  with pytest.raises(ValueError, match="samples.images=201 is larger than the train split"):
    program.run(config, str(tmp_path / "bad"), mesh=sharding.make_mesh(1))
