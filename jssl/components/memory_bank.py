"""A FIFO memory bank of L2-normalised embeddings, as optax-style pure functions.

The state is a plain dict {"bank": float32 [size, dim], "ptr": int32 []}, so it
lives in a method's state, shards like any array (rows over `data`) and is
checkpointed with the rest of the train state. Writes take the *global* batch,
so a run on any number of devices holds the same bank as a single-device run.
"""
import jax
import jax.numpy as jnp


def init(rng: jax.Array, size: int, dim: int) -> dict:
  """A bank of `size` random unit vectors (so early nearest neighbours are noise, not ties)."""
  bank = jax.random.normal(rng, (size, dim), jnp.float32)
  bank = bank / jnp.linalg.norm(bank, axis=-1, keepdims=True)
  return {"bank": bank, "ptr": jnp.zeros([], jnp.int32)}


def update(state: dict, values: jax.Array) -> dict:
  """Writes values [B, dim] at rows ptr..ptr+B-1 (oldest entries first out).

  B must divide the bank size (`check_size`), so a write never wraps around
  the end and ptr cycles through multiples of B.
  """
  bank, ptr = state["bank"], state["ptr"]
  values = jax.lax.stop_gradient(values).astype(bank.dtype)
  bank = jax.lax.dynamic_update_slice(bank, values, (ptr, jnp.zeros([], ptr.dtype)))
  return {"bank": bank, "ptr": (ptr + values.shape[0]) % bank.shape[0]}


def check_size(size: int, global_batch: int, name: str) -> None:
  """Raises one sentence naming the config field when the bank cannot take whole batches."""
  if size <= 0 or size % global_batch:
    raise ValueError(f"{name}={size} must be a positive multiple of batch_size={global_batch} "
                     f"(the bank is written one global batch at a time).")
