"""SimCLR (Chen et al., 2020): an encoder and MLP projector trained with NT-Xent
between two views of each image, the rest of the batch as negatives.

Paper defaults: ResNet-50, projector 2048 -> 2048 -> 128 (ReLU; the v1 paper's
g(h) = W2 relu(W1 h), the official code adds BatchNorm to its layers), the
representation read before the projector, temperature 0.1 with LARS at batch
4096 (0.5 at the small batches of the paper's CIFAR-10 appendix). There is no
momentum teacher: the trainer's EMA sees an empty teacher.
"""
import ml_collections
from flax import nnx
import jax

from jssl.losses.simclr import nt_xent
from jssl.methods import common
from jssl.models import heads


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.proj_hidden = 2048
  c.proj_dim = 128
  c.temperature = 0.5
  return c


class Student(nnx.Module):

  def __init__(self, encoder, projector):
    self.encoder, self.projector = encoder, projector


class NoTeacher(nnx.Module):
  """SimCLR has no teacher network; this empty module keeps the train state's shape."""


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """Returns (student, empty teacher)."""
  c = config.simclr
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  projector = heads.MLP(encoder.out_dim, c.proj_hidden, c.proj_dim, 2, batchnorm=True,
                        dtype=config.model.dtype, rngs=rngs)
  return Student(encoder, projector), NoTeacher()


def init_state(config) -> dict:
  del config
  return {}


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D])).

  Both views go through the encoder in one call, so BatchNorm statistics are
  computed over the 2B views together, as the official code's global BN does.
  """
  del teacher, rng, ctx
  x = views["global"]
  two, b = x.shape[:2]
  h, _ = student.encoder(x.reshape(two * b, *x.shape[2:]), train=True)
  z = student.projector(h, train=True)
  value = nt_xent(z[:b], z[b:], config.simclr.temperature)
  return value, (method_state, {"nt_xent": value}, jax.lax.stop_gradient(h[:b]))
