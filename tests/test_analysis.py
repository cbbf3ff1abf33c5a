"""Clustering metrics (jssl/evaluators/analysis.py) against brute-force numpy, blockwise included, and hand cases."""
import numpy as np
import pytest

from jssl.evaluators import analysis


def _brute(train_x, train_y, test_x, test_y, num_classes):
  """Each metric straight from its definition, in float64, one class (pair) at a time."""
  classes = [c for c in range(num_classes) if np.any(train_y == c)]
  mu = {c: train_x[train_y == c].astype(np.float64).mean(axis=0) for c in classes}
  var = {c: np.mean([np.sum((x - mu[c]) ** 2) for x in train_x[train_y == c].astype(np.float64)])
         for c in classes}
  pairs = [(i, j) for i in classes for j in classes if i != j]
  dist = {(i, j): np.sum((mu[i] - mu[j]) ** 2) for i, j in pairs}
  centres = np.stack([mu[c] for c in classes])

  def ncc(x, y):
    d = np.linalg.norm(x[:, None, :].astype(np.float64) - centres[None], axis=-1)
    return np.mean(np.array(classes)[np.argmin(d, axis=1)] == y)

  return {"ncc_train": ncc(train_x, train_y), "ncc_test": ncc(test_x, test_y),
          "cdnv": np.mean([(var[i] + var[j]) / (2 * dist[i, j]) for i, j in pairs]),
          "class_variance": np.mean([var[c] for c in classes]),
          "class_distance": np.mean([dist[p] for p in pairs])}


def _data(seed=0, n=53, d=6, num_classes=5, spread=1.0, skip=None):
  centres = 2.0 * np.random.default_rng(100).normal(size=(num_classes, d))   # shared by train and test
  rng = np.random.default_rng(seed)
  y = rng.integers(0, num_classes, size=n)
  if skip is not None:
    y[y == skip] = (skip + 1) % num_classes
  x = centres[y] + spread * rng.normal(size=(n, d))
  return x.astype(np.float32), y, centres


@pytest.mark.parametrize("block_size", [4096, 7, 1])
def test_matches_brute_force(block_size):
  train_x, train_y, _ = _data(0, spread=2.5)
  test_x, test_y, _ = _data(1, n=31, spread=2.5)
  got = analysis.analyse(train_x, train_y, test_x, test_y, num_classes=5, block_size=block_size)
  want = _brute(train_x, train_y, test_x, test_y, 5)
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  assert 0.2 < got["ncc_test"] < 1.0   # not a degenerate case


def test_absent_class_and_offset_features():
  # Class 2 has no train examples: no centre, left out of the averages; a large common
  # offset must not change anything (distances are shift-invariant).
  train_x, train_y, _ = _data(2, n=40, skip=2)
  test_x, test_y, _ = _data(3, n=25)
  want = _brute(train_x, train_y, test_x, test_y, 5)
  got = analysis.analyse(train_x + 1000.0, train_y, test_x + 1000.0, test_y, num_classes=6, block_size=8)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=2e-3, err_msg=key)
  stats = analysis.class_stats(train_x, train_y, 6)
  np.testing.assert_array_equal(stats.present, [True, True, False, True, True, False])


def test_perfect_clusters():
  x, y, centres = _data(4, spread=0.0)
  got = analysis.analyse(x, y, x, y, num_classes=5, block_size=16)
  assert got["ncc_train"] == 1.0 and got["ncc_test"] == 1.0
  assert got["cdnv"] == pytest.approx(0.0, abs=1e-10)
  assert got["class_variance"] == pytest.approx(0.0, abs=1e-10)


def test_cdnv_grows_with_spread():
  values = [analysis.analyse(*_data(5, n=200, spread=s)[:2], num_classes=5)["cdnv"] for s in (0.1, 0.5, 1.0, 2.0)]
  assert all(a < b for a, b in zip(values, values[1:])), values


def test_hand_values():
  # Class 0: (+-1, 0), variance 1, mean (0, 0); class 1: (3, 4 +- 2), variance 4, mean (3, 4).
  x = np.array([[1, 0], [-1, 0], [3, 6], [3, 2]], np.float32)
  y = np.array([0, 0, 1, 1])
  stats = analysis.class_stats(x, y, 2)
  np.testing.assert_allclose(stats.variances, [1.0, 4.0])
  np.testing.assert_allclose(analysis.class_distance(stats), 25.0)
  np.testing.assert_allclose(analysis.cdnv(stats), 5.0 / 50.0)
  np.testing.assert_allclose(analysis.class_variance(stats), 2.5)
  np.testing.assert_array_equal(analysis.ncc_predict(np.array([[0, 1], [3, 3.5]], np.float32), stats), [0, 1])
  assert analysis.ncc_linear_ratio(0.6, 0.8) == pytest.approx(0.75)
  assert np.isnan(analysis.ncc_linear_ratio(0.5, 0.0))


def test_errors():
  with pytest.raises(ValueError, match="labels must lie"):
    analysis.class_stats(np.zeros((3, 2)), np.array([0, 1, 3]), 3)
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    analysis.class_stats(np.zeros((3,)), np.array([0, 1, 2]), 3)
