"""SOVE (self-organising visual embeddings): judge selection and the two losses.

Judges (paper sec. 2.2.1): K anchors are drawn uniformly, without replacement,
from the [CLS] memory bank E_C; each anchor takes its k nearest neighbours
(cosine) in E_C as extra judges. The pseudo-dataset D stacks, for concept i,
the anchor then its k neighbours (rows i (k+1) .. i (k+1) + k), K (k+1) rows.

Soft labels Y [K (k+1), K]: judge j of concept c(j) has weight w_j on its own
concept and spreads the rest, (1 - w_j) / (K - 1), uniformly over the other
concepts, so every row sums to one ("soft labels that sum up to one"). The
paper sets w_j to the judge's cosine similarity with its anchor (so the
anchor's own weight is 1, its similarity with itself; negative similarities
are clipped to 0); the official code gives the anchor 0.9
(`anchor_weight=0.9`) and searches neighbours among non-anchor rows only
(`exclude_anchors=True`); `one_hot=True` gives every neighbour weight 1 (the
paper's one-hot ablation). Y is dense only in `dense_labels` (tests and small
K): at K = 8192, k = 8 it would hold 5e8 floats, so the losses use its
structure, P(u) = softmax(<u, D^T> / tau) Y computed in O(K (k+1)) per vector.

Losses: eq. (2) on [CLS] embeddings over (teacher global view, student view)
pairs of different views, reduced like DINO (mean over pairs of batch means);
eq. (4) on the masked patch positions of the global views, reduced like iBOT
(per image mean over its masked patches, then mean over images).
All similarities and probabilities are float32.

Sharded banks: given the mesh a bank's rows are split over, `select_judges`
runs the same selection as a per-device neighbour search (`jax.shard_map`,
`sharded_neighbours`); it returns exactly what the global-view search returns,
and no device ever holds more than its own rows of the bank.
"""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jssl import sharding

_HIGHEST = jax.lax.Precision.HIGHEST


def sample_anchors(rng: jax.Array, bank_size: int, num_anchors: int) -> jax.Array:
  """Indices int32 [K] of K distinct bank rows, uniformly at random."""
  if not 0 < num_anchors <= bank_size:
    raise ValueError(f"num_anchors={num_anchors} must be in [1, bank size {bank_size}].")
  return jax.random.permutation(rng, bank_size)[:num_anchors].astype(jnp.int32)


