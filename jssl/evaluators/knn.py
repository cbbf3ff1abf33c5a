"""k-nearest-neighbour classification of frozen features, on devices.

Three protocols share one exact top-k search:

* ``protocol="cosine"`` (DINO's ``eval_knn.py``, the jssl default): features are
  L2-normalised, neighbours are ranked by cosine similarity ``s``, and each of
  the k neighbours votes for its class with weight ``exp(s / T)``, T = 0.07;
  k in (10, 20, 100, 200) with k = 20 as the headline number. The InstDisc /
  Lightly variant is the same code with ``ks=(200,), temperature=0.1``.
* ``protocol="euclidean"``: the k nearest neighbours by L2 distance on the raw
  features, each voting 1 (plain majority vote).

The search never forms the [Q, N] similarity matrix and never sorts a full row:
XLA:GPU's fast top-k only covers k <= 16 and otherwise sorts whole rows, which
for a 1.28M-row bank costs far more than the matmul. Instead the train bank is
split over the devices of a mesh along N; each device scans its shard in blocks
of ``block_size`` rows, merging each block's scores into a running top-k with
``lax.top_k`` over a [Q, k + block] concatenation; the per-device candidates are
then all-gathered and merged once more. Queries go through in chunks of
``query_chunk`` rows, so a step holds O(query_chunk x (k + block_size)) scores
and a 1.28M x 768 bank with 50k queries fits on one 80 GB GPU.

Ties are broken towards the smaller bank index (``lax.top_k`` keeps the
lower-index element first, and both merges concatenate candidates in bank
order), so the result does not depend on the number of devices.
"""
import functools
import inspect
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

_METRICS = ("cosine", "euclidean")
# Similarities are part of the evaluation protocol: keep full float32 even where
# the backend would pick TF32 or bf16 passes for a float32 matmul.
_PRECISION = jax.lax.Precision.HIGHEST


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def _num_shards(mesh: jax.sharding.Mesh | None, axis: str) -> int:
  if mesh is None:
    return 1
  if axis not in mesh.shape:
    raise ValueError(
        f"axis must name an axis of the mesh {dict(mesh.shape)}, got {axis!r}.")
  return mesh.shape[axis]


