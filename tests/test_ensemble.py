"""Paper 001 ensembling: initialisation, loss descent, the identity fixed point, widths, sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import sharding
from jssl.evaluators import ensemble


def _features(n, d, seed):
  return np.abs(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def test_init_is_normalised_mean_with_zero_padding():
  a, b = _features(10, 6, 0), _features(10, 4, 1)
  init = np.asarray(ensemble.mean_init([a, b]))
  na, nb = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
  expected = na + np.pad(nb, ((0, 0), (0, 2)))
  np.testing.assert_allclose(init, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)


def test_loss_decreases_with_members_of_different_widths():
  members = [_features(300, 16, 0), _features(300, 8, 1)]
  psi, mlps, losses = ensemble.fit(members, epochs=6, batch_size=64, lr=3e-3)
  assert psi.shape == (300, 16) and mlps[1]["w2"].shape == (8, 8)
  assert losses[-1] < 0.7 * losses[0]


def test_frozen_identity_mlp_keeps_the_initialisation_exactly():
  # phi(psi) = relu(relu(psi I) I) = psi needs psi >= 0 (post-ReLU features are). At psi = z the
  # cosine loss has zero gradient, but only up to rounding of |psi| and psi.z; Adam divides by
  # sqrt(v) + 1e-8 and would turn rounding noise of ~1e-8 into lr-sized steps. Rows with four
  # entries of 0.5 have norm exactly 1 and psi.z exactly 1, so the gradient is exactly zero.
  rng = np.random.default_rng(0)
  z = np.zeros((200, 16), np.float32)
  for row in z:
    row[rng.choice(16, 4, replace=False)] = 0.5
  identity = [dict(w1=jnp.eye(16), b1=jnp.zeros(16), w2=jnp.eye(16), b2=jnp.zeros(16))]
  psi, _, losses = ensemble.fit([z], epochs=3, batch_size=64, mlps=identity)
  np.testing.assert_array_equal(psi, z)
  np.testing.assert_array_equal(losses, 0.0)


def test_frozen_mlps_only_move_the_bank_and_sharding_agrees():
  members = [_features(101, 8, 0), _features(101, 8, 1)]
  _, mlps, _ = ensemble.fit(members, epochs=2, batch_size=32)
  before = jax.tree.map(np.asarray, mlps)
  one, _, _ = ensemble.fit(members, epochs=2, batch_size=32, mlps=mlps)
  eight, _, _ = ensemble.fit(members, epochs=2, batch_size=32, mlps=mlps, mesh=sharding.make_mesh(8))
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, mlps))
  assert not np.allclose(one, np.asarray(ensemble.mean_init(members)))
  np.testing.assert_allclose(one, eight, rtol=1e-5, atol=1e-6)


def test_signed_features_get_an_identity_output_and_keep_the_fixed_point():
  # A ViT's pre_logits is a LayerNorm output: signed. With the paper's output ReLU the
  # identity MLP would zero the negative half of the target; the automatic identity output
  # keeps psi = z exactly (same exactness argument as the post-ReLU test above).
  rng = np.random.default_rng(0)
  z = np.zeros((200, 16), np.float32)
  for row in z:
    row[rng.choice(16, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
  assert ensemble.output_activations([z, np.abs(z)]) == ("identity", "relu")
  # relu(psi + 1) - 1 = psi exactly for entries in {-0.5, 0, 0.5}: an identity through the hidden ReLU.
  identity = [dict(w1=jnp.eye(16), b1=jnp.ones(16), w2=jnp.eye(16), b2=-jnp.ones(16))]
  psi, _, losses = ensemble.fit([z], epochs=2, batch_size=64, mlps=identity)
  np.testing.assert_array_equal(psi, z)
  np.testing.assert_array_equal(losses, 0.0)
  _, _, relu_losses = ensemble.fit([z], epochs=1, batch_size=64, mlps=identity, output_activation="relu")
  assert relu_losses[0] > 0.2


def test_vit_member_fits_its_signed_features():
  import ml_collections
  from flax import nnx
  from jssl.models import vit
  cfg = ml_collections.ConfigDict(dict(name="vit", variant="Ti/4", image_size=8, depth=1, width=16, num_heads=2))
  model = vit.create(cfg, in_channels=1, rngs=nnx.Rngs(0))
  images = jax.random.normal(jax.random.PRNGKey(0), (256, 8, 8, 1))
  feats = np.asarray(model(images, train=False)[0])
  assert feats.min() < 0                       # LayerNorm output: signed
  members = [feats, _features(256, 8, 1)]       # a ViT member and a post-ReLU-like one
  assert ensemble.output_activations(members) == ("identity", "relu")
  _, _, auto = ensemble.fit(members, epochs=8, batch_size=64, lr=3e-3)
  _, _, relu = ensemble.fit(members, epochs=8, batch_size=64, lr=3e-3, output_activation="relu")
  assert auto[-1] < relu[-1]
  with pytest.raises(ValueError, match="output_activation"):
    ensemble.output_activations(members, "relu,relu,relu")
