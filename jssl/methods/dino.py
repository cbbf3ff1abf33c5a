"""DINO (Caron et al., 2021): self-distillation with no labels.

The student sees every view (global and local crops), the EMA teacher only the
global ones; the loss is the cross-entropy between the teacher's centred,
sharpened distribution and the student's, over pairs of different views
(averaged over pairs, as in the official code). The center is method state,
updated after the loss from all teacher outputs of the global batch.
Defaults (METHODS.md): head 3 layers, 2048 hidden, 256 bottleneck, 65536
prototypes, weight-normalised last layer frozen for the first epoch (set by
the recipes through optim.frozen / optim.freeze_epochs), student T 0.1,
teacher T 0.04 with optional linear warm-up, center momentum 0.9.

Last-layer freezing matches PyTorch's Adam (optim.frozen_adam = "held"): the
frozen layer's moments and step count start when it unfreezes, so its first
update is a bias-corrected first step, while learning rate and weight decay
follow the global step. "running" keeps one Adam count for all parameters
(optax's default), whose first updates after unfreezing differ in size.
"""
import typing

import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.losses.dino import dino_loss, update_center
from jssl.models import heads
from jssl.methods import common


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.out_dim = 65536
  c.hidden_dim = 2048
  c.bottleneck_dim = 256
  c.num_layers = 3
  c.norm_last_layer = True
  c.head_batchnorm = False
  c.student_temp = 0.1
  c.teacher_temp = 0.04
  c.warmup_teacher_temp = 0.04
  c.warmup_teacher_temp_epochs = 0.0
  c.center_momentum = 0.9
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """DINO's optimisation recipe, applied by `jssl.config.base` (`common.dino_training_defaults`)."""
  common.dino_training_defaults(c, freeze_last_layer=True)


class Net(nnx.Module):

  def __init__(self, encoder, head):
    self.encoder, self.head = encoder, head

  def __call__(self, x, *, train, rng=None):
    """x: [V, B, S, S, C] -> (logits [V, B, K], features [V, B, D]).

    `rng` drives stochastic depth; the teacher is called without one.
    """
    logits, feats, _ = self.forward(x, train=train, rng=rng)
    return logits, feats

  def forward(self, x, *, train, rng=None):
    """As `__call__`, plus the encoder intermediates, each reshaped to [V, B, ...]
    (e.g. "local" [V, B, h, w, D]) for methods that also use them (CO-DINO)."""
    v, b = x.shape[:2]
    feats, inter = self.encoder(x.reshape((v * b,) + x.shape[2:]), train=train, rng=rng)
    logits = self.head(feats, train=train)
    inter = {k: t.reshape((v, b) + t.shape[1:]) for k, t in inter.items()}
    return logits.reshape(v, b, -1), feats.reshape(v, b, -1), inter


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  c = config.dino
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  head = heads.DINOHead(encoder.out_dim, c.out_dim, c.hidden_dim, c.bottleneck_dim, c.num_layers,
                        norm_last_layer=c.norm_last_layer, batchnorm=c.head_batchnorm,
                        dtype=config.model.dtype, rngs=rngs)
  student = Net(encoder, head)
  return student, nnx.clone(student)


def init_state(config) -> dict:
  return {"center": jnp.zeros((config.dino.out_dim,), jnp.float32)}


def teacher_temperature(config, ctx: common.StepContext) -> jax.Array:
  """Linear warm-up from warmup_teacher_temp to teacher_temp, then constant."""
  c = config.dino
  warm = c.warmup_teacher_temp_epochs * ctx.steps_per_epoch
  if warm <= 0:
    return jnp.asarray(c.teacher_temp, jnp.float32)
  frac = jnp.minimum(ctx.step / warm, 1.0)
  return c.warmup_teacher_temp + frac * (c.teacher_temp - c.warmup_teacher_temp)


class Outputs(typing.NamedTuple):
  """The student on every view and the teacher on the global views (G global, V views in all)."""
  student_logits: jax.Array   # [V, B, K], global views first
  student_features: jax.Array  # [G, B, D] student encoder outputs of the global views
  teacher_logits: jax.Array   # [G, B, K], gradients stopped
  student_inter: dict         # student encoder intermediates of the global views, [G, B, ...]
  teacher_inter: dict         # teacher encoder intermediates, [G, B, ...]


def forward(student, teacher, views, *, rng) -> Outputs:
  """views: {"global": [G, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  g_key, l_key = jax.random.split(rng)
  s_logits, s_feats, s_inter = student.forward(views["global"], train=True, rng=g_key)
  if "local" in views:
    l_logits, _ = student(views["local"], train=True, rng=l_key)
    s_logits = jnp.concatenate([s_logits, l_logits], axis=0)
  t_logits, _, t_inter = teacher.forward(views["global"], train=True)
  return Outputs(s_logits, s_feats, jax.lax.stop_gradient(t_logits), s_inter, t_inter)


def distill(c, student_logits, teacher_logits, center, temp):
  """DINO's loss over pairs of different views, the new center and metrics.

  c: the `config.dino` block; temp: the teacher temperature of this step.
  Returns (loss, new center [K], metrics).
  """
  value = dino_loss(student_logits, teacher_logits, center, student_temp=c.student_temp, teacher_temp=temp)
  t_prob = jax.nn.softmax((teacher_logits.astype(jnp.float32) - center) / temp, axis=-1)
  entropy = -jnp.mean(jnp.sum(t_prob * jnp.log(t_prob + 1e-12), axis=-1))
  new_center = update_center(center, teacher_logits, c.center_momentum)
  return value, new_center, {"dino_loss": value, "teacher_entropy": entropy, "teacher_temp": temp}


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views: {"global": [G, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  out = forward(student, teacher, views, rng=rng)
  temp = teacher_temperature(config, ctx)
  value, center, metrics = distill(config.dino, out.student_logits, out.teacher_logits, method_state["center"], temp)
  return value, ({"center": center}, metrics, jax.lax.stop_gradient(out.student_features[0]))
