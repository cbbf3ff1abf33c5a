"""Host input pipeline: grain iterators over sources, and host-local -> global arrays.

The pipeline is a grain `MapDataset` over *batch* indices: element j of the
dataset is batch j, whose example indices come from a per-epoch permutation, and
one call of the source's vectorised `get_batch` reads it (a single numpy gather
for in-memory data, one batched ArrayRecord read for TFDS). Grain supplies
threaded / multi-process prefetch and checkpointable iterator state. The host
only decodes and batches; augmentation runs on the accelerator.

Multi-host: the stream of global batches does not depend on the number of
processes. Every epoch is one permutation of the split, seeded by (seed, epoch);
global batch j is its slice [j * B, (j + 1) * B), and process p reads only the
p-th of the `process_count` equal parts of that slice, so the processes read
disjoint examples, `global_batch_size // process_count` each per step, and
`to_global` assembles the same global batch one process would read. A run
therefore trains on the same data whether one host or several share it.

Iterator state is grain's (`it.get_state()` / `it.set_state(state)`); `save_args`
and `restore_args` wrap an iterator for an orbax `ocp.args.Composite`.
"""

from __future__ import annotations

import sys
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from jssl.data import sources


def check_batch_size(global_batch_size: int) -> None:
  """Raises ValueError unless the batch splits evenly over all devices."""
  devices = jax.device_count()
  if (not isinstance(global_batch_size, (int, np.integer)) or global_batch_size <= 0
      or global_batch_size % devices):
    raise ValueError(f"batch_size must be a positive multiple of the device count "
                     f"{devices}, got {global_batch_size}.")


class _ReadBatch:
  """Maps int64 [B] indices to a batch dict; a class so that it pickles."""

  def __init__(self, source):
    self._source = source

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    if hasattr(self._source, "get_batch"):
      return self._source.get_batch(indices)
    examples = [self._source[int(i)] for i in indices]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _finish(dataset: grain.MapDataset, data: ml_collections.ConfigDict
            ) -> grain.DatasetIterator:
  read_options = grain.ReadOptions(num_threads=data.read_threads,
                                   prefetch_buffer_size=data.prefetch_batches)
  iter_dataset = dataset.to_iter_dataset(read_options)
  if data.worker_count > 0:
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data.worker_count))
  return iter(iter_dataset)


class _ShuffledBatch:
  """Maps step j to this process's part of global batch j of an endless stream of
  per-epoch permutations.

  The stream is perm_0 ++ perm_1 ++ ... over the whole split; global batch j is
  its slice [j * B, (j + 1) * B) and process p reads [j * B + p * b, j * B + (p + 1) * b)
  with b = B // process_count, so a batch may straddle two epochs but every epoch
  visits each example exactly once, and the processes read disjoint examples. A
  batch's indices cost one vectorised lookup, where grain's per-element shuffle
  and batch cost about 10 us per example, which would cap small images at ~100k
  examples/s/core. Prefetch threads may call this concurrently; the epoch cache
  is only an optimisation, so a racing recomputation gives the same permutation.
  """

  def __init__(self, source, num_examples: int, global_batch_size: int, seed: int,
               process_index: int, process_count: int):
    self._read = _ReadBatch(source)
    self._n, self._global_batch = num_examples, global_batch_size
    self._batch_size = global_batch_size // process_count
    self._offset = process_index * self._batch_size
    self._seed = seed
    self._permutations = {}  # epoch -> permutation; holds the latest two.

  def _permutation(self, epoch: int) -> np.ndarray:
    perm = self._permutations.get(epoch)
    if perm is None:
      # Seeded by (seed, 0, epoch), the same in every process: any epoch is
      # reproducible on its own (the 0 keeps the order that single-process runs
      # have always had, so their checkpoints resume on the same stream).
      rng = np.random.default_rng([self._seed, 0, epoch])
      perm = rng.permutation(self._n).astype(np.int64)
      self._permutations = {e: p for e, p in self._permutations.items()
                            if e >= epoch - 1}
      self._permutations[epoch] = perm
    return perm

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    first = int(step) * self._global_batch + self._offset
    epoch, offset = divmod(first, self._n)
    indices = self._permutation(epoch)[offset:offset + self._batch_size]
    if len(indices) < self._batch_size:
      rest = self._permutation(epoch + 1)[:self._batch_size - len(indices)]
      indices = np.concatenate([indices, rest])
    return self._read(indices)