def _layout(n: int, block_size: int, shards: int) -> tuple[int, int]:
  """Returns (block, padded N) so the bank splits into whole blocks per shard.

  The block shrinks for small banks (to the shard size rounded up to 8 rows) so
  a 100-row bank is not padded to shards x 4096 rows.
  """
  block = min(block_size, _round_up(-(-n // shards), 8))
  return block, _round_up(n, shards * block)


def _l2_normalize(x: jax.Array) -> jax.Array:
  """Row-wise x / max(||x||, 1e-12) in float32 (F.normalize, as DINO uses)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, 1e-12)


def _validate_topk(queries, bank, k: int, block_size: int, metric: str) -> None:
  if queries.ndim != 2 or bank.ndim != 2:
    raise ValueError(
        f"queries and bank must be 2-D [Q, D] and [N, D], got shapes "
        f"{tuple(queries.shape)} and {tuple(bank.shape)}.")
  if queries.shape[1] != bank.shape[1]:
    raise ValueError(
        f"queries and bank must have the same feature size D, got "
        f"{queries.shape[1]} and {bank.shape[1]}.")
  if not 1 <= k <= bank.shape[0]:
    raise ValueError(
        f"k must be between 1 and the bank size N={bank.shape[0]}, got {k}.")
  if block_size < 1:
    raise ValueError(f"block_size must be a positive int, got {block_size}.")
  if metric not in _METRICS:
    raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")


@functools.lru_cache(maxsize=32)
def _bank_placer(n_padded: int, normalize: bool, sharding):
  """Jitted bank [N, D] -> [n_padded, D] (zero rows appended), laid out.

  Laying the bank out as the jit's output sharding works on Auto and Explicit
  meshes alike. A normalised bank is float32; otherwise the input dtype is kept
  (a bf16 bank stays bf16 in memory and is cast block by block).
  """

  def place(bank):
    if normalize:
      bank = _l2_normalize(bank)
    return jnp.pad(bank, ((0, n_padded - bank.shape[0]), (0, 0)))

  return jax.jit(place, out_shardings=sharding)


def _scan_shard(queries: jax.Array, shard: jax.Array, *, k: int, block: int,
                n_valid: int, metric: str, axis: str | None):
  """Running top-k of one device's bank shard, one block at a time.

  Args:
    queries: [Q, D] float32.
    shard: [S, D] this device's contiguous rows of the padded bank,
      S % block == 0.
    k: neighbours to keep.
    block: rows per block.
    n_valid: rows of the unpadded bank; later rows can never be selected.
    metric: "cosine" ranks by q.b; "euclidean" ranks by 2 q.b - |b|^2, which
      orders like -|q - b|^2 without the per-query constant |q|^2.
    axis: mesh axis the bank is split over, or None on a single device.

  Returns:
    scores [Q, k] float32 descending and indices [Q, k] int32 into the bank.
  """
  num_q, dim = queries.shape
  num_blocks = shard.shape[0] // block
  offset = 0 if axis is None else jax.lax.axis_index(axis) * shard.shape[0]

  def merge(best, xs):
    best_scores, best_idx = best
    i, rows = xs
    rows = rows.astype(jnp.float32)
    scores = jnp.dot(queries, rows.T, precision=_PRECISION)  # [Q, block]
    if metric == "euclidean":
      scores = 2.0 * scores - jnp.sum(rows * rows, axis=-1)[None, :]
    idx = (offset + i * block + jnp.arange(block, dtype=jnp.int32))
    scores = jnp.where((idx < n_valid)[None, :], scores, -jnp.inf)
    # Running best first: its indices are all smaller than this block's, so
    # top_k's lower-position-first rule breaks ties towards the smaller index.
    cat_scores = jnp.concatenate([best_scores, scores], axis=1)
    cat_idx = jnp.concatenate(
        [best_idx, jnp.broadcast_to(idx, (num_q, block))], axis=1)
    new_scores, pos = jax.lax.top_k(cat_scores, k)
    return (new_scores, jnp.take_along_axis(cat_idx, pos, axis=1)), None

  init = (jnp.full((num_q, k), -jnp.inf, jnp.float32),
          jnp.full((num_q, k), n_valid, jnp.int32))
  if axis is not None:
    # The carry becomes device-dependent after the first block; say so up front.
    init = jax.lax.pcast(init, axis, to="varying")
  blocks = shard.reshape(num_blocks, block, dim)
  (scores, idx), _ = jax.lax.scan(
      merge, init, (jnp.arange(num_blocks, dtype=jnp.int32), blocks))
  return scores, idx


def _topk_chunk(queries: jax.Array, bank: jax.Array, *, k: int, block: int,
                n_valid: int, metric: str, mesh, axis: str):
  """Exact top-k of a query chunk [Q, D] against the padded, placed bank.

  Returns ranking scores [Q, k] (for euclidean, 2 q.b - |b|^2) and indices
  [Q, k].
  """
  queries = queries.astype(jnp.float32)
  scan = functools.partial(
      _scan_shard, k=k, block=block, n_valid=n_valid, metric=metric)
  if mesh is None:
    return scan(queries, bank, axis=None)

  def per_device(q, shard):
    scores, idx = scan(q, shard, axis=axis)
    # Device-major concatenation keeps candidates in bank order, so the final
    # top_k breaks ties like a single device would. The merged result is the
    # same on every device: gather as invarying so it may leave as replicated.
    gather = functools.partial(
        jax.lax.all_gather, axis_name=axis, axis=1, tiled=True, to="invarying")
    scores, idx = gather(scores), gather(idx)
    scores, pos = jax.lax.top_k(scores, k)
    return scores, jnp.take_along_axis(idx, pos, axis=1)

  return jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P(axis, None)),
      out_specs=(P(), P()))(queries, bank)


@functools.partial(
    jax.jit,
    static_argnames=("k", "block", "n_valid", "metric", "mesh", "axis"))
def _topk_step(queries, bank, *, k, block, n_valid, metric, mesh, axis):
  """One jitted query chunk of topk_blockwise, with the documented scores."""
  scores, idx = _topk_chunk(queries, bank, k=k, block=block, n_valid=n_valid,
                            metric=metric, mesh=mesh, axis=axis)
  if metric == "euclidean":
    q = queries.astype(jnp.float32)
    scores = scores - jnp.sum(q * q, axis=-1, keepdims=True)
  return scores, idx


def _query_chunks(num: int, chunk: int):
  """Yields (start, stop) of chunks; the caller pads the last one."""
  for start in range(0, num, chunk):
    yield start, min(start + chunk, num)


def _replicated(mesh):
  return None if mesh is None else NamedSharding(mesh, P())


def _pad_rows(x: np.ndarray | jax.Array, rows: int):
  """Pads a query chunk to a fixed row count so all chunks share one compile."""
  if x.shape[0] == rows:
    return x
  pad = [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad) if isinstance(x, jax.Array) else np.pad(x, pad)


def _put(x, sharding):
  return jnp.asarray(x) if sharding is None else jax.device_put(x, sharding)


def topk_blockwise(
    queries: jax.Array | np.ndarray,
    bank: jax.Array | np.ndarray,
    k: int,
    *,
    block_size: int = 4096,
    query_chunk: int = 1024,
    metric: str = "cosine",
    mesh: jax.sharding.Mesh | None = None,
    axis: str = "data",
) -> tuple[jax.Array, jax.Array]:
  """Exact k nearest neighbours of each query in a bank, sharded and blockwise.

  The bank is padded to a multiple of (devices x block) with rows that can never
  be selected, split over ``mesh[axis]`` along N, and scanned block by block on
  each device; only [chunk, k + block] scores exist at a time. Any k <= N works,
  including k > block_size (the merge simply keeps k of k + block).

  Args:
    queries: [Q, D] queries, any float dtype (computed in float32).
    bank: [N, D] bank, any float dtype; stays in its dtype in memory and is cast
      to float32 one block at a time.
    k: neighbours per query, 1 <= k <= N.
    block_size: bank rows scored per scan step; smaller for banks with fewer
      than devices x block_size rows.
    query_chunk: queries per device step.
    metric: "cosine" scores are dot products q.b (pass L2-normalised vectors for
      cosine similarity); "euclidean" scores are -|q - b|^2.
    mesh: mesh to split the bank over; None runs on the default device.
    axis: mesh axis the bank is split along.

  Returns:
    scores [Q, k] float32, descending, and indices [Q, k] int32 into the
    unpadded bank; equal scores are ordered by smaller index first.
  """
  _validate_topk(queries, bank, k, block_size, metric)
  if query_chunk < 1:
    raise ValueError(f"query_chunk must be a positive int, got {query_chunk}.")
  shards = _num_shards(mesh, axis)
  if queries.shape[0] == 0:
    return jnp.zeros((0, k), jnp.float32), jnp.zeros((0, k), jnp.int32)
  n = bank.shape[0]
  block, n_padded = _layout(n, block_size, shards)
  bank_sharding = None if mesh is None else NamedSharding(mesh, P(axis, None))
  placed = _bank_placer(n_padded, False, bank_sharding)(bank)
  step = functools.partial(_topk_step, bank=placed, k=k, block=block,
                           n_valid=n, metric=metric, mesh=mesh, axis=axis)
  chunk = min(query_chunk, queries.shape[0])
  scores, indices = [], []
  for start, stop in _query_chunks(queries.shape[0], chunk):
    q = _put(_pad_rows(queries[start:stop], chunk), _replicated(mesh))
    s, i = step(q)
    scores.append(s[:stop - start])
    indices.append(i[:stop - start])
  return jnp.concatenate(scores), jnp.concatenate(indices)


@functools.partial(
    jax.jit,
    static_argnames=("ks", "temperature", "num_classes", "protocol", "k",
                     "block", "n_valid", "mesh", "axis"))
def _knn_step(queries, bank, labels, *, ks, temperature, num_classes, protocol,
              k, block, n_valid, mesh, axis):
  """Predicted classes [Q, len(ks)] of one query chunk [Q, D]."""
  if protocol == "cosine":
    queries = _l2_normalize(queries)
  scores, idx = _topk_chunk(queries, bank, k=k, block=block, n_valid=n_valid,
                            metric=protocol, mesh=mesh, axis=axis)
  neighbour_labels = labels[idx]  # [Q, k]
  if protocol == "cosine":
    # exp(s / T) up to the per-query factor exp(s_max / T), which cannot change
    # the argmax but keeps small temperatures from overflowing float32.
    weights = jnp.exp((scores - scores[:, :1]) / temperature)
  else:
    weights = jnp.ones_like(scores)
  rows = jnp.arange(scores.shape[0])[:, None]
  preds = []
  for kk in ks:
    # A scatter-add instead of DINO's [Q, k, C] one-hot product, which would
    # hold 800 MB for k = 200, C = 1000 and a 1024-query chunk.
    votes = jnp.zeros((scores.shape[0], num_classes), jnp.float32)
    votes = votes.at[rows, neighbour_labels[:, :kk]].add(weights[:, :kk])
    # argmax takes the first maximum: ties go to the smallest class index.
    preds.append(jnp.argmax(votes, axis=1).astype(jnp.int32))
  return jnp.stack(preds, axis=1)


def _validate_labels(labels, size: int, num_classes: int,
                     name: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (size,):
    raise ValueError(f"{name} must have shape ({size},), got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must be integers, got dtype {labels.dtype}.")
  if size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"{name} must lie in [0, num_classes={num_classes}), got values in "
        f"[{labels.min()}, {labels.max()}].")
  return labels.astype(np.int32)


def knn_classify(
    train_feats: jax.Array | np.ndarray,
    train_labels: jax.Array | np.ndarray,
    test_feats: jax.Array | np.ndarray,
    *,
    num_classes: int,
    ks: Sequence[int] = (20,),
    temperature: float = 0.07,
    protocol: str = "cosine",
    block_size: int = 4096,
    query_chunk: int = 1024,
    mesh: jax.sharding.Mesh | None = None,
    axis: str = "data",
) -> dict[int, np.ndarray]:
  """Predicts test labels by a k-NN vote over the train bank, for several k.

  Cosine (DINO, Caron et al. 2021, ``eval_knn.py``): with z = x / ||x||, the
  vote of test point q for class c is
  ``sum_{i in top-k(q)} exp(<z_q, z_i> / T) [y_i = c]``. One top-k of max(ks)
  is computed and sliced per k, which equals a separate search per k.
  Euclidean: the k nearest by ||x_q - x_i|| each vote 1. In both protocols a
  tie between classes goes to the smallest class index, and a tie between
  neighbours at equal score to the smaller train index.

  Args:
    train_feats: [N, D] train features (bank), any float dtype.
    train_labels: [N] int train labels in [0, num_classes).
    test_feats: [M, D] test features.
    num_classes: number of classes C.
    ks: neighbour counts, each 1 <= k <= N.
    temperature: T of the cosine vote weights (ignored for euclidean).
    protocol: "cosine" or "euclidean".
    block_size: bank rows per scan step.
    query_chunk: test rows per device step.
    mesh: mesh to split the train bank over; None for the default device.
    axis: mesh axis the bank is split along.

  Returns:
    {k: [M] int32 predicted labels} for every k in ks.
  """
  if protocol not in _METRICS:
    raise ValueError(f"protocol must be one of {_METRICS}, got {protocol!r}.")
  ks = tuple(int(k) for k in ks)
  if not ks:
    raise ValueError("ks must name at least one neighbour count.")
  if num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes}.")
  if protocol == "cosine" and not temperature > 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")
  if query_chunk < 1:
    raise ValueError(f"query_chunk must be a positive int, got {query_chunk}.")
  for k in ks:
    _validate_topk(test_feats, train_feats, k, block_size, protocol)
  k_max = max(ks)
  n, m = train_feats.shape[0], test_feats.shape[0]
  labels = _validate_labels(train_labels, n, num_classes, "train_labels")
  if m == 0:
    return {k: np.zeros((0,), np.int32) for k in ks}

  shards = _num_shards(mesh, axis)
  block, n_padded = _layout(n, block_size, shards)
  bank_sharding = None if mesh is None else NamedSharding(mesh, P(axis, None))
  place = _bank_placer(n_padded, protocol == "cosine", bank_sharding)
  bank = place(train_feats)
  labels = _put(labels, _replicated(mesh))
  step = functools.partial(
      _knn_step, bank=bank, labels=labels, ks=ks,
      temperature=float(temperature), num_classes=num_classes,
      protocol=protocol, k=k_max, block=block, n_valid=n, mesh=mesh, axis=axis)
  chunk = min(query_chunk, m)
  preds = []
  for start, stop in _query_chunks(m, chunk):
    q = _put(_pad_rows(test_feats[start:stop], chunk), _replicated(mesh))
    preds.append(step(q)[:stop - start])
  preds = np.asarray(jnp.concatenate(preds))
  return {k: preds[:, j] for j, k in enumerate(ks)}


def metric_name(k: int, temperature: float, protocol: str) -> str:
  """Name of a k-NN accuracy that states its protocol.

  "knn_k{k}_t{T}_cosine" (T printed with %g, e.g. "knn_k20_t0.07_cosine",
  "knn_k200_t0.1_cosine") for the weighted cosine vote, "knn_k{k}_euclidean"
  for the unweighted Euclidean majority vote, which has no temperature.
  """
  if protocol == "euclidean":
    return f"knn_k{k}_euclidean"
  return f"knn_k{k}_t{temperature:g}_{protocol}"


def knn_accuracy(
    train_feats: jax.Array | np.ndarray,
    train_labels: jax.Array | np.ndarray,
    test_feats: jax.Array | np.ndarray,
    test_labels: jax.Array | np.ndarray,
    *,
    num_classes: int,
    **options,
) -> dict[str, float]:
  """Top-1 k-NN accuracy for each k, keyed by a name that states the protocol.

  Args:
    train_feats, train_labels, test_feats: as in knn_classify.
    test_labels: [M] int test labels in [0, num_classes).
    num_classes: as in knn_classify.
    **options: the keyword arguments of knn_classify (ks, temperature,
      protocol, block_size, query_chunk, mesh, axis), checked by it.

  Returns:
    {metric_name(k, temperature, protocol): accuracy in [0, 1]} for k in ks,
    e.g. {"knn_k20_t0.07_cosine": 0.91}.
  """
  defaults = inspect.signature(knn_classify).parameters
  temperature = options.get("temperature", defaults["temperature"].default)
  protocol = options.get("protocol", defaults["protocol"].default)
  test_labels = _validate_labels(
      test_labels, np.shape(test_feats)[0], num_classes, "test_labels")
  preds = knn_classify(train_feats, train_labels, test_feats,
                       num_classes=num_classes, **options)
  return {
      metric_name(k, temperature, protocol):
          float(np.mean(p == test_labels)) if p.size else float("nan")
      for k, p in preds.items()
  }
