"""iBOT masked-image-modelling loss and patch center (Zhou et al., 2022, eq. 2).

The [CLS] part of iBOT is DINO's loss (`jssl.losses.dino.dino_loss`); this file
holds the patch part: self-distillation from the teacher's patch tokens of the
unmasked view to the student's patch tokens of the masked version of the same
view, on masked positions only.
"""
import jax
import jax.numpy as jnp


def patch_loss(student_logits: jax.Array, teacher_logits: jax.Array, mask: jax.Array,
               center_patch: jax.Array, *, student_temp: float, teacher_temp: jax.Array) -> jax.Array:
  """Masked patch self-distillation loss.

  For image b (any leading axes flatten into images, e.g. [G, B] views x batch)
  with mask m_b and patch n:

    ce_bn = sum_k -P_t(b, n, k) log P_s(b, n, k),
    P_t = softmax((t - center_patch) / teacher_temp),  P_s = softmax(s / student_temp),
    L = mean_b [ sum_n m_bn ce_bn / max(sum_n m_bn, 1) ].

  That is iBOT's reduction (METHODS.md): per image the mean over its masked
  patches, then the mean over images; an image with nothing masked contributes 0
  but still counts in the denominator. Averaging over G views of B images is the
  same as the reference's mean over views of per-view batch means.

  Args:
    student_logits: [..., N, K] student head outputs for the masked views.
    teacher_logits: [..., N, K] teacher head outputs for the same views, unmasked
      (the same crop: teacher view i is compared with student view i only).
    mask: bool [..., N], True where the student saw the mask token.
    center_patch: [K] running center of teacher patch logits.
    student_temp: student temperature.
    teacher_temp: teacher patch temperature (may be a traced scalar).

  Returns:
    Scalar float32 loss.
  """
  s_logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  t_prob = jax.nn.softmax(
      (jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) - center_patch) / teacher_temp, axis=-1)
  ce = -jnp.sum(t_prob * s_logp, axis=-1)  # [..., N]
  m = mask.astype(jnp.float32)
  per_image = jnp.sum(ce * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
  return jnp.mean(per_image)


def update_patch_center(center_patch: jax.Array, teacher_logits: jax.Array, momentum: float) -> jax.Array:
  """EMA of the mean teacher patch logit over every patch token of the global batch.

  c <- m c + (1 - m) mean_{views, images, patches} t, masked positions or not.

  Args:
    center_patch: [K].
    teacher_logits: [..., N, K] teacher patch logits.
    momentum: center momentum m (0.9 in iBOT).
  """
  t = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
  batch_center = jnp.mean(t.reshape(-1, t.shape[-1]), axis=0)
  return center_patch * momentum + batch_center * (1.0 - momentum)