def blockwise_topk(queries: jax.Array, keys: jax.Array, k: int, *, block_size: int = 4096,
                   query_index: jax.Array | None = None,
                   excluded: jax.Array | None = None,
                   precision: jax.lax.Precision | None = None,
                   index_offset: jax.Array | int = 0,
                   axis_name: str | tuple[str, ...] | None = None) -> tuple[jax.Array, jax.Array]:
  """Top-k inner products of each query with the keys, one block of keys at a time.

  A scan keeps a running [Q, k] top-k and merges each [Q, block] block of
  similarities into it with `lax.top_k`, so the [Q, N] similarity matrix is
  never materialised (K = 8192 anchors x N = 65536 rows would be 2 GiB).
  Ties go to the lower key index, as a stable descending sort would.

  Args:
    queries: [Q, d].
    keys: [N, d].
    k: neighbours per query, <= N.
    block_size: keys per block (the last block is padded).
    query_index: optional int [Q]; key row query_index[q] is skipped for query q
      (an anchor is not its own neighbour). In the numbering of `index_offset`.
    excluded: optional bool [N]; rows never returned (e.g. all anchors),
      indexed like `keys`.
    precision: of the similarity matmuls. None (the backend's default: exact
      float32 on CPU, TF32 on recent GPUs) keeps the K x N x d search cheap;
      it can only reorder near-ties among neighbours. Precision.HIGHEST makes
      the search exact float32 everywhere.
    index_offset: the index of keys[0] (a device's first row of a sharded
      bank); the returned indices and `query_index` count from it.
    axis_name: inside `jax.shard_map`, the mesh axis the keys differ over
      (a device's rows); the running top-k is cast to vary over it too.

  Returns:
    (values float32 [Q, k] descending, indices int32 [Q, k]). Slots left
    without a key (k larger than the unexcluded keys) hold -inf.
  """
  n, d = keys.shape
  q = queries.shape[0]
  bs = min(block_size, n)
  num_blocks = -(-n // bs)
  pad = num_blocks * bs - n
  keys = jnp.pad(keys.astype(jnp.float32), ((0, pad), (0, 0)))
  queries = queries.astype(jnp.float32)
  if excluded is not None:
    excluded = jnp.pad(excluded, (0, pad))

  def merge(carry, b):
    run_v, run_i = carry
    start = b * bs
    block = jax.lax.dynamic_slice(keys, (start, 0), (bs, d))
    sims = jnp.matmul(queries, block.T, precision=precision)           # [Q, bs]
    rows = start + jnp.arange(bs, dtype=jnp.int32)
    cols = rows + index_offset
    drop = jnp.broadcast_to(rows[None] >= n, sims.shape)
    if query_index is not None:
      drop = drop | (cols[None] == query_index[:, None])
    if excluded is not None:
      drop = drop | jax.lax.dynamic_slice(excluded, (start,), (bs,))[None]
    sims = jnp.where(drop, -jnp.inf, sims)
    # Running entries come first: they have lower indices, so ties keep them.
    cand_v = jnp.concatenate([run_v, sims], axis=1)
    cand_i = jnp.concatenate([run_i, jnp.broadcast_to(cols, (q, bs))], axis=1)
    top_v, pos = jax.lax.top_k(cand_v, k)
    return (top_v, jnp.take_along_axis(cand_i, pos, axis=1)), None

  init = (jnp.full((q, k), -jnp.inf, jnp.float32), jnp.full((q, k), -1, jnp.int32))
  if axis_name is not None:
    init = jax.tree.map(lambda x: jax.lax.pcast(x, axis_name, to="varying"), init)
  (values, indices), _ = jax.lax.scan(merge, init, jnp.arange(num_blocks, dtype=jnp.int32))
  return values, indices


def select_judges(rng: jax.Array, bank: jax.Array, num_anchors: int, k: int, *, one_hot: bool = False,
                  anchor_weight: float | None = None, exclude_anchors: bool = False,
                  block_size: int = 4096, precision: jax.lax.Precision | None = None,
                  mesh=None, axis_name: str | tuple[str, ...] = "data") -> tuple[jax.Array, jax.Array]:
  """Pseudo-dataset D and its labels (paper sec. 2.2.1; appendix A.1).

  Args:
    rng: draws the anchors (`sample_anchors(rng, N, K)`).
    bank: [N, d] unit vectors (E_C, or E_P for the patch judges).
    num_anchors: K concepts.
    k: neighbours per anchor (k = 0: the anchor is the only judge, as for the
      patch loss, K-dot anchors with one judge each).
    one_hot: neighbours get weight 1 instead of their similarity.
    anchor_weight: the anchor's own-concept weight; None: 1 (paper); 0.9: code.
    exclude_anchors: search neighbours among non-anchor rows (code); the
      default only keeps an anchor from being its own neighbour.
    block_size: bank rows per block of the top-k.
    precision: of the neighbour search (`blockwise_topk`).
    mesh: None: the search sees the whole bank. A mesh whose `axis_name` (one
      axis, or a tuple of axes such as ("data", "fsdp"), major to minor) the
      bank's rows are split over: each device searches its own rows
      (`sharded_neighbours`); same judges and weights.

  Returns:
    (D float32 [K (k+1), d], W float32 [K, k+1]): W[i, 0] is anchor i's
    own-concept weight, W[i, m] that of its m-th neighbour; `dense_labels(W)`
    is the Y of the paper.
  """
  bank = jax.lax.stop_gradient(bank).astype(jnp.float32)
  idx = sample_anchors(rng, bank.shape[0], num_anchors)
  if mesh is not None:
    anchors, _, neighbours = sharded_neighbours(bank, idx, k, mesh=mesh, axis_name=axis_name,
                                                exclude_anchors=exclude_anchors, block_size=block_size,
                                                precision=precision)
    return _judges_and_weights(anchors, neighbours, anchor_weight, one_hot)
  anchors = bank[idx]                                                   # [K, d]
  if k == 0:
    return _judges_and_weights(anchors, None, anchor_weight, one_hot)
  excluded = jnp.zeros(bank.shape[:1], bool).at[idx].set(True) if exclude_anchors else None
  _, nbr = blockwise_topk(anchors, bank, k, block_size=block_size, query_index=idx, excluded=excluded,
                          precision=precision)
  return _judges_and_weights(anchors, bank[nbr], anchor_weight, one_hot)


def _judges_and_weights(anchors: jax.Array, neighbours: jax.Array | None, anchor_weight: float | None,
                        one_hot: bool) -> tuple[jax.Array, jax.Array]:
  """(D [K (k+1), d], W [K, k+1]) from anchors [K, d] and their neighbours [K, k, d] (None: k = 0)."""
  num_anchors, d = anchors.shape
  w_anchor = jnp.full((num_anchors, 1), 1.0 if anchor_weight is None else anchor_weight, jnp.float32)
  if neighbours is None:
    return anchors, w_anchor
  judges = jnp.concatenate([anchors[:, None], neighbours], axis=1)     # [K, k+1, d]
  # Label weights in exact float32, whatever precision the search ran at.
  sims = jnp.sum(anchors[:, None] * neighbours, axis=-1)
  w_nbr = jnp.ones_like(sims) if one_hot else jnp.clip(sims, 0.0, 1.0)
  return judges.reshape(-1, d), jnp.concatenate([w_anchor, w_nbr], axis=1)


def _rows_of_sharded(shard: jax.Array, rows: jax.Array, offset: jax.Array, axis_name: str) -> jax.Array:
  """Inside shard_map: bank rows `rows` (global indices, int [...]) -> [..., d] on every device.

  Each device puts in the rows it holds and zeros for the others, and a psum
  over the axis adds them up. Every row is held by exactly one device, so each
  sum is one row plus exact zeros: the rows arrive bit for bit (a -0.0
  component comes back as +0.0). Indices outside the bank give zero rows.
  """
  local = rows - offset
  own = (local >= 0) & (local < shard.shape[0])
  picked = shard[jnp.clip(local, 0, shard.shape[0] - 1)]
  return jax.lax.psum(jnp.where(own[..., None], picked, 0.0), axis_name)


def sharded_neighbours(bank: jax.Array, idx: jax.Array, k: int, *, mesh, axis_name: str | tuple[str, ...] = "data",
                       exclude_anchors: bool = False, block_size: int = 4096,
                       precision: jax.lax.Precision | None = None
                       ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """The anchors bank[idx] and their k nearest neighbours, searched where the bank rows live.

  Per device (`jax.shard_map` over `axis_name` of `mesh`; the bank's rows
  split evenly over it, P(axis_name, None)):
    1. the K anchor rows reach every device (`_rows_of_sharded`: [K, d] psum);
    2. `blockwise_topk` searches the device's own rows, numbered globally
       (index_offset = axis_index * rows per device), skipping each anchor's
       own row and, with exclude_anchors, every anchor row;
    3. the per-device [K, k] candidates (values and global indices) are
       all-gathered in device order and merged by `lax.top_k`. A device's list
       is ordered by (value descending, index ascending); concatenated in
       device order, equal values stand in ascending global index, and top_k
       keeps the first of equal values, so ties go to the lower global index,
       as in the unsharded `blockwise_topk`, and the k rows are the same;
    4. the neighbour rows reach every device as the anchors did ([K, k, d]).
  Collectives move O(K (k + 1) d) floats and O(K k D) candidates for D devices;
  the bank itself is never gathered.

  Args:
    bank: float32 [N, d], N a multiple of the axis size.
    idx: int32 [K] anchor rows (distinct).
    k: neighbours per anchor; 0: only the anchors are fetched.
    mesh: the mesh the bank is sharded over (a `jax.sharding.Mesh`).
    axis_name, exclude_anchors, block_size, precision: as in `select_judges`;
      block_size applies to each device's rows.

  Returns:
    (anchors float32 [K, d], neighbour indices int32 [K, k], neighbours
    float32 [K, k, d]), all replicated; the last two are None when k = 0.
  """
  n, d = bank.shape
  num_shards = sharding.axis_size(mesh, axis_name)
  if n % num_shards:
    raise ValueError(f"bank rows {n} must divide evenly over the {num_shards} devices of axis {axis_name!r}.")
  rows = n // num_shards

  def per_device(shard, idx):
    offset = jax.lax.axis_index(axis_name).astype(jnp.int32) * rows
    anchors = _rows_of_sharded(shard, idx, offset, axis_name)             # [K, d]
    if k == 0:
      return (anchors,)
    excluded = None
    if exclude_anchors:
      local = jnp.where((idx >= offset) & (idx < offset + rows), idx - offset, rows)
      excluded = jnp.zeros((rows,), bool).at[local].set(True, mode="drop")
    values, nbr = blockwise_topk(anchors, shard, k, block_size=block_size, query_index=idx, excluded=excluded,
                                 precision=precision, index_offset=offset, axis_name=axis_name)
    all_v = jax.lax.all_gather(values, axis_name, axis=1, tiled=True, to="invarying")   # [K, D k]
    all_i = jax.lax.all_gather(nbr, axis_name, axis=1, tiled=True, to="invarying")
    _, pos = jax.lax.top_k(all_v, k)
    nbr = jnp.take_along_axis(all_i, pos, axis=1)                          # [K, k]
    return anchors, nbr, _rows_of_sharded(shard, nbr, offset, axis_name)

  out = jax.shard_map(per_device, mesh=mesh, in_specs=(P(axis_name, None), P()),
                      out_specs=(P(),) * (1 if k == 0 else 3))(bank, idx)
  return out if k else (out[0], None, None)

def _spread(weights: jax.Array) -> jax.Array:
  """Mass each judge gives to each *other* concept: (1 - w) / (K - 1)."""
  num_concepts = weights.shape[0]
  return (1.0 - weights) / max(num_concepts - 1, 1) if num_concepts > 1 else jnp.zeros_like(weights)


def dense_labels(weights: jax.Array) -> jax.Array:
  """Y float32 [K (k+1), K] from own-concept weights W [K, k+1] (rows sum to 1)."""
  num_concepts, per = weights.shape
  own = jnp.repeat(jnp.eye(num_concepts, dtype=jnp.float32), per, axis=0)   # [K (k+1), K]
  w, u = weights.reshape(-1, 1), _spread(weights).reshape(-1, 1)
  return own * w + (1.0 - own) * u


def concept_probs(x: jax.Array, judges: jax.Array, weights: jax.Array, temp) -> jax.Array:
  """P(x) = softmax(<x, D^T> / temp) Y, float32 [..., K], without forming Y.

  (p Y)_c = sum_{j in c} p_j (w_j - u_j) + sum_j p_j u_j with u the spread mass.
  """
  num_concepts, per = weights.shape
  logits = jnp.einsum("...d,nd->...n", x.astype(jnp.float32), judges.astype(jnp.float32), precision=_HIGHEST)
  p = jax.nn.softmax(logits / temp, axis=-1)
  p = p.reshape(p.shape[:-1] + (num_concepts, per))
  u = _spread(weights)
  return jnp.einsum("...cj,cj->...c", p, weights - u) + jnp.einsum("...cj,cj->...", p, u)[..., None]


def _log(p: jax.Array) -> jax.Array:
  # P is a mixture of softmax probabilities, so it only underflows far below
  # what float32 temperatures >= 0.01 produce; the floor guards log(0).
  return jnp.log(jnp.maximum(p, jnp.finfo(jnp.float32).tiny))


def cls_loss(student: jax.Array, teacher: jax.Array, judges: jax.Array, weights: jax.Array, *,
             student_temp: float, teacher_temp) -> jax.Array:
  """Eq. (2): cross-entropy between teacher and student concept distributions.

  Every (teacher view i, student view j) pair with i != j contributes
  mean_b sum_c -P_t^i(c) log P_s^j(c); the loss is the mean over pairs (the
  DINO reduction, METHODS.md).

  Args:
    student: [V, B, d] unit student embeddings, global views first.
    teacher: [G, B, d] unit teacher embeddings of the G global views.
    judges: D [K (k+1), d]; weights: W [K, k+1] (from `select_judges`).
    student_temp, teacher_temp: tau of the student and teacher softmax.

  Returns:
    Scalar float32.
  """
  log_ps = _log(concept_probs(student, judges, weights, student_temp))
  pt = jax.lax.stop_gradient(concept_probs(teacher, judges, weights, teacher_temp))
  ce = -jnp.einsum("ibc,jbc->ij", pt, log_ps) / student.shape[1]
  keep = 1.0 - jnp.eye(*ce.shape)
  return jnp.sum(ce * keep) / jnp.sum(keep)


def patch_loss(student_patches: jax.Array, teacher_patches: jax.Array, mask: jax.Array, judges: jax.Array,
               weights: jax.Array, *, student_temp: float, teacher_temp) -> jax.Array:
  """Eq. (4): non-parametric MIM on the masked positions.

  The student saw the masked image, the teacher the intact one; position l
  contributes sum_c -P_t(z_l)(c) log P_s(z^_l)(c) where mask is True. Each
  image averages over its masked patches, then images are averaged; an image
  with nothing masked contributes 0 and still counts (the iBOT reduction).

  Args:
    student_patches, teacher_patches: [B, N, d] unit embeddings.
    mask: bool [B, N], True where the student's patch was masked.
    judges: D-dot [M, d]; weights: [K-dot, M / K-dot].

  Returns:
    Scalar float32.
  """
  log_ps = _log(concept_probs(student_patches, judges, weights, student_temp))
  pt = jax.lax.stop_gradient(concept_probs(teacher_patches, judges, weights, teacher_temp))
  ce = -jnp.sum(pt * log_ps, axis=-1)                                  # [B, N]
  m = mask.astype(jnp.float32)
  per_image = jnp.sum(ce * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
  return jnp.mean(per_image)
