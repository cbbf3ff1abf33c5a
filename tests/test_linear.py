"""Linear probe: selection sees only train, the split is stratified, the probe learns."""
import numpy as np
import pytest

from jssl.evaluators import linear

CFG = dict(lrs=(1e-2, 1e-1), wds=(0.0, 1e-2), epochs=3, batch_size=64)


def _blobs(n, seed=0, d=8, classes=3):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n).astype(np.int32)
  centres = np.random.default_rng(99).normal(size=(classes, d)) * 3
  return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_split_is_stratified_and_disjoint():
  y = np.repeat(np.arange(4), [100, 50, 30, 20])
  tr, va = linear.split_train_val(y, 0.1, seed=3)
  assert not set(tr) & set(va) and len(tr) + len(va) == len(y)
  np.testing.assert_array_equal(np.bincount(y[va]), [10, 5, 3, 2])


def test_selection_never_touches_test_data():
  x, y = _blobs(400)
  tx, ty = _blobs(100, seed=1)
  honest = linear.probe(x, y, tx, ty, num_classes=3, cfg=CFG)
  # Test features that are all NaN and permuted test labels: if selection read either, the
  # chosen hyperparameters or validation accuracies would change (NaN logits predict class 0).
  poisoned = linear.probe(x, y, np.full_like(tx, np.nan), np.random.default_rng(0).permutation(ty),
                          num_classes=3, cfg=CFG)
  assert poisoned["best"] == honest["best"]
  assert [g["val_acc"] for g in poisoned["grid"]] == [g["val_acc"] for g in honest["grid"]]
  assert honest["test_acc"] > 0.9


def test_layer_selection_uses_validation_only():
  x, y = _blobs(400)
  tx, ty = _blobs(100, seed=1)
  noise = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
  # "noise" is useless on validation; its test features are the good ones, which must not matter.
  layers = {"good": (x, y, tx, ty), "noise": (noise, y, tx, ty)}
  result = linear.probe_layers(layers, num_classes=3, cfg=CFG)
  assert result["layer"] == "good"
  assert result["val_acc_by_layer"]["good"] > result["val_acc_by_layer"]["noise"]


@pytest.mark.parametrize("backend", ["sgd", "sklearn_logreg"])
def test_other_backends(backend):
  x, y = _blobs(300)
  tx, ty = _blobs(100, seed=1)
  result = linear.probe(x, y, tx, ty, num_classes=3, cfg=dict(CFG, backend=backend, cs=(0.1, 1.0)))
  assert result["test_acc"] > 0.9
