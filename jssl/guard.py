"""The non-finite guard: which of loss, gradients and updated parameters went NaN/Inf.

The train step computes one small integer code per step on the device (no host
sync); the trainer reads the codes of all steps since its last look in one
transfer, at the logging cadence and before every checkpoint save, so a
non-finite state is never written. `config.on_nonfinite` picks what happens:
"stop" ends the run naming the first bad step, "skip" drops that step's update
(the step counter and the data still advance) and logs how many were skipped.
"""
import jax
import jax.numpy as jnp

MODES = ("stop", "skip")
# Bit of each quantity in the code, in the order they are computed.
_NAMES = ((1, "loss"), (2, "gradients"), (4, "updated parameters"))


class NonFiniteError(RuntimeError):
  """A step produced a NaN or Inf with on_nonfinite='stop'."""


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def nonfinite_code(loss, grads, params) -> jax.Array:
  """int32 scalar: 0 when all finite, else bit 1 loss | 2 gradients | 4 updated parameters."""
  bits = [jnp.where(ok, 0, bit) for ok, (bit, _) in zip(
      (jnp.isfinite(loss), _all_finite(grads), _all_finite(params)), _NAMES)]
  return sum(bits).astype(jnp.int32)


def describe(code: int) -> str:
  """'loss', 'loss and gradients', 'loss, gradients and updated parameters' for a non-zero code."""
  names = [name for bit, name in _NAMES if int(code) & bit]
  return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def keep_if(ok: jax.Array, new_state: dict, old_state: dict) -> dict:
  """new_state where `ok`, else old_state with only the step counter advanced."""
  kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, old_state)
  return dict(kept, step=new_state["step"])
