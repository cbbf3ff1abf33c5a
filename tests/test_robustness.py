"""ImageNet-C corruptions, internal masking, PGD and the "robustness" evaluation (paper 003) on real data."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import config as cfg
from jssl import sharding
from jssl.data import corruptions, sources
from jssl.evaluators import linear, program, robustness
from tests import recipes

# Corruptions that draw random numbers; defocus and zoom blur are deterministic filters.
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur")
BATCH = 100   # test images of the evaluation below


@pytest.fixture(scope="module")
def fmnist():
  """100 Fashion-MNIST test images in [0, 1], [100, 28, 28, 1], and their labels."""
  images, labels = sources.load_arrays(cfg.base("byol").data, "test", BATCH)
  return jnp.asarray(images, jnp.float32) / 255.0, labels


def _keys(seed, n=BATCH):
  return corruptions.example_keys(jax.random.PRNGKey(seed), jnp.arange(n))


def test_corruptions_seeded_in_range_and_monotone_in_severity(fmnist):
  x = fmnist[0][:16]
  for name in corruptions.NAMES:
    change = []
    for severity in corruptions.SEVERITIES:
      y = corruptions.corrupt(name, x, _keys(0, 16), severity)
      assert y.shape == x.shape and y.dtype == jnp.float32
      assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
      change.append(float(jnp.mean(jnp.abs(y - x))))
    assert change[0] > 1e-3 and all(a < b for a, b in zip(change, change[1:])), (name, change)
    again, other = corruptions.corrupt(name, x, _keys(0, 16), 3), corruptions.corrupt(name, x, _keys(1, 16), 3)
    assert np.array_equal(again, corruptions.corrupt(name, x, _keys(0, 16), 3)), name
    assert (not np.array_equal(again, other)) == (name in RANDOM), name


def test_corruption_of_an_image_depends_only_on_its_key(fmnist):
  x = jnp.repeat(fmnist[0][:4], 3, axis=-1) * jnp.asarray([1.0, 0.8, 0.6])   # RGB
  forward = corruptions.corrupt("motion_blur", x, _keys(0, 4), 4)
  backward = corruptions.corrupt("motion_blur", x[::-1], _keys(0, 4)[::-1], 4)   # other batch positions
  assert forward.shape == (4, 28, 28, 3) and np.allclose(forward, backward[::-1], atol=1e-6)
  assert not np.allclose(forward[0], corruptions.corrupt("motion_blur", x, _keys(0, 4)[::-1], 4)[0])
  with pytest.raises(ValueError, match="severity must be one of"):
    corruptions.corrupt("gaussian_noise", x, _keys(0, 4), 6)
  with pytest.raises(ValueError, match="is not one of"):
    corruptions.corrupt("fog", x, _keys(0, 4), 1)


def test_blur_lengths_scale_with_the_image_side():
  assert corruptions.describe("defocus_blur", 1, 224) == "radius 3 px, alias sigma 0.1 px"    # ImageNet-C
  assert corruptions.describe("motion_blur", 5, 224) == "radius 20 px, sigma 15 px"
  assert corruptions.describe("defocus_blur", 5, 112) == "radius 5 px, alias sigma 0.25 px"    # half side
  assert corruptions.describe("defocus_blur", 1, 28) == "radius 1 px, alias sigma 0.0333 px"  # >= 1 px
  assert corruptions.describe("glass_blur", 5, 28) == corruptions.describe("glass_blur", 5, 224)
  assert corruptions.describe("gaussian_noise", 2, 28) == "std 0.12"
  assert corruptions.describe("zoom_blur", 5, 28) == "11 zooms 1 .. 1.30"


def test_masked_mean_keeps_the_asked_number_of_positions():
  # Position p of a 4 x 4 map holds 2^p, so a masked sum names the kept positions.
  local = jnp.broadcast_to((2.0 ** jnp.arange(16)).reshape(1, 4, 4, 1), (3, 4, 4, 1))
  keys = _keys(0, 3)
  assert np.array_equal(robustness.masked_mean(local, keys, 0.0), jnp.mean(local, axis=(1, 2)))
  for drop, keep in ((0.5, 8), (0.9, 2), (0.99, 1)):
    sums = np.asarray(robustness.masked_mean(local, keys, drop)[:, 0] * keep).astype(np.int64)
    assert [bin(s).count("1") for s in sums] == [keep] * 3
    assert drop != 0.5 or len(set(sums)) == 3   # each image draws its own positions


def test_pgd_stays_in_its_ball_and_lowers_a_trained_probe():
  from sklearn.datasets import load_digits
  digits = load_digits()
  x = jnp.asarray(digits.images[..., None] / 16.0, jnp.float32)   # [1797, 8, 8, 1] in [0, 1]
  y = jnp.asarray(digits.target, jnp.int32)
  train, test = slice(0, 600), slice(600, 1000)
  probe_cfg = dict(backend="sklearn_logreg")
  w, b = linear.fit(np.asarray(x[train]).reshape(600, -1), np.asarray(y[train]), (1.0, 0.0), num_classes=10,
                    cfg=probe_cfg)
  expect = linear.probe(np.asarray(x[train]).reshape(600, -1), np.asarray(y[train]),
                        np.asarray(x[test]).reshape(-1, 64), np.asarray(y[test]), num_classes=10,
                        cfg=dict(probe_cfg, cs=(1.0,)))["test_acc"]

  def logits(z):
    return z.reshape(z.shape[0], -1) @ w + b

  def acc(z):
    return float(jnp.mean(jnp.argmax(logits(z), -1) == y[test]))

  clean = acc(x[test])
  assert clean == pytest.approx(expect) and clean > 0.85   # fit() is the probe probe() scores
  keys = _keys(0, len(y[test]))
  pgd = jax.jit(robustness.pgd, static_argnums=0, static_argnames=("iterations", "random_start"))
  for eps, div, its in ((0.003, 40, 1), (0.1, 40, 1), (0.1, 10, 5)):
    adv = pgd(logits, x[test], y[test], keys, eps=eps, step=eps / div, iterations=its)
    assert float(jnp.max(jnp.abs(adv - x[test]))) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
  assert acc(adv) < clean - 0.3   # eps 0.1, 5 steps of eps/10
  assert acc(pgd(logits, x[test], y[test], keys, eps=0.1, step=0.01, iterations=5, random_start=False)) < clean - 0.2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A RES-L-H run (7 x 7 "local" map, pre_logits its mean) after one VICReg step."""
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=1, width=8)
  c.vicreg.expander_hidden, c.vicreg.expander_dim, c.vicreg.expander_layers = 32, 16, 2
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 1, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.log_every_steps = c.checkpoint_every_steps = 1
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("robustness_run")), c)


