"""Tests for jssl.evaluators.knn: exact top-k, DINO vote, device invariance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from jssl.evaluators import knn


@pytest.fixture(scope="module")
def mesh():
  return jax.make_mesh((8,), ("data",))


def _random(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _brute_topk(queries, bank, k, metric):
  """Reference: full [Q, N] scores in float64, stable argsort of each row."""
  q, b = queries.astype(np.float64), bank.astype(np.float64)
  if metric == "cosine":
    scores = q @ b.T
  else:
    scores = -((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
  idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(scores, idx, axis=1), idx


def _dino_knn(train, train_labels, test, k, temperature, num_classes):
  """DINO eval_knn.py's vote in numpy: one-hot neighbours times exp(sim / T)."""
  normalize = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  sim = normalize(test.astype(np.float64)) @ normalize(
      train.astype(np.float64)).T
  idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
  one_hot = np.eye(num_classes)[train_labels[idx]]  # [M, k, C]
  weights = np.exp(np.take_along_axis(sim, idx, axis=1) / temperature)
  return np.argmax((one_hot * weights[:, :, None]).sum(1), axis=1)


# (N, Q, k, block_size): N never a multiple of block or of 8 devices; k below,
# equal to and above the block; k == N; a bank smaller than one default block.
_TOPK_CASES = [(1001, 37, 50, 16), (300, 20, 7, 64), (45, 9, 45, 4096)]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("n,q,k,block_size", _TOPK_CASES)
def test_topk_matches_brute_force(n, q, k, block_size, metric, mesh):
  bank, queries = _random(n, n, 16), _random(q, q, 16)
  ref_scores, ref_idx = _brute_topk(queries, bank, k, metric)
  for m in (None, mesh):
    scores, idx = knn.topk_blockwise(
        queries, bank, k, block_size=block_size, query_chunk=16,
        metric=metric, mesh=m)
    assert scores.dtype == jnp.float32 and idx.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)
    np.testing.assert_allclose(np.asarray(scores), ref_scores,
                               rtol=1e-5, atol=1e-4)


def test_topk_sharded_equals_unsharded_exactly(mesh):
  bank, queries = _random(0, 1001, 24), _random(1, 50, 24)
  for metric in ("cosine", "euclidean"):
    single = knn.topk_blockwise(queries, bank, 30, block_size=32,
                                metric=metric)
    sharded = knn.topk_blockwise(queries, bank, 30, block_size=32,
                                 metric=metric, mesh=mesh)
    for a, b in zip(single, sharded):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_topk_ties_go_to_smaller_index(mesh):
  # Every bank row repeated three times: each neighbour comes with exact ties.
  bank = np.repeat(_random(2, 40, 8), 3, axis=0)
  queries = _random(3, 5, 8)
  _, ref_idx = _brute_topk(queries, bank, 12, "cosine")
  for m in (None, mesh):
    _, idx = knn.topk_blockwise(queries, bank, 12, block_size=8, mesh=m)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)


def test_topk_bfloat16_bank_scored_in_float32():
  bank = jnp.asarray(_random(4, 200, 16), jnp.bfloat16)
  queries = jnp.asarray(_random(5, 10, 16), jnp.bfloat16)
  ref_scores, ref_idx = _brute_topk(
      np.asarray(queries, np.float32), np.asarray(bank, np.float32), 10,
      "cosine")
  scores, idx = knn.topk_blockwise(queries, bank, 10, block_size=32)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5)


