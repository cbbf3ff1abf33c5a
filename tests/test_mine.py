"""MINE recovers the known mutual information of correlated Gaussians, and runs from the analysis evaluation."""
import numpy as np
import pytest

from jssl.evaluators import analysis_eval, eval_config, feature_cache, mine


def _gaussians(n: int, d: int, rho: float, seed: int = 0):
  """x ~ N(0, I_d), z = rho x + sqrt(1 - rho^2) e: I(X; Z) = -d/2 log(1 - rho^2) nats."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d))
  return x, rho * x + np.sqrt(1.0 - rho ** 2) * rng.standard_normal((n, d))


def test_recovers_correlated_gaussian_mi():
  d, rho = 2, 0.8
  truth = -d / 2 * np.log(1.0 - rho ** 2)   # 1.02 nats
  x, z = _gaussians(4000, d, rho)
  got = mine.estimate(x, z, seeds=5, steps=1000, hidden=64)
  assert len(got["per_seed"]) == 5 and got["history"].shape == (5, 1000)
  assert got["mi"] == pytest.approx(truth, abs=0.1)   # measured: 1.00
  x, z = _gaussians(4000, d, 0.0, seed=1)          # independent: same shapes, no recompilation
  assert abs(mine.estimate(x, z, seeds=5, steps=1000, hidden=64)["mi"]) < 0.03


def test_prepare_projects_and_standardises():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (50, 4, 4, 1)).astype(np.float32)
  out = mine.prepare(images, pca_dim=3)
  assert out.shape == (50, 3)
  np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="same number"):
    mine.estimate(images, images[:10])


def test_analysis_evaluation_reports_mine_per_layer():
  """The evaluation's wiring: the "pixels" features are X, each layer's features Z (here the Gaussian pair)."""
  x, z = _gaussians(4000, 2, 0.8)
  labels = np.arange(4000, dtype=np.int32) % 10
  asked = []

  def features(path, network, layer, which, data=None, max_n=None):
    asked.append((network, layer, which, max_n))
    feats = x if network == "pixels" else z
    return feature_cache.FeatureSet(feats.astype(np.float32), labels, 10, {"data": {"source": "fashion_mnist"}})

  config = eval_config.base("run", evals="analysis")
  config.analysis.update(layers="block_1,block_2", mine=True, mine_examples=4000, mine_steps=1000, mine_pca_dim=0,
                         mine_hidden=64)   # the critic of the test above: no recompilation
  rows = analysis_eval.rows(config, "run", "student", "pre_logits", features, {"checkpoint": "run"})
  got = {r["protocol"]["layer"]: r for r in rows if r["metric"] == "mine_ixz"}
  assert sorted(got) == ["block_1", "block_2"]
  for row in got.values():
    assert row["value"] == pytest.approx(-np.log(1 - 0.8 ** 2), abs=0.1)
    assert row["protocol"]["seeds"] == 5 and row["protocol"]["examples"] == 4000
  assert ("pixels", "block_1", "train", 4000) in asked
