"""RES-L-H: shapes, named layers, the residual formula, config errors and a real VICReg train run."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jssl import config as cfg
from jssl import train
from jssl.models import res_lh


def _model(depth=2, width=8, in_channels=1):
  c = ml_collections.ConfigDict({"name": "res_lh", "depth": depth, "width": width, "dtype": "float32"})
  return res_lh.create(c, in_channels=in_channels, rngs=nnx.Rngs(0))


def test_shapes_and_layer_names():
  model = _model(depth=3, width=8, in_channels=1)
  assert model.out_dim == 8
  out, inter = model(jnp.ones((2, 28, 28, 1)), train=False)
  assert out.shape == (2, 8) and out.dtype == jnp.float32
  assert set(inter) == {"stem", "block_1", "block_2", "block_3", "local", "pre_logits"}
  assert inter["stem"].shape == (2, 7, 7, 8)
  for i in (1, 2, 3):
    assert inter[f"block_{i}"].shape == (2, 7, 7, 8)
  np.testing.assert_array_equal(inter["local"], inter["block_3"])
  np.testing.assert_allclose(inter["pre_logits"], inter["block_3"].mean(axis=(1, 2)), rtol=1e-6)
  out32, _ = _model(depth=1, width=4, in_channels=3)(jnp.ones((1, 32, 32, 3)), train=False)
  assert out32.shape == (1, 4)


def test_block_formula():
  # g(x) = relu(x + B2(C2(relu(B1(C1(x)))))); BatchNorm at init in eval mode is the identity
  # up to 1/sqrt(1 + eps), so the block is checked against lax convolutions.
  model = _model(depth=1, width=4)
  block = model.blocks[0]
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))

  def conv_bn(layer, v):
    y = jax.lax.conv_general_dilated(v, layer.conv.kernel[...], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y / np.sqrt(1 + 1e-5)

  expected = jax.nn.relu(x + conv_bn(block.conv2, jax.nn.relu(conv_bn(block.conv1, x))))
  np.testing.assert_allclose(block(x, train=False), expected, rtol=1e-5, atol=1e-5)


def test_errors():
  with pytest.raises(ValueError, match="model.depth"):
    _model(depth=0)
  with pytest.raises(ValueError, match="input must be"):
    _model()(jnp.ones((1, 28, 28, 3)), train=False)


def test_vicreg_trains_on_res_lh(tmp_path):
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=1, width=8)
  c.vicreg.expander_hidden, c.vicreg.expander_dim, c.vicreg.expander_layers = 32, 16, 2
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 2, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 128, 64, 64
  c.log_every_steps = c.checkpoint_every_steps = 2
  summary = train.train(c, str(tmp_path), verbose=False)
  assert np.isfinite(summary["vicreg"]) and summary["vicreg"] > 0
  assert 0.0 <= summary["knn_k20_t0.07_cosine"] <= 1.0
