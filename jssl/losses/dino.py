"""DINO self-distillation loss and center (Caron et al., 2021, eq. 1 and sec. 3.1)."""
import jax
import jax.numpy as jnp


def dino_loss(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array, *,
              student_temp: float, teacher_temp: jax.Array) -> jax.Array:
  """Cross-entropy between centred, sharpened teacher and student distributions.

  Every (teacher view i, student view j) pair with i != j contributes
  mean_b sum_k -P_t^i(k) log P_s^j(k); the loss is the mean over those pairs,
  as in the official code (METHODS.md, reduction conventions).

  Args:
    student_logits: [V, B, K] head outputs of every student view (global views
      first, then local views).
    teacher_logits: [G, B, K] teacher head outputs of the G global views
      (G <= V; teacher view i and student view i show the same crop).
    center: [K] running center of teacher logits.
    student_temp: student temperature tau_s.
    teacher_temp: teacher temperature tau_t (may be a traced scalar).

  Returns:
    Scalar float32 loss.
  """
  s_logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  t_prob = jax.nn.softmax(
      (jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) - center) / teacher_temp, axis=-1)
  # ce[i, j] = mean_b sum_k -t_i log s_j, for all pairs, then drop i == j.
  ce = -jnp.einsum("ibk,jbk->ij", t_prob, s_logp) / student_logits.shape[1]
  num_t, num_s = ce.shape
  keep = 1.0 - jnp.eye(num_t, num_s)
  return jnp.sum(ce * keep) / jnp.sum(keep)


def update_center(center: jax.Array, teacher_logits: jax.Array, momentum: float) -> jax.Array:
  """EMA of the mean teacher logit over all global views of the global batch.

  Args:
    center: [K].
    teacher_logits: [G, B, K].
    momentum: center momentum m (0.9): c <- m c + (1 - m) mean(logits).
  """
  batch_center = jnp.mean(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), axis=(0, 1))
  return center * momentum + batch_center * (1.0 - momentum)
