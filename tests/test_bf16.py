"""bfloat16 compute with float32 master weights is a tested path of every backbone.

`model.dtype = "bfloat16"` runs the backbone's matmuls and convolutions in bfloat16 while
parameters, their gradients and the optimiser state stay float32. Every backbone module
(those with `create`) is either trained in bfloat16 by a recipe of configs/ (each recipe
takes real steps in tests/test_recipes.py: the ResNet, RF-ResNet, ViT and Swin ImageNet
recipes use bfloat16) or by one recipe here: two shrunk train steps in bfloat16 keep every
floating state leaf float32, stay finite and move the parameters, and the first loss is
close to the float32 loss of the same initial state and batch.
"""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import recipes

# backbone module -> a Fashion-MNIST recipe that trains it (no recipe of configs/ runs them in bfloat16)
RECIPES = {"res_lh": "vicreg_res_lh_fmnist.py", "treenet": "treenet_fmnist.py"}


def _backbones() -> set[str]:
  names = set()
  for path in glob.glob(os.path.join(recipes.ROOT, "jssl", "models", "*.py")):
    with open(path) as f:
      if "\ndef create(" in f.read():
        names.add(os.path.splitext(os.path.basename(path))[0])
  return names


def test_every_backbone_takes_bfloat16_steps_in_the_suite():
  in_recipes = {c.model.name for c in map(recipes.load, recipes.TRAIN_CONFIGS) if c.model.get("dtype") == "bfloat16"}
  assert {"resnet", "rf_resnet", "swin", "vit"} <= in_recipes
  assert in_recipes | set(RECIPES) == _backbones()


def _config(name: str, dtype: str):
  c = recipes.shrink(recipes.load(os.path.join(recipes.ROOT, "configs", RECIPES[name])))
  c.model.dtype = dtype
  return c


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_bfloat16_steps_keep_float32_state_and_track_float32(name):
  config = _config(name, "bfloat16")
  assert config.model.name == name
  first, last, history = recipes.train_steps(config)
  floats = [x for x in jax.tree.leaves(last) if jnp.issubdtype(np.asarray(x).dtype, jnp.floating)]
  assert floats and all(np.asarray(x).dtype == np.float32 for x in floats)
  for metrics in history:
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics)), metrics
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(first["params"]), jax.tree.leaves(last["params"])))
  _, _, reference = recipes.train_steps(_config(name, "float32"), num_steps=1)
  # Same seed, same initial float32 parameters and batch: only the compute precision differs
  # (bfloat16 keeps 8 bits of mantissa, ~0.4% per rounding).
  np.testing.assert_allclose(history[0]["loss"], reference[0]["loss"], rtol=0.05)
