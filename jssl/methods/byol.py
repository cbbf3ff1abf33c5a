"""BYOL (Grill et al., 2020): an online encoder + projector + predictor regresses
the EMA target's projection of another view.

Paper defaults (METHODS.md): projector and predictor MLPs 4096 -> 256 with
BatchNorm (`proj_layers` deepens the projector: 3 = two hidden layers), symmetrised 2 - 2 cos loss (the two directions summed, as in the
official code), LARS, EMA 0.99 -> 1. Each view goes through the networks on its
own, so BatchNorm statistics are per view as in the official implementation.
"""
import typing

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
  c.proj_layers = 2         # BYOL: one hidden layer; CO-SSL's ImageNet-1k 100-epoch BYOL family: 3
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
  if c.get("proj_layers", 2) < 2:
    raise ValueError(f"byol.proj_layers={c.proj_layers} must be >= 2 (at least one hidden layer).")
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  dtype = config.model.dtype
  projector = heads.MLP(encoder.out_dim, c.proj_hidden, c.proj_dim, c.get("proj_layers", 2), batchnorm=True, dtype=dtype, rngs=rngs)
  predictor = heads.MLP(c.proj_dim, c.pred_hidden, c.proj_dim, 2, batchnorm=True, dtype=dtype, rngs=rngs)
  student = Online(encoder, projector, predictor)
  teacher = Target(nnx.clone(encoder), nnx.clone(projector))
  return student, teacher


def init_state(config) -> dict:
  del config
  return {}


class Outputs(typing.NamedTuple):
  """What one pass of the views through both networks gives (V views)."""
  predictions: jax.Array   # [V, B, D] online predictions q(g(h))
  targets: jax.Array       # [V, B, D] target projections g'(h')
  features: list           # V online encoder outputs [B, F]
  online: list             # V dicts of online encoder intermediates (e.g. "local" [B, h, w, F])
  target: list             # V dicts of target encoder intermediates


def forward(student, teacher, x, *, rng=None) -> Outputs:
  """Each view through the online and the target network on its own (per-view BatchNorm).

  x: [V, B, S, S, C]. `rng`, when given, is folded with the view index and
  passed to the online encoder (stochastic depth); the target runs without it.
  Methods built on BYOL's networks (CO-BYOL) read the encoder intermediates
  from here instead of running the encoders again.
  """
  preds, targets, feats, online, target = [], [], [], [], []
  for v in range(x.shape[0]):
    kwargs = {} if rng is None else {"rng": jax.random.fold_in(rng, v)}
    h, inter = student.encoder(x[v], train=True, **kwargs)
    preds.append(student.predictor(student.projector(h, train=True), train=True))
    th, t_inter = teacher.encoder(x[v], train=True)
    targets.append(teacher.projector(th, train=True))
    feats.append(h)
    online.append(inter)
    target.append(t_inter)
  return Outputs(jnp.stack(preds), jnp.stack(targets), feats, online, target)


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D])).

  Only the global views are used: multi-crop local views, if configured, are
  ignored (there is no BYOL-mc here).
  """
  del rng, ctx, config
  out = forward(student, teacher, views["global"])
  value = byol_loss(out.predictions, out.targets)
  metrics = {"byol_loss": value}
  return value, (method_state, metrics, jax.lax.stop_gradient(out.features[0]))