def _labelled_data(seed, n, m, d, num_classes, spread):
  """Gaussian class clusters, close enough together that votes disagree."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_classes, d)) * spread
  y_train = np.arange(n) % num_classes
  y_test = rng.integers(0, num_classes, m)
  x_train = centers[y_train] + rng.normal(size=(n, d))
  x_test = centers[y_test] + rng.normal(size=(m, d))
  return (x_train.astype(np.float32), y_train, x_test.astype(np.float32),
          y_test)


@pytest.mark.parametrize("ks,temperature", [((10, 20, 100, 200), 0.07),
                                            ((200,), 0.1)])
def test_cosine_vote_matches_dino_reference(ks, temperature, mesh):
  x_train, y_train, x_test, _ = _labelled_data(0, 603, 150, 32, 10, 0.3)
  for m in (None, mesh):
    preds = knn.knn_classify(
        x_train, y_train, x_test, num_classes=10, ks=ks,
        temperature=temperature, block_size=64, query_chunk=64, mesh=m)
    assert sorted(preds) == sorted(ks)
    for k in ks:
      ref = _dino_knn(x_train, y_train, x_test, k, temperature, 10)
      np.testing.assert_array_equal(preds[k], ref, err_msg=f"k={k}")


def test_euclidean_vote_matches_sklearn(mesh):
  x_train, y_train, x_test, _ = _labelled_data(1, 500, 200, 8, 5, 0.5)
  ks = (1, 7, 25)
  for m in (None, mesh):
    preds = knn.knn_classify(
        x_train, y_train, x_test, num_classes=5, ks=ks,
        protocol="euclidean", block_size=32, query_chunk=64, mesh=m)
    for k in ks:
      clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
      ref = clf.fit(x_train, y_train).predict(x_test)
      # Compare only where the vote has a unique winner, so the check does
      # not rest on the two tie-breaking rules agreeing.
      _, idx = _brute_topk(x_test, x_train, k, "euclidean")
      counts = np.stack([(y_train[idx] == c).sum(1) for c in range(5)], 1)
      no_tie = (counts == counts.max(1, keepdims=True)).sum(1) == 1
      assert no_tie.mean() > 0.8
      np.testing.assert_array_equal(preds[k][no_tie], ref[no_tie])


def test_classify_sharded_equals_unsharded(mesh):
  x_train, y_train, x_test, _ = _labelled_data(2, 777, 100, 16, 7, 0.3)
  for protocol in ("cosine", "euclidean"):
    kwargs = dict(num_classes=7, ks=(10, 20), protocol=protocol,
                  block_size=32, query_chunk=48)
    single = knn.knn_classify(x_train, y_train, x_test, **kwargs)
    sharded = knn.knn_classify(x_train, y_train, x_test, mesh=mesh, **kwargs)
    for k in (10, 20):
      np.testing.assert_array_equal(single[k], sharded[k])


def test_separated_clusters_give_perfect_accuracy(mesh):
  x_train, y_train, x_test, y_test = _labelled_data(3, 400, 100, 16, 4, 20.0)
  cosine = knn.knn_accuracy(
      x_train, y_train, x_test, y_test, num_classes=4, ks=(20, 200),
      mesh=mesh)
  lightly = knn.knn_accuracy(
      x_train, y_train, x_test, y_test, num_classes=4, ks=(200,),
      temperature=0.1)
  euclidean = knn.knn_accuracy(
      x_train, y_train, x_test, y_test, num_classes=4, ks=(20,),
      protocol="euclidean", mesh=mesh)
  assert cosine == {"knn_k20_t0.07_cosine": 1.0, "knn_k200_t0.07_cosine": 1.0}
  assert lightly == {"knn_k200_t0.1_cosine": 1.0}
  assert euclidean == {"knn_k20_euclidean": 1.0}


@pytest.mark.parametrize("call,match", [
    (lambda: knn.topk_blockwise(np.zeros((3, 4)), np.zeros((10, 5)), 2),
     "same feature size"),
    (lambda: knn.topk_blockwise(np.zeros((3, 4)), np.zeros((10, 4)), 11),
     "k must be between 1 and the bank size"),
    (lambda: knn.topk_blockwise(np.zeros((3, 4)), np.zeros((10, 4)), 2,
                                metric="l1"),
     "metric must be one of"),
    (lambda: knn.knn_classify(np.zeros((10, 4)), np.arange(10),
                              np.zeros((3, 4)), num_classes=5, ks=(5,)),
     r"train_labels must lie in \[0, num_classes=5\)"),
    (lambda: knn.knn_classify(np.zeros((10, 4)), np.zeros(9, int),
                              np.zeros((3, 4)), num_classes=5, ks=(5,)),
     r"train_labels must have shape \(10,\)"),
    (lambda: knn.knn_classify(np.zeros((10, 4)), np.zeros(10, int),
                              np.zeros((3, 4)), num_classes=5, ks=(5, 20)),
     "k must be between 1 and the bank size N=10, got 20"),
    (lambda: knn.knn_accuracy(np.zeros((10, 4)), np.zeros(10, int),
                              np.zeros((3, 4)), np.full(3, 7), num_classes=5,
                              ks=(5,)),
     "test_labels must lie in"),
])
def test_bad_input_raises_one_clear_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()
