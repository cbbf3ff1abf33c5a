"""SimCLR's NT-Xent loss (Chen et al., 2020, eq. 1)."""
import jax
import jax.numpy as jnp

from jssl.losses.byol import l2_normalize


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """Normalised-temperature cross-entropy over the 2B views of a batch.

  For each of the 2B embeddings, the positive is the other view of the same
  image and the negatives are the other 2B - 2 embeddings; the self-similarity
  is excluded. The loss is the mean over all 2B anchors (the paper's L, which
  sums l(2k-1, 2k) + l(2k, 2k-1) and divides by 2N).

  Under jit with the batch sharded over devices the arrays are global, so the
  negatives are the whole global batch, as the paper's cross-replica version.

  Args:
    z1, z2: [B, D] projections of view 1 and view 2.
    temperature: tau.

  Returns:
    Scalar float32 loss.
  """
  b = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, logits)
  positives = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_probs, positives[:, None], axis=-1))