def train_iterator(data: ml_collections.ConfigDict, *, global_batch_size: int,
                   seed: int, split: str | None = None) -> grain.DatasetIterator:
  """Returns an infinite, shuffled, checkpointable iterator of host-local batches.

  The split is reshuffled every epoch and each process reads its part of every
  global batch (see `_ShuffledBatch`); grain
  maps the step index to its batch, prefetches in threads (and worker processes
  when `data.worker_count > 0`), and its state is the next step index, so
  `set_state` resumes the stream exactly.

  Args:
    data: the `data` config.
    global_batch_size: examples per step over all processes.
    seed: shuffle seed.
    split: defaults to `data.train_split`.

  Returns:
    Iterator of {"image": uint8 [b, H, W, C], "label": int32 [b]} numpy dicts
    with b = global_batch_size // jax.process_count().
  """
  check_batch_size(global_batch_size)
  split = split or data.train_split
  source = sources.get_source(data, split)
  if len(source) < global_batch_size:
    raise ValueError(f"batch_size {global_batch_size} needs {global_batch_size} examples "
                     f"but split {split!r} has only {len(source)}.")
  steps = sys.maxsize // global_batch_size  # endless, yet first * B fits in int64.
  dataset = grain.MapDataset.range(steps).map(
      _ShuffledBatch(source, len(source), global_batch_size, seed, jax.process_index(),
                     jax.process_count()))
  return _finish(dataset, data)


class _ReadPaddedBatch:
  """Reads batch `j` of a contiguous range, padding past its end with zeros."""

  def __init__(self, source, start: int, stop: int, batch_size: int):
    self._read = _ReadBatch(source)
    self._image_shape = tuple(source.image_shape)
    self._start, self._stop, self._batch_size = start, stop, batch_size

  def __call__(self, j: int) -> dict[str, np.ndarray]:
    first = self._start + int(j) * self._batch_size
    indices = np.arange(first, min(first + self._batch_size, self._stop))
    image = np.zeros((self._batch_size, *self._image_shape), np.uint8)
    label = np.zeros((self._batch_size,), np.int32)
    mask = np.zeros((self._batch_size,), bool)
    if len(indices):
      batch = self._read(indices)
      image[:len(indices)] = batch["image"]
      label[:len(indices)] = batch["label"]
      mask[:len(indices)] = True
    return {"image": image, "label": label, "mask": mask}


def eval_iterator(data: ml_collections.ConfigDict, split: str, *,
                  global_batch_size: int, max_examples: int | None = None
                  ) -> grain.DatasetIterator:
  """Returns one ordered pass over `split` in padded, masked host-local batches.

  Each process reads a contiguous block of the (first `max_examples` of the)
  split, in order; all processes yield the same number of batches so that
  collective evaluation steps line up, padding with zero images.

  Args:
    data: the `data` config.
    split: e.g. "test" or "train[90%:]".
    global_batch_size: examples per step over all processes.
    max_examples: evaluate only the first examples of the split.

  Returns:
    Iterator of {"image": uint8 [b, H, W, C], "label": int32 [b], "mask": bool [b]}
    with b = global_batch_size // jax.process_count() and mask False on padding.
  """
  check_batch_size(global_batch_size)
  source = sources.get_source(data, split)
  n = len(source) if max_examples is None else min(len(source), max_examples)
  process_index, process_count = jax.process_index(), jax.process_count()
  local_batch = global_batch_size // process_count
  per_process = -(-n // process_count)
  start = min(n, process_index * per_process)
  stop = min(n, start + per_process)
  num_batches = -(-per_process // local_batch)
  dataset = grain.MapDataset.range(num_batches).map(
      _ReadPaddedBatch(source, start, stop, local_batch))
  return _finish(dataset, data)


def to_global(batch: dict[str, np.ndarray],
              sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """Assembles host-local batches into global arrays sharded along the batch.

  Args:
    batch: a (nested) dict of host-local [b, ...] arrays.
    sharding: a sharding whose spec names the batch axis first, e.g.
      `NamedSharding(mesh, P("data"))`; spec entries beyond a leaf's rank are
      dropped so the same sharding serves images and labels.

  Returns:
    The same structure of global [b * process_count, ...] jax.Arrays.
  """
  def put(x):
    x = np.asarray(x)
    spec = jax.sharding.PartitionSpec(*tuple(sharding.spec)[:x.ndim])
    leaf_sharding = jax.sharding.NamedSharding(sharding.mesh, spec)
    return jax.make_array_from_process_local_data(leaf_sharding, x)
  return jax.tree.map(put, batch)


def save_args(iterator: grain.DatasetIterator) -> Any:
  """Orbax save args for a grain iterator, for use in `ocp.args.Composite`.

  Grain's handler writes one JSON state file per process.
  """
  return grain.checkpoint.CheckpointSave(iterator)


def restore_args(iterator: grain.DatasetIterator) -> Any:
  """Orbax restore args: restores `iterator` in place to the saved position."""
  return grain.checkpoint.CheckpointRestore(iterator)
