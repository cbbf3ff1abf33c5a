"""Clustering metrics of a representation under a labelling (paper 004, section 2.2; Galanti et al.).

For features f(x) [N, D] and labels y [N] with classes S_1 .. S_C:

* class means mu_c and variances Var_c = mean_{x in S_c} ||f(x) - mu_c||^2, the mean and
  variance of the uniform distribution over the class (the trace of its covariance,
  normalised by |S_c|);
* CDNV = Avg_{i != j} (Var_i + Var_j) / (2 ||mu_i - mu_j||^2), averaged over class pairs;
* the average per-class variance, Avg_c Var_c, and the average squared distance between
  class means, Avg_{i != j} ||mu_i - mu_j||^2;
* NCC accuracy: the nearest-class-centre classifier argmin_c ||f(x) - mu_c|| with the
  centres of the train split, scored on the train and on the test split;
* `ncc_linear_ratio`: NCC test accuracy over a linear probe's test accuracy.

Only classes that occur in the train split have a centre and enter the averages; a test
example of another class counts as misclassified. A pair of classes with equal means
makes the CDNV infinite (or NaN when both variances are zero too).

The data is read in blocks of `block_size` rows, each a jitted step on the default
device: per-class sums (segment sums, no one-hot matrix), squared distances to the own
class mean, and [block, C] distances to the centres for NCC. Nothing [N, N] or [N, C] is
ever formed, so 60,000 x 4,096 features need O(block_size x D) accelerator memory. Sums
over blocks are accumulated in float64 on the host, and class-level quantities ([C, D]
means, [C, C] mean distances) are computed there in float64.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

_PRECISION = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class ClassStats:
  """Per-class statistics of one split: counts [C], means [C, D] and variances [C] (float64).

  Classes with no examples have count 0 and NaN mean and variance.
  """
  counts: np.ndarray
  means: np.ndarray
  variances: np.ndarray

  @property
  def present(self) -> np.ndarray:
    return self.counts > 0


def _blocks(n: int, block_size: int):
  for start in range(0, n, block_size):
    yield start, min(start + block_size, n)


def _padded(x: np.ndarray, rows: int, fill) -> np.ndarray:
  """x with rows appended (filled with `fill`) up to `rows`, so every block has one shape."""
  if len(x) == rows:
    return x
  pad = np.full((rows - len(x),) + x.shape[1:], fill, dtype=x.dtype)
  return np.concatenate([x, pad])


@functools.partial(jax.jit, static_argnames="num_segments")
def _block_sums(x, y, *, num_segments):
  x = x.astype(jnp.float32)
  return jax.ops.segment_sum(x, y, num_segments), jax.ops.segment_sum(jnp.ones_like(y), y, num_segments)


@functools.partial(jax.jit, static_argnames="num_segments")
def _block_sq_dist(x, y, means, *, num_segments):
  diff = x.astype(jnp.float32) - means[y]
  return jax.ops.segment_sum(jnp.sum(diff * diff, axis=-1), y, num_segments)


@jax.jit
def _block_nearest(x, centres, centre_sq, valid):
  """Index of the nearest valid centre for each row: argmin ||c||^2 - 2 x.c (||x||^2 is common)."""
  scores = centre_sq[None, :] - 2.0 * jnp.matmul(x.astype(jnp.float32), centres.T, precision=_PRECISION)
  return jnp.argmin(jnp.where(valid[None, :], scores, jnp.inf), axis=-1)


def _check(feats, labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  feats, labels = np.asarray(feats), np.asarray(labels)
  if feats.ndim != 2 or labels.shape != (len(feats),):
    raise ValueError(f"features must be [N, D] with labels [N]; got {feats.shape} and {labels.shape}.")
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes}); got {labels.min()} .. {labels.max()}.")
  return feats, labels.astype(np.int32)


def class_stats(feats, labels, num_classes: int, *, block_size: int = 4096) -> ClassStats:
  """Counts, means and variances of every class, in two blockwise passes over the data."""
  feats, labels = _check(feats, labels, num_classes)
  n, d = feats.shape
  rows = min(block_size, max(n, 1))
  pad_label = num_classes   # padded rows go to an extra segment that is dropped
  sums, counts = np.zeros((num_classes + 1, d)), np.zeros(num_classes + 1)
  for lo, hi in _blocks(n, rows):
    s, c = _block_sums(_padded(feats[lo:hi], rows, 0), _padded(labels[lo:hi], rows, pad_label),
                       num_segments=num_classes + 1)
    sums += np.asarray(s, np.float64)
    counts += np.asarray(c, np.float64)
  sums, counts = sums[:num_classes], counts[:num_classes]
  with np.errstate(invalid="ignore", divide="ignore"):
    means = sums / counts[:, None]
  device_means = jnp.asarray(np.nan_to_num(np.concatenate([means, np.zeros((1, d))])), jnp.float32)
  sq = np.zeros(num_classes + 1)
  for lo, hi in _blocks(n, rows):
    sq += np.asarray(_block_sq_dist(_padded(feats[lo:hi], rows, 0), _padded(labels[lo:hi], rows, pad_label),
                                    device_means, num_segments=num_classes + 1), np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    variances = sq[:num_classes] / counts
  return ClassStats(counts=counts.astype(np.int64), means=means, variances=variances)


def mean_distances(stats: ClassStats) -> np.ndarray:
  """[C', C'] squared distances between the means of the present classes (float64)."""
  mu = stats.means[stats.present]
  mu = mu - mu.mean(axis=0)   # centring keeps the Gram expansion accurate for far-off clusters
  sq = np.sum(mu * mu, axis=1)
  dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (mu @ mu.T), 0.0)
  np.fill_diagonal(dist, 0.0)
  return dist


def _off_diagonal_mean(m: np.ndarray) -> float:
  c = len(m)
  if c < 2:
    return float("nan")
  return float(m[~np.eye(c, dtype=bool)].mean())


def cdnv(stats: ClassStats) -> float:
  """Avg_{i != j} (Var_i + Var_j) / (2 ||mu_i - mu_j||^2) over the present classes."""
  var = stats.variances[stats.present]
  with np.errstate(invalid="ignore", divide="ignore"):
    ratio = (var[:, None] + var[None, :]) / (2.0 * mean_distances(stats))
  return _off_diagonal_mean(ratio)


def class_variance(stats: ClassStats) -> float:
  """Average per-class variance Avg_c Var_c over the present classes."""
  return float(stats.variances[stats.present].mean())


def class_distance(stats: ClassStats) -> float:
  """Average squared distance between the means of two different present classes."""
  return _off_diagonal_mean(mean_distances(stats))


def ncc_predict(feats, stats: ClassStats, *, block_size: int = 4096) -> np.ndarray:
  """Nearest-class-centre predictions [N] against the centres in `stats` (ties: the lower class)."""
  feats = np.asarray(feats)
  if feats.ndim != 2 or feats.shape[1] != stats.means.shape[1]:
    raise ValueError(f"features must be [N, {stats.means.shape[1]}]; got {feats.shape}.")
  present = stats.present
  if not present.any():
    raise ValueError("NCC needs at least one class with train examples.")
  origin = stats.means[present].mean(axis=0)   # distances are shift-invariant; centring aids precision
  centres = np.nan_to_num(stats.means - origin)
  shift = jnp.asarray(origin, jnp.float32)
  args = (jnp.asarray(centres, jnp.float32), jnp.asarray(np.sum(centres * centres, axis=1), jnp.float32),
          jnp.asarray(present))
  n = len(feats)
  rows = min(block_size, max(n, 1))
  preds = np.zeros(n, np.int64)
  for lo, hi in _blocks(n, rows):
    x = jnp.asarray(_padded(feats[lo:hi], rows, 0), jnp.float32) - shift
    preds[lo:hi] = np.asarray(_block_nearest(x, *args))[:hi - lo]
  return preds


def ncc_accuracy(feats, labels, stats: ClassStats, *, block_size: int = 4096) -> float:
  """Accuracy of the NCC classifier with centres `stats` (usually the train split's)."""
  feats, labels = _check(feats, labels, len(stats.counts))
  return float(np.mean(ncc_predict(feats, stats, block_size=block_size) == labels))


def ncc_linear_ratio(ncc_acc: float, linear_acc: float) -> float:
  """NCC accuracy over linear-probe accuracy on the same split (NaN when the probe scores 0)."""
  return float(ncc_acc / linear_acc) if linear_acc > 0 else float("nan")


def analyse(train_feats, train_labels, test_feats=None, test_labels=None, *, num_classes: int,
            block_size: int = 4096) -> dict[str, float]:
  """Every metric of one representation under one labelling.

  Returns:
    {"ncc_train", "ncc_test" (with a test split), "cdnv", "class_variance",
     "class_distance"}; the last three are computed on the train split.
  """
  stats = class_stats(train_feats, train_labels, num_classes, block_size=block_size)
  out = {"ncc_train": ncc_accuracy(train_feats, train_labels, stats, block_size=block_size)}
  if test_feats is not None:
    out["ncc_test"] = ncc_accuracy(test_feats, test_labels, stats, block_size=block_size)
  out.update(cdnv=cdnv(stats), class_variance=class_variance(stats), class_distance=class_distance(stats))
  return out
