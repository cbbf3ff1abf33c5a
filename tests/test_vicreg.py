"""VICReg: the loss against a loop-by-loop reference of the paper's formulas, hand values,
1 vs 8 devices, and real train steps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jssl import config as cfg
from jssl import train
from jssl.losses import vicreg


def _np_terms(z1, z2, gamma=1.0, eps=1e-4):
  """The paper's s(Z, Z'), v(Z) + v(Z') and c(Z) + c(Z') (eqs. 1-5), one entry at a time."""
  z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
  n, d = z1.shape
  s = sum(sum((z1[i, k] - z2[i, k]) ** 2 for k in range(d)) for i in range(n)) / n

  def v(z):
    total = 0.0
    for j in range(d):
      mean = sum(z[i, j] for i in range(n)) / n
      var = sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1)
      total += max(0.0, gamma - np.sqrt(var + eps))
    return total / d

  def c(z):
    mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
    total = 0.0
    for a in range(d):
      for b in range(d):
        if a != b:
          cov = sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1)
          total += cov ** 2
    return total / d

  return s, v(z1) + v(z2), c(z1) + c(z2)


@pytest.mark.parametrize("scale", [0.3, 2.0])   # below and above the hinge target of 1
def test_vicreg_matches_reference(scale):
  rng = np.random.default_rng(0)
  z1, z2 = (scale * rng.normal(size=(2, 12, 6))).astype(np.float32)
  s, v, c = _np_terms(z1, z2)
  d = z1.shape[1]
  lam, mu, nu = 25.0, 5.0, 1.5
  got, terms = vicreg.vicreg_loss(jnp.asarray(z1), jnp.asarray(z2), inv_weight=lam, var_weight=mu,
                                  cov_weight=nu)
  # Official reductions (METHODS.md): invariance as an MSE (s / d), the variance term averaged over the views.
  np.testing.assert_allclose(float(terms["invariance"]), s / d, rtol=1e-5)
  np.testing.assert_allclose(float(terms["variance"]), v / 2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(float(terms["covariance"]), c, rtol=1e-5)
  np.testing.assert_allclose(float(got), lam * s / d + mu * v / 2 + nu * c, rtol=1e-5)
  paper, _ = vicreg.vicreg_loss(jnp.asarray(z1), jnp.asarray(z2), inv_weight=lam, var_weight=mu,
                                cov_weight=nu, reduction="paper")
  np.testing.assert_allclose(float(paper), lam * s + mu * v + nu * c, rtol=1e-5)


def test_vicreg_hand_values():
  # Collapsed views: no invariance or covariance, each dimension's std is sqrt(eps) = 0.01.
  z = jnp.ones((8, 4))
  loss, terms = vicreg.vicreg_loss(z, z)
  np.testing.assert_allclose(float(terms["variance"]), 0.99, rtol=1e-6)
  np.testing.assert_allclose(float(loss), 25 * 0.99, rtol=1e-6)
  # Uncorrelated dimensions with std sqrt(8/3) > 1: every term is zero.
  spread = 2.0 * jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  np.testing.assert_allclose(float(vicreg.vicreg_loss(spread, spread)[0]), 0.0, atol=1e-7)
  # Two identical dimensions of variance 4/3: c = 2 (4/3)^2 / 2.
  dup = jnp.array([[1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
  np.testing.assert_allclose(float(vicreg.covariance(dup)), 16 / 9, rtol=1e-6)
  # MSE of 1 per entry; the paper's s sums over the d = 3 dimensions.
  a, b = jnp.zeros((4, 3)), jnp.ones((4, 3))
  np.testing.assert_allclose(float(vicreg.invariance(a, b)), 1.0)
  with pytest.raises(ValueError, match="reduction"):
    vicreg.vicreg_loss(a, b, reduction="mean")


def test_vicreg_one_vs_eight_devices():
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(2, 16, 5)).astype(np.float32)
  fn = jax.jit(lambda a, b: vicreg.vicreg_loss(a, b)[0])
  single = float(fn(jnp.asarray(z1), jnp.asarray(z2)))
  devices = jax.devices()
  assert len(devices) == 8
  sharding = NamedSharding(Mesh(np.array(devices), ("data",)), P("data"))
  sharded = float(fn(jax.device_put(z1, sharding), jax.device_put(z2, sharding)))
  np.testing.assert_allclose(sharded, single, rtol=1e-5)


def test_vicreg_trains(tmp_path):
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.variant, c.model.small_stem = "resnet_tiny", False
  c.vicreg.expander_hidden, c.vicreg.expander_dim = 32, 16
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 2, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 128, 64, 64
  c.log_every_steps = c.checkpoint_every_steps = 2
  summary = train.train(c, str(tmp_path), verbose=False)
  for key in ("invariance", "variance", "covariance", "vicreg"):
    assert np.isfinite(summary[key]), key
  weighted = 25 * summary["invariance"] + 25 * summary["variance"] + summary["covariance"]
  np.testing.assert_allclose(summary["vicreg"], weighted, rtol=1e-5)
  assert summary["variance"] > 0
