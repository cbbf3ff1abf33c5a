"""iBOT-style baseline: patch loss against a numpy loop, patch center, device-count invariance."""
import jax
import jax.numpy as jnp
import numpy as np

from jssl.losses.ibot import patch_loss, update_patch_center
from jssl.methods import ibot
from tests import recipes
from tests.helpers import tiny_config
from tests.test_train import _batches, _run_steps


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def test_patch_loss_matches_numpy_loop():
  rng = np.random.default_rng(0)
  b, n, k = 3, 5, 7
  s, t = rng.normal(size=(b, n, k)), rng.normal(size=(b, n, k))
  center = rng.normal(size=k) * 0.1
  mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], bool)   # image 1: nothing masked
  st, tt = 0.1, 0.07
  per_image = []
  for i in range(b):
    terms = []
    for j in range(n):
      if mask[i, j]:
        q = _softmax((t[i, j] - center) / tt)
        logp = np.log(_softmax(s[i, j] / st))
        terms.append(-np.sum(q * logp))
    per_image.append(np.mean(terms) if terms else 0.0)
  expected = np.mean(per_image)        # the unmasked image counts in the denominator
  got = patch_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask), jnp.asarray(center),
                   student_temp=st, teacher_temp=tt)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Leading view axes flatten into images: [G, B, N, K] equals the [G * B, N, K] value.
  got2 = patch_loss(jnp.asarray(np.stack([s, s])), jnp.asarray(np.stack([t, t])), jnp.asarray(np.stack([mask, mask])),
                    jnp.asarray(center), student_temp=st, teacher_temp=tt)
  np.testing.assert_allclose(got2, expected, rtol=1e-5)


def test_patch_center_uses_every_teacher_patch():
  t = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
  center = np.ones(5, np.float32)
  got = update_patch_center(jnp.asarray(center), jnp.asarray(t), 0.9)
  np.testing.assert_allclose(got, 0.9 * center + 0.1 * t.reshape(-1, 5).mean(0), rtol=1e-6)


def _tiny_ibot():
  c = tiny_config("dino", vit=True)
  c.method = "ibot"
  c.ibot = ibot.default_config()
  c.ibot.out_dim = c.ibot.patch_out_dim = 64
  c.ibot.hidden_dim = 32
  c.ibot.bottleneck_dim = 16
  c.ibot.num_layers = 2
  c.ibot.mask_min_block = 2
  c.model.depth = 1         # one block is enough to check the step; keeps compilation short
  c.ibot.mask_prob = 1.0    # every image masked, so the patch loss is exercised on all of them
  del c["dino"]
  return c


def test_one_and_eight_devices_agree():
  config = _tiny_ibot()
  batches = _batches(config, 1)
  s1, m1 = _run_steps(config, 1, 1, batches)
  s8, m8 = _run_steps(config, 8, 1, batches)
  assert np.isfinite(m1[0]["loss"]) and m1[0]["ibot_patch_loss"] > 0
  np.testing.assert_allclose(m1[0]["mask_fraction"], m8[0]["mask_fraction"])
  np.testing.assert_allclose(m1[0]["loss"], m8[0]["loss"], rtol=1e-5, atol=1e-6)
  for key in ("params", "teacher_params", "method_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), s1[-1][key], s8[-1][key])
  assert not np.allclose(s1[-1]["method_state"]["center_patch"], 0)


def test_trains_on_swin():
  # Swin has no [CLS] token and a final grid coarser than its patch embedding:
  # the mask is drawn on the final grid, the pooled output stands in for [CLS].
  config = _tiny_ibot()
  config.model.name, config.model.variant, config.model.window_size = "swin", "tiny-test", 4
  config.aug.global_size = config.aug.eval_resize = config.model.image_size = 64   # a 2 x 2 final grid
  config.ibot.mask_ratio = (0.5, 0.5)
  _, last, history = recipes.train_steps(config, num_steps=1)
  assert np.isfinite(history[0]["loss"]) and history[0]["ibot_patch_loss"] > 0
  assert history[0]["mask_fraction"] > 0


def test_blockwise_masks_use_the_reference_min_block(monkeypatch):
  from jssl.data import masking
  blocks = []
  blockwise = masking.blockwise_mask

  def recording(*args, min_block, **kwargs):
    blocks.append(min_block)
    return blockwise(*args, min_block=min_block, **kwargs)

  monkeypatch.setattr(masking, "blockwise_mask", recording)
  config = _tiny_ibot()
  config.ibot.mask_min_block = ibot.default_config().mask_min_block    # -1: (min(h, w) // 3)**2
  ibot.make_masks(jax.random.PRNGKey(0), config, 2, 4, (14, 14))
  config.ibot.mask_min_block = 3
  ibot.make_masks(jax.random.PRNGKey(0), config, 2, 4, (14, 14))
  assert blocks == [16, 3]
