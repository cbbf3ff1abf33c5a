"""CO-SSL local-to-global losses (paper 003, sec. 3.1): a base method's loss applied between
the local (pre-pooling) representations of one view and the global representation of
the other view, in both directions.

Shapes: V = 2 global views, B images, N local positions (n^2 after optional downsampling),
D embedding width, K prototypes. Every function averages over positions and images and
sums (BYOL, MoCo v3) or averages (DINO) over the two view orders, as its base loss does.
"""
import jax
import jax.numpy as jnp

from jssl.losses.byol import regression_loss
from jssl.losses.mocov3 import contrastive


def _check_two_views(*arrays) -> None:
  for a in arrays:
    if a.shape[0] != 2:
      raise ValueError(f"CO-SSL local losses take two global views, got an array of shape {a.shape}.")


def byol_local_loss(local_preds: jax.Array, global_preds: jax.Array, local_targets: jax.Array,
                    global_targets: jax.Array) -> jax.Array:
  """CO-BYOL's L_l, summed over the two view orders.

  For views (v, v') = (1, 2) and (2, 1):
    L_l(v, v') = mean_b 1/N sum_i [ l(p_l^{v,i}, z_g^{v'}) + l(p_g^v, z_l^{v',i}) ],
  with l(p, z) = 2 - 2 cos(p, sg(z)) (BYOL's regression loss, as jssl's `byol_loss`).
  The paper writes -2 cos; the two differ by the constant 4 per view order, so the
  gradients are the same and a perfect alignment gives 0 here.

  Args:
    local_preds: [2, B, N, D] online local predictions q2(g2(l^i)).
    global_preds: [2, B, D] online global predictions q1(g1(h)).
    local_targets: [2, B, N, D] target local projections g2'(l'^i) (gradients stopped).
    global_targets: [2, B, D] target global projections g1'(h') (gradients stopped).

  Returns:
    Scalar float32: L_l(1, 2) + L_l(2, 1).
  """
  _check_two_views(local_preds, global_preds, local_targets, global_targets)
  total = 0.0
  for v, w in ((0, 1), (1, 0)):
    local_to_global = regression_loss(local_preds[v], global_targets[w][:, None, :])   # [B, N]
    global_to_local = regression_loss(global_preds[v][:, None, :], local_targets[w])   # [B, N]
    total = total + jnp.mean(local_to_global) + jnp.mean(global_to_local)
  return total


def dino_local_loss(student_global: jax.Array, student_local: jax.Array, teacher_global: jax.Array,
                    teacher_local: jax.Array, center: jax.Array, local_center: jax.Array, *,
                    student_temp: float, teacher_temp: jax.Array) -> jax.Array:
  """CO-DINO's local term: DINO's cross-entropy between local and global distributions.

  For each pair of different global views (teacher view t, student view s):
    L_l(s, t) = mean_b 1/N sum_i [ H(P_t(g^t), P_s(l^{s,i})) + H(P_t(l^{t,i}), P_s(g^s)) ],
  H(p, q) = sum_k -p_k log q_k. P_s = softmax(x / student_temp); P_t = softmax((x - c) /
  teacher_temp) with c = `center` for the teacher's global logits (DINO's center) and
  c = `local_center` for its local logits. The result is the mean over the two (t, s)
  pairs, as DINO's loss averages over pairs.

  Args:
    student_global: [2, B, K] student logits of the global views.
    student_local: [2, B, N, K] student logits of the local representations.
    teacher_global: [2, B, K] teacher logits of the global views (gradients stopped).
    teacher_local: [2, B, N, K] teacher logits of the local representations (gradients stopped).
    center: [K] DINO's center of the teacher's global logits.
    local_center: [K] center of the teacher's local logits.
    student_temp: tau_s.
    teacher_temp: tau_t (may be traced).

  Returns:
    Scalar float32 loss.
  """
  _check_two_views(student_global, student_local, teacher_global, teacher_local)
  s_global = jax.nn.log_softmax(student_global.astype(jnp.float32) / student_temp, axis=-1)
  s_local = jax.nn.log_softmax(student_local.astype(jnp.float32) / student_temp, axis=-1)
  t_global = jax.nn.softmax(
      (jax.lax.stop_gradient(teacher_global).astype(jnp.float32) - center) / teacher_temp, axis=-1)
  t_local = jax.nn.softmax(
      (jax.lax.stop_gradient(teacher_local).astype(jnp.float32) - local_center) / teacher_temp, axis=-1)
  b, n = student_local.shape[1:3]
  # [t, s]: teacher view t against student view s, averaged over images and positions.
  global_to_local = -jnp.einsum("tbk,sbnk->ts", t_global, s_local) / (b * n)
  local_to_global = -jnp.einsum("tbnk,sbk->ts", t_local, s_global) / (b * n)
  off_diagonal = 1.0 - jnp.eye(2)
  return jnp.sum((global_to_local + local_to_global) * off_diagonal) / jnp.sum(off_diagonal)


def mocov3_local_loss(local_queries: jax.Array, global_queries: jax.Array, local_keys: jax.Array,
                      global_keys: jax.Array, temperature: float) -> jax.Array:
  """CO-MoCoV3's local term: MoCo v3's InfoNCE between local and global embeddings.

  For views (v, v') = (1, 2) and (2, 1), summed (as MoCo v3 sums its two directions):
    L_l(v, v') = 1/N sum_i [ ctr(q_l^{v,i}, k_g^{v'}) + ctr(q_g^v, k_l^{v',i}) ],
  ctr(q, k) = 2 tau * mean_b -log softmax_j(q_b . k_j / tau)[b] on L2-normalised
  vectors (MoCo v3's loss, jssl.losses.mocov3.contrastive). The local query of image b
  at position i has the global key of image b as its positive and the global keys of
  the other images of the (global) batch as negatives; the global query of image b is
  contrasted with the keys at position i of every image.

  Args:
    local_queries: [2, B, N, D] online local predictions q2(g2(l^i)).
    global_queries: [2, B, D] online global predictions.
    local_keys: [2, B, N, D] momentum local projections (gradients stopped).
    global_keys: [2, B, D] momentum global projections (gradients stopped).
    temperature: tau.

  Returns:
    Scalar float32 loss.
  """
  _check_two_views(local_queries, global_queries, local_keys, global_keys)
  local_queries_vs_key = jax.vmap(contrastive, in_axes=(1, None, None))    # over the N query positions
  query_vs_local_keys = jax.vmap(contrastive, in_axes=(None, 1, None))     # over the N key positions
  total = 0.0
  for v, w in ((0, 1), (1, 0)):
    total = total + jnp.mean(local_queries_vs_key(local_queries[v], global_keys[w], temperature))
    total = total + jnp.mean(query_vs_local_keys(global_queries[v], local_keys[w], temperature))
  return total
