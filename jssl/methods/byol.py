"""BYOL (Grill et al., 2020): an online encoder + projector + predictor regresses
the EMA target's projection of another view.

Paper defaults (METHODS.md): projector and predictor MLPs 4096 -> 256 with
BatchNorm, symmetrised 2 - 2 cos loss (the two directions summed, as in the
official code), LARS, EMA 0.99 -> 1. Each view goes through the networks on its
own, so BatchNorm statistics are per view as in the official implementation.
"""
import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.losses.byol import byol_loss
from jssl.models import heads
from jssl.methods import common


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.proj_hidden = 4096
  c.proj_dim = 256
  c.pred_hidden = 4096
  return c


class Online(nnx.Module):

  def __init__(self, encoder, projector, predictor):
    self.encoder, self.projector, self.predictor = encoder, projector, predictor


class Target(nnx.Module):

  def __init__(self, encoder, projector):
    self.encoder, self.projector = encoder, projector


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """Returns (student, teacher); the teacher starts as a copy of the student's encoder and projector."""
  c = config.byol
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  dtype = config.model.dtype
  projector = heads.MLP(encoder.out_dim, c.proj_hidden, c.proj_dim, 2, batchnorm=True, dtype=dtype, rngs=rngs)
  predictor = heads.MLP(c.proj_dim, c.pred_hidden, c.proj_dim, 2, batchnorm=True, dtype=dtype, rngs=rngs)
  student = Online(encoder, projector, predictor)
  teacher = Target(nnx.clone(encoder), nnx.clone(projector))
  return student, teacher


def init_state(config) -> dict:
  del config
  return {}


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D]))."""
  del rng, ctx, config
  x = views["global"]
  preds, targets, feats = [], [], []
  for v in range(x.shape[0]):
    h, _ = student.encoder(x[v], train=True)
    preds.append(student.predictor(student.projector(h, train=True), train=True))
    th, _ = teacher.encoder(x[v], train=True)
    targets.append(teacher.projector(th, train=True))
    feats.append(h)
  value = byol_loss(jnp.stack(preds), jnp.stack(targets))
  metrics = {"byol_loss": value}
  return value, (method_state, metrics, jax.lax.stop_gradient(feats[0]))
