"""VICReg (Bardes et al., 2022): an encoder and an expander trained with invariance,
variance and covariance terms between two views of each image (jssl.losses.vicreg).

Paper defaults: lambda = mu = 25, nu = 1; the expander is three linear layers of
8192 units, BatchNorm and ReLU after the first two; the representation is read
before the expander; BYOL's augmentations (build the config with
`cfg.base("vicreg", aug_recipe="byol")`); LARS, base lr 0.2 per 256 images,
weight decay 1e-6, 10 warm-up epochs. Paper 004 (METHODS.md, section 004) trains
RES-L-H backbones with a 2-layer projector (`vicreg.expander_layers = 2`) and SGD
lr 0.002, momentum 0.9, weight decay 1e-6, cosine, batch 256; its recipe is set
by the config that uses it, not here.

The loss follows the official code's reductions by default (`vicreg.reduction`,
see jssl/losses/vicreg.py). There is no momentum teacher: the trainer's EMA sees an
empty teacher. The three unweighted terms are logged as "invariance", "variance"
and "covariance".
"""
import jax
import ml_collections
from flax import nnx

from jssl.losses.vicreg import vicreg_loss
from jssl.methods import common
from jssl.models import heads


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.expander_hidden = 8192
  c.expander_dim = 8192
  c.expander_layers = 3
  c.inv_weight = 25.0    # lambda
  c.var_weight = 25.0    # mu
  c.cov_weight = 1.0     # nu
  c.gamma = 1.0          # target standard deviation of the variance hinge
  c.eps = 1e-4
  c.reduction = "official"   # official | paper (jssl/losses/vicreg.py)
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """VICReg's optimisation recipe, applied by `jssl.config.base`: LARS, base lr 0.2
  (per 256 images), weight decay 1e-6, 10 warm-up epochs, cosine to 0."""
  c.optim.update(name="lars", lr=0.2, min_lr=0.0, weight_decay=1e-6, warmup_epochs=10.0)


class Student(nnx.Module):

  def __init__(self, encoder, expander):
    self.encoder, self.expander = encoder, expander


class NoTeacher(nnx.Module):
  """VICReg has no teacher network; this empty module keeps the train state's shape."""


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """Returns (student, empty teacher)."""
  c = config.vicreg
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  expander = heads.MLP(encoder.out_dim, c.expander_hidden, c.expander_dim, c.expander_layers,
                       batchnorm=True, dtype=config.model.dtype, rngs=rngs)
  return Student(encoder, expander), NoTeacher()


def init_state(config) -> dict:
  del config
  return {}


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D])).

  Each view goes through the encoder and expander in its own call, so BatchNorm
  statistics are per view, as in the official code (which calls the backbone and
  projector once for x and once for y).
  """
  del teacher, rng, ctx
  c = config.vicreg
  x = views["global"]
  h1, _ = student.encoder(x[0], train=True)
  h2, _ = student.encoder(x[1], train=True)
  z1, z2 = student.expander(h1, train=True), student.expander(h2, train=True)
  value, terms = vicreg_loss(z1, z2, inv_weight=c.inv_weight, var_weight=c.var_weight,
                             cov_weight=c.cov_weight, gamma=c.gamma, eps=c.eps, reduction=c.reduction)
  return value, (method_state, {"vicreg": value, **terms}, jax.lax.stop_gradient(h1))
