"""Patch masks: shapes, ratios, block geometry, per-example randomness and determinism."""
import jax
import numpy as np
import pytest

from jssl.data import masking

GRID = (7, 7)
N = 49


@pytest.mark.parametrize("fn", [masking.blockwise_mask, masking.random_mask])
def test_shape_dtype_determinism_and_per_example_randomness(fn):
  key = jax.random.key(0)
  m = jax.jit(lambda k: fn(k, 16, GRID, 0.4))(key)
  assert m.shape == (16, N) and m.dtype == np.bool_
  np.testing.assert_array_equal(m, fn(key, 16, GRID, 0.4))
  assert len({np.asarray(row).tobytes() for row in m}) > 8   # images differ
  assert not np.array_equal(m, fn(jax.random.key(1), 16, GRID, 0.4))


def test_random_mask_exact_count_and_ratio_range():
  m = np.asarray(masking.random_mask(jax.random.key(2), 64, GRID, 0.3))
  np.testing.assert_array_equal(m.sum(1), round(0.3 * N))
  m = np.asarray(masking.random_mask(jax.random.key(3), 64, GRID, (0.1, 0.5)))
  counts = m.sum(1)
  assert counts.min() >= round(0.1 * N) and counts.max() <= round(0.5 * N) and len(set(counts)) > 3


def test_blockwise_ratio_within_tolerance():
  for ratio in (0.1, 0.3, 0.5):
    target = round(ratio * 196)
    counts = np.asarray(masking.blockwise_mask(jax.random.key(4), 64, (14, 14), ratio)).sum(1)
    assert counts.max() <= target            # never overshoots
    assert counts.min() >= target - 4        # the default attempts get (almost) there
    assert abs(counts.mean() - target) <= 1.0


def test_single_block_is_a_contiguous_rectangle():
  # One attempt places at most one block; with min_block = target it covers the whole target area.
  m = np.asarray(masking.blockwise_mask(jax.random.key(5), 64, (14, 14), 0.2, min_block=39, max_attempts=1))
  m = m.reshape(64, 14, 14)
  placed = 0
  for img in m:
    if not img.any():
      continue
    placed += 1
    rows, cols = np.nonzero(img)
    box = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all(), "masked patches must fill their bounding box"
    assert img.sum() <= round(0.2 * 196)
  assert placed > 10


def test_mask_prob_leaves_images_unmasked():
  for fn in (masking.blockwise_mask, masking.random_mask):
    counts = np.asarray(fn(jax.random.key(6), 200, GRID, (0.1, 0.5), mask_prob=0.5)).sum(1)
    assert 60 < np.sum(counts == 0) < 140
    assert np.all(counts[counts > 0] >= round(0.1 * N) - 4)


def test_bad_ratio_is_rejected():
  with pytest.raises(ValueError, match="mask ratio"):
    masking.random_mask(jax.random.key(0), 2, GRID, (0.5, 0.1))
