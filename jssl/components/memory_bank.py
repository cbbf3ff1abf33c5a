"""A FIFO memory bank of L2-normalised embeddings, as optax-style pure functions.

The state is a plain dict {"bank": float32 [size, dim], "ptr": int32 []}, so it
lives in a method's state, shards like any array (rows over `data`) and is
checkpointed with the rest of the train state. Writes take the *global* batch,
so a run on any number of devices holds the same bank as a single-device run.

With the rows split over a mesh axis, the global-view write (a
dynamic_update_slice at a traced pointer) makes XLA all-gather the whole bank
to every device (the compiled HLO holds an all-gather of [size, dim]); given
the mesh, `update` writes per device instead (`jax.shard_map`): every device
gets the [B, dim] batch and writes the rows of it that fall in its own shard.
"""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jssl import sharding


def init(rng: jax.Array, size: int, dim: int) -> dict:
  """A bank of `size` random unit vectors (so early nearest neighbours are noise, not ties)."""
  bank = jax.random.normal(rng, (size, dim), jnp.float32)
  bank = bank / jnp.linalg.norm(bank, axis=-1, keepdims=True)
  return {"bank": bank, "ptr": jnp.zeros([], jnp.int32)}


def update(state: dict, values: jax.Array, *, mesh=None, axis_name: str | tuple[str, ...] = "data") -> dict:
  """Writes values [B, dim] at rows ptr..ptr+B-1 (oldest entries first out).

  B must divide the bank size (`check_size`), so a write never wraps around
  the end and ptr cycles through multiples of B.

  mesh: when given, and its `axis_name` (one axis or a tuple of axes) has more
  than one device and the bank rows divide evenly over them, the bank is taken
  as sharded by rows, P(axis_name, None), and written per device
  (`_sharded_write`); the result is the same bank.
  """
  bank, ptr = state["bank"], state["ptr"]
  values = jax.lax.stop_gradient(values).astype(bank.dtype)
  shards = 1 if mesh is None else sharding.axis_size(mesh, axis_name)
  if shards > 1 and bank.shape[0] % shards == 0:
    bank = _sharded_write(bank, values, ptr, mesh, axis_name)
  else:
    bank = jax.lax.dynamic_update_slice(bank, values, (ptr, jnp.zeros([], ptr.dtype)))
  return {"bank": bank, "ptr": (ptr + values.shape[0]) % bank.shape[0]}


def _sharded_write(bank: jax.Array, values: jax.Array, ptr: jax.Array, mesh, axis_name) -> jax.Array:
  """The FIFO write on a bank sharded by rows over `axis_name`, each device writing its own rows.

  The batch [B, dim] is replicated (an all-gather of the batch, not of the
  bank). A device holding rows [off, off + R) updates a window of
  w = min(B, R) local rows starting at clip(ptr - off, 0, R - w): every row of
  ptr..ptr+B-1 it holds lies in that window, and window rows outside the
  write keep their old values.
  """
  rows, dim = bank.shape[0] // sharding.axis_size(mesh, axis_name), bank.shape[1]
  b = values.shape[0]
  w = min(b, rows)

  def per_device(shard, values, ptr):
    offset = jax.lax.axis_index(axis_name).astype(ptr.dtype) * rows
    start = jnp.clip(ptr - offset, 0, rows - w)
    window = jax.lax.dynamic_slice(shard, (start, jnp.zeros([], start.dtype)), (w, dim))
    src = offset + start + jnp.arange(w, dtype=ptr.dtype) - ptr        # row of `values` for each window row
    written = (src >= 0) & (src < b)
    window = jnp.where(written[:, None], values[jnp.clip(src, 0, b - 1)], window)
    return jax.lax.dynamic_update_slice(shard, window, (start, jnp.zeros([], start.dtype)))

  spec = P(axis_name, None)
  return jax.shard_map(per_device, mesh=mesh, in_specs=(spec, P(), P()), out_specs=spec)(bank, values, ptr)


def check_size(size: int, global_batch: int, name: str) -> None:
  """Raises one sentence naming the config field when the bank cannot take whole batches."""
  if size <= 0 or size % global_batch:
    raise ValueError(f"{name}={size} must be a positive multiple of batch_size={global_batch} "
                     f"(the bank is written one global batch at a time).")
