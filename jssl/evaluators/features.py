"""Frozen features of an encoder over in-memory images, batched and sharded over devices."""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jssl import sharding
from jssl.data import multicrop


def make_feature_fn(encoder_def, aug, layer: str = "pre_logits") -> Callable:
  """(encoder params, batch stats, uint8 images [B, H, W, C]) -> float32 features [B, ...].

  Preprocessing is deterministic (resize and centre crop, `multicrop.eval_preprocess`);
  `layer` names the model's output ("output") or one of its intermediates.
  """
  def fn(params, stats, images):
    model = nnx.merge(encoder_def, params, stats)
    out, inter = model(multicrop.eval_preprocess(images, aug), train=False)
    if layer == "output":
      return out.astype(jnp.float32)
    if layer not in inter:
      raise ValueError(f"layer={layer!r} is not an intermediate of this model; it has {sorted(inter)}.")
    return inter[layer].astype(jnp.float32)
  return fn


def extract(feature_fn: Callable, params, stats, images: np.ndarray, *, batch_size: int,
            mesh: jax.sharding.Mesh, desc: str | None = None) -> np.ndarray:
  """Runs `feature_fn` over `images` [N, H, W, C] in batches; returns features [N, ...] on the host.

  The last batch is padded to the full batch size so that one compiled program
  serves every batch; padding rows are dropped from the result. With `desc`, a progress bar
  counts the batches.
  """
  from jssl.writers import phase
  n_dev = mesh.devices.size
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  data_sharding = sharding.batch_sharded(mesh)
  # With several processes each one needs the whole batch's features on its host: gather them
  # in the program itself (a process reads only its own devices' shards).
  out_sharding = data_sharding if jax.process_count() == 1 else sharding.replicated(mesh)
  jitted = jax.jit(feature_fn, out_shardings=out_sharding)
  outs = []
  starts = range(0, len(images), batch_size)
  for start in phase(starts, desc or "", unit="batch", enabled=desc is not None):
    chunk = images[start:start + batch_size]
    valid = len(chunk)
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid,) + chunk.shape[1:], chunk.dtype)])
    x = jax.make_array_from_callback(chunk.shape, data_sharding, lambda idx, c=chunk: c[idx])
    outs.append(np.asarray(jax.device_get(jitted(params, stats, x)))[:valid])
  return np.concatenate(outs)
