"""MoCo v3's symmetrised InfoNCE (Chen, Xie & He, 2021, Algorithm 1)."""
import jax
import jax.numpy as jnp

from jssl.losses.byol import l2_normalize


def contrastive(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
  """ctr(q, k) = 2 tau * mean_i -log softmax_j(q_i . k_j / tau)[i], on L2-normalised q and k.

  The positive of query i is key i (the other view of the same image); the
  other keys of the batch are its negatives. Under jit with the batch sharded
  over devices the arrays are global, so the negatives are the whole global
  batch, as the official code's all-gather of the keys gives.

  The factor 2 tau is the paper's (Algorithm 1: `CrossEntropyLoss(logits,
  labels) * 2 * t`; the official code's `contrastive_loss` multiplies by
  `2 * self.T`): it makes the gradient's scale roughly independent of tau, so
  a change of tau does not also act as a change of learning rate (the paper
  notes the scale could be absorbed into lr and weight decay).

  Args:
    q: [B, D] queries (predictor outputs of one view).
    k: [B, D] keys (momentum-encoder projections of the other view); gradients
      are stopped here.
    temperature: tau.

  Returns:
    Scalar float32 loss.
  """
  q = l2_normalize(q)
  k = l2_normalize(jax.lax.stop_gradient(k))
  logits = (q @ k.T) / temperature
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -2.0 * temperature * jnp.mean(jnp.diagonal(log_probs))


def mocov3_loss(queries: jax.Array, keys: jax.Array, temperature: float) -> jax.Array:
  """Symmetrised loss ctr(q1, k2) + ctr(q2, k1), the two directions summed as in the code.

  Args:
    queries: [2, B, D] predictor outputs of view 1 and view 2.
    keys: [2, B, D] momentum-encoder projections of view 1 and view 2.
    temperature: tau (1.0 in the official ResNet-50 recipes, 0.2 for ViTs).

  Returns:
    Scalar float32 loss.
  """
  return contrastive(queries[0], keys[1], temperature) + contrastive(queries[1], keys[0], temperature)