def test_robustness_evaluation_end_to_end(run_dir, tmp_path, fmnist):
  config = recipes.shrink_eval(recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "robustness.py"), run_dir))
  config.cache_dir = str(tmp_path / "cache")
  config.data.max_train_examples, config.data.max_test_examples, config.batch_size = 300, BATCH, BATCH
  config.linear.epochs = 10
  # Every corruption is tested above; here two of them, masking and two attacks go through the program.
  config.robustness.corruptions = "gaussian_noise,defocus_blur"
  config.robustness.mask_drops, config.robustness.mask_draws = "0,0.5,0.9", 2
  config.robustness.attacks = "0.01:10:1,0.1:10:1"
  out = tmp_path / "out"
  rows = program.run(config, str(out), mesh=sharding.make_mesh(1))
  got = {r["metric"]: r for r in rows}
  assert {r["evaluation"] for r in rows} == {"robustness"}
  assert all(0.0 <= r["value"] <= 1.0 for r in rows)
  clean = got["clean"]["value"]
  assert clean > 0.2 and clean == pytest.approx(got["clean"]["protocol"]["clean_from_cached_features"], abs=0.011)
  assert got["mask 0%"]["value"] == clean and got["mask 0%"]["protocol"]["positions"] == "7x7"
  assert got["mask 90%"]["value"] < clean
  for name in ("gaussian_noise", "defocus_blur"):
    per = [got[f"{name} s{s}"]["value"] for s in corruptions.SEVERITIES]
    assert got[name]["value"] == pytest.approx(np.mean(per))
  assert got["gaussian_noise s5"]["value"] < clean
  assert got["pgd eps=0.1 step=eps/10 it=1"]["value"] < clean
  saved = json.loads((out / "results.json").read_text())
  assert [t["title"][:7] for t in saved["tables"]] == ["Table 3", "Table 4", "Accurac"]
  assert saved["tables"][1]["rows"][:2] == [["step", "eps/10", "eps/10"], ["iterations", "1", "1"]]
  md = (out / "results.md").read_text()
  assert "| run | clean | Noise: Gauss. |" in md and "| robustness |" in md
  png = saved["plots"][0]
  assert png.endswith(".png") and os.path.getsize(png) > 10_000 and f"]({os.path.basename(png)})" in md


def test_bad_robustness_fields_fail_before_any_work(tmp_path):
  config = recipes.load(os.path.join(recipes.ROOT, "configs", "eval", "robustness.py"), str(tmp_path / "none"))
  for field, value, message in (("corruptions", "fog", "valid corruptions are"),
                                ("attacks", "0.01/40", "must be eps:divisor:iterations"),
                                ("mask_drops", "1.5", r"fractions in \[0, 1\)"),
                                ("severities", "0", "must be among")):
    bad = config.copy_and_resolve_references()
    bad.robustness[field] = value
    with pytest.raises(ValueError, match=message):
      program.run(bad, str(tmp_path / "out"), mesh=sharding.make_mesh(1))
