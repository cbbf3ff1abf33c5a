"""SimCLR: NT-Xent against a loop-by-loop reference of the paper's formula, and real train steps."""
import jax
import jax.numpy as jnp
import numpy as np

from jssl import config as cfg
from jssl import train
from jssl.losses.simclr import nt_xent


def _np_nt_xent(z1, z2, tau):
  """Paper eq. 1: l(i, j) = -log exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau), averaged over all 2N anchors."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    denom = sum(np.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
    total += -np.log(np.exp(z[i] @ z[j] / tau) / denom)
  return total / (2 * n)


def test_nt_xent_matches_reference():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(2, 6, 5)).astype(np.float32)
  for tau in (0.1, 0.5):
    got = float(nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau))
    np.testing.assert_allclose(got, _np_nt_xent(z1, z2, tau), rtol=1e-5)


def test_nt_xent_hand_values():
  # Identical views, mutually orthogonal images: positive sim 1, negatives 0 -> log(e^{1/t} + 2B - 2) - 1/t.
  z = jnp.eye(4)
  t = 0.5
  expected = np.log(np.exp(1 / t) + 6) - 1 / t
  np.testing.assert_allclose(float(nt_xent(z, z, t)), expected, rtol=1e-6)


def test_simclr_trains_and_evaluates(tmp_path):
  c = cfg.base("simclr", global_size=28, channels=1, small_images=True)
  c.model.variant, c.model.small_stem = "resnet_tiny", False
  c.simclr.proj_hidden, c.simclr.proj_dim = 32, 16
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 3, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 256, 128, 64
  c.log_every_steps = c.checkpoint_every_steps = 3
  summary = train.train(c, str(tmp_path), verbose=False)
  assert np.isfinite(summary["nt_xent"]) and summary["nt_xent"] > 0
  assert 0.0 <= summary["knn_k20_t0.07_cosine"] <= 1.0
