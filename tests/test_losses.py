"""BYOL and DINO losses: hand-checked values and an independent numpy computation."""
import numpy as np
import jax.numpy as jnp

from jssl.losses import byol, dino


def test_byol_hand_values():
  # Aligned pairs give 0, orthogonal pairs give 2 per direction, opposite give 4.
  e1, e2 = np.eye(2, dtype=np.float32)
  preds = jnp.asarray(np.stack([[e1], [e1]]))
  assert float(byol.byol_loss(preds, jnp.asarray(np.stack([[3 * e1], [e1]])))) == 0.0
  assert np.isclose(float(byol.byol_loss(preds, jnp.asarray(np.stack([[e2], [e2]])))), 4.0)
  assert np.isclose(float(byol.byol_loss(preds, jnp.asarray(np.stack([[-e1], [-e1]])))), 8.0)
  # cos = 0.6 one way (e1 vs (3, 4)/5), 0.8 the other.
  t = np.stack([[np.array([4, 3], np.float32)], [np.array([3, 4], np.float32)]])
  expected = (2 - 2 * 0.6) + (2 - 2 * 0.8)
  assert np.isclose(float(byol.byol_loss(preds, jnp.asarray(t))), expected, atol=1e-6)


def _np_dino(s, t, center, ts, tt):
  """Loop-by-loop reference: mean over pairs i != j of mean_b sum_k -q log p."""
  def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)
  total, n = 0.0, 0
  for i in range(t.shape[0]):
    q = softmax((t[i] - center) / tt)
    for j in range(s.shape[0]):
      if i == j:
        continue
      logp = np.log(softmax(s[j] / ts))
      total += np.mean(np.sum(-q * logp, axis=-1))
      n += 1
  return total / n


def test_dino_matches_reference():
  rng = np.random.default_rng(0)
  s = rng.normal(size=(6, 5, 16)).astype(np.float32)   # 2 global + 4 local views
  t = rng.normal(size=(2, 5, 16)).astype(np.float32)
  c = rng.normal(size=(16,)).astype(np.float32) * 0.1
  got = dino.dino_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(c), student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(float(got), _np_dino(s, t, c, 0.1, 0.04), rtol=1e-5)


def test_dino_hand_value_uniform():
  # Uniform student and teacher over K classes: loss = log K.
  k = 8
  s, t = jnp.zeros((3, 2, k)), jnp.zeros((2, 2, k))
  got = dino.dino_loss(s, t, jnp.zeros(k), student_temp=0.1, teacher_temp=0.04)
  assert np.isclose(float(got), np.log(k), atol=1e-6)


def test_center_update():
  t = jnp.asarray(np.arange(12, dtype=np.float32).reshape(2, 3, 2))
  c = dino.update_center(jnp.ones(2), t, 0.9)
  np.testing.assert_allclose(np.asarray(c), 0.9 + 0.1 * np.array([5.0, 6.0]), rtol=1e-6)
