"""Gradient clipping modes: each tensor's norm (DINO/iBOT/SOVE code) or the global norm."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import optim
from tests.helpers import tiny_config
from tests.recipes import ROOT, load


def _clip(mode, grads):
  config = tiny_config("byol")
  config.optim.name, config.optim.lr, config.optim.weight_decay = "sgd", 1.0, 0.0
  config.optim.momentum, config.optim.warmup_epochs, config.batch_size = 0.0, 0.0, 256
  config.optim.clip_grad, config.optim.clip_mode = 3.0, mode
  params = {k: jnp.zeros_like(v) for k, v in grads.items()}
  tx = optim.make_optimizer(config, params, total_steps=10, steps_per_epoch=1)
  updates, _ = tx.update(grads, tx.init(params), params)
  return {k: -np.asarray(v) for k, v in updates.items()}   # sgd at lr 1: the clipped gradient


def test_per_tensor_clips_each_tensor_on_its_own():
  grads = {"big": jnp.array([6.0, 0.0]), "small": jnp.array([0.0, 1.0])}
  per_tensor = _clip("per_tensor", grads)
  np.testing.assert_allclose(per_tensor["big"], [3.0 * 6 / (6 + 1e-6), 0.0], rtol=1e-6)
  np.testing.assert_allclose(per_tensor["small"], [0.0, 1.0], rtol=1e-6)
  glob = _clip("global", grads)
  scale = 3.0 / np.sqrt(37.0)
  np.testing.assert_allclose(glob["big"], [6 * scale, 0.0], rtol=1e-5)
  np.testing.assert_allclose(glob["small"], [0.0, scale], rtol=1e-5)
  with pytest.raises(ValueError, match="optim.clip_mode='norm' must be one of global, per_tensor"):
    _clip("norm", grads)


@pytest.mark.parametrize("name", ["dino_vits16_imagenet.py", "ibot_vits16.py", "sove_vitb.py", "sove_swint.py"])
def test_reference_recipes_clip_per_tensor(name):
  config = load(os.path.join(ROOT, "configs", name))
  assert (config.optim.clip_grad, config.optim.clip_mode) == (3.0, "per_tensor")
  assert config.optim.name == "adamw" and config.ema.base == 0.996
  assert config.optim.frozen == ("" if name.startswith("sove") else "last_layer")


def _frozen_updates(frozen_adam, steps=4):
  config = tiny_config("dino")       # AdamW, last_layer frozen for 1 epoch
  config.optim.weight_decay = config.optim.weight_decay_end = 0.0
  config.optim.clip_grad, config.optim.frozen_adam = 0.0, frozen_adam
  params = {"head": {"last_layer": {"v": jnp.ones((2, 3))}}, "w": jnp.ones((3,))}
  grads = {"head": {"last_layer": {"v": jnp.full((2, 3), 0.5)}}, "w": jnp.full((3,), -2.0)}
  tx = optim.make_optimizer(config, params, total_steps=10, steps_per_epoch=2)   # frozen for steps 0, 1
  state, out = tx.init(params), []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    out.append(jax.tree.map(np.asarray, updates))
  return out, optim.learning_rate(config, 10, 2)


def test_frozen_layer_starts_adam_when_it_unfreezes():
  # PyTorch's Adam skips parameters without gradient: at unfreezing the last layer takes a
  # bias-corrected first step, lr x sign(g) (constant gradients keep it so after).
  held, lr = _frozen_updates("held")
  for step in (0, 1):
    np.testing.assert_array_equal(held[step]["head"]["last_layer"]["v"], 0.0)
  for step in (2, 3):
    np.testing.assert_allclose(held[step]["head"]["last_layer"]["v"], -lr(step), rtol=1e-4)
    np.testing.assert_allclose(held[step]["w"], lr(step), rtol=1e-4)    # the rest is plain AdamW
  running, _ = _frozen_updates("running")
  assert not np.allclose(running[2]["head"]["last_layer"]["v"], -lr(2), rtol=1e-2)
  with pytest.raises(ValueError, match="optim.frozen_adam='x' must be held or running"):
    _frozen_updates("x")
