"""model.remat: rematerialised ViT and Swin blocks give the same values and gradients, recomputed."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jssl.models import swin, vit

_MODELS = {
    "vit": (vit, dict(variant="Ti/4", image_size=16, width=32, num_heads=2, depth=2, drop_path=0.2)),
    "swin": (swin, dict(variant="tiny-test", depths=(2, 1), num_heads=(1, 2), window_size=2, drop_path=0.2)),
}


def _loss_and_grads(name: str, remat: str):
  """(loss, grads, jaxpr text) of a stochastic-depth forward pass, parameters seeded alike."""
  module, fields = _MODELS[name]
  model = module.create(ml_collections.ConfigDict(dict(fields, name=name, remat=remat)), in_channels=1,
                        rngs=nnx.Rngs(params=0))
  graphdef, params = nnx.split(model)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1))

  def loss_fn(params):
    out, inter = nnx.merge(graphdef, params)(x, train=True, rng=jax.random.PRNGKey(2))
    return jnp.sum(out ** 2) + jnp.mean(inter["tokens"])

  fn = jax.value_and_grad(loss_fn)
  loss, grads = jax.jit(fn)(params)
  return loss, grads, str(jax.make_jaxpr(fn)(params))


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_remat_keeps_loss_and_gradients(name):
  loss, grads, plain = _loss_and_grads(name, "none")
  loss_r, grads_r, remat = _loss_and_grads(name, "block")
  # The same float32 operations, only scheduled again in the backward pass.
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_r, grads)
  # The rematerialised blocks (JAX's checkpoint primitive, "remat2" in a jaxpr), whose forward
  # matmuls the backward pass runs again.
  assert "remat" in remat and "remat" not in plain
  assert remat.count("dot_general") > plain.count("dot_general")


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_bad_remat_is_one_sentence(name):
  module, fields = _MODELS[name]
  with pytest.raises(ValueError, match=r"^model\.remat='layer' must be one of none, block\.$"):
    module.create(ml_collections.ConfigDict(dict(fields, name=name, remat="layer")), in_channels=1,
                  rngs=nnx.Rngs(params=0))
