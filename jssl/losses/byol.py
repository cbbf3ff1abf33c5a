"""BYOL regression loss (Grill et al., 2020, eq. 2)."""
import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """Divides by the L2 norm along `axis` (in float32), guarding against zero vectors."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def regression_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """Per-example ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z).

  Args:
    prediction: [B, D] online predictions q(z_online).
    target: [B, D] target projections (gradients are stopped here).

  Returns:
    [B] float32 losses.
  """
  p = l2_normalize(prediction)
  z = l2_normalize(jax.lax.stop_gradient(target))
  return 2.0 - 2.0 * jnp.sum(p * z, axis=-1)


def byol_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Symmetrised BYOL loss over two views.

  The official code sums the two directions, each a batch mean of 2 - 2 cos
  (METHODS.md, reduction conventions), so a perfectly aligned pair gives 0 and
  orthogonal outputs give 4.

  Args:
    predictions: [2, B, D] online predictions of view 1 and view 2.
    targets: [2, B, D] target projections of view 1 and view 2.

  Returns:
    Scalar: mean_b l(q1, z'2) + mean_b l(q2, z'1).
  """
  return (jnp.mean(regression_loss(predictions[0], targets[1]))
          + jnp.mean(regression_loss(predictions[1], targets[0])))
