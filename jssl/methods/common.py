"""Pieces several methods share: building the configured encoder, step context, DINO's optimisation recipe."""
import importlib
import typing

import jax
from flax import nnx


def create_encoder(config, *, in_channels: int, rngs: nnx.Rngs) -> nnx.Module:
  """The backbone named by config.model.name (the module name is the registry)."""
  module = importlib.import_module(f"jssl.models.{config.model.name}")
  return module.create(config.model, in_channels=in_channels, rngs=rngs)


def dino_training_defaults(c, *, freeze_last_layer: bool) -> None:
  """DINO's optimisation recipe (METHODS.md), which the iBOT and SOVE code inherit: AdamW
  lr 5e-4 x batch/256 with 10 warm-up epochs to min 1e-6, weight decay 0.04 -> 0.4 (cosine),
  each gradient tensor clipped to norm 3.0 on its own (the code's `clip_gradients`), EMA
  0.996 -> 1, the k-NN monitor on the teacher; with prototypes, their last layer frozen
  during epoch 1."""
  c.optim.update(name="adamw", lr=5e-4, min_lr=1e-6, warmup_epochs=10.0, weight_decay=0.04,
                 weight_decay_end=0.4, clip_grad=3.0, clip_mode="per_tensor")
  if freeze_last_layer:
    c.optim.update(frozen="last_layer", freeze_epochs=1.0)
  c.ema.base = 0.996
  c.eval.network = "teacher"


class StepContext(typing.NamedTuple):
  """What a method's schedules need besides the config: the traced step and the run's length;
  and the mesh the step runs on (None when the caller gives none), for the few pieces written
  per device with `jax.shard_map` (SOVE's sharded memory banks)."""
  step: jax.Array
  steps_per_epoch: int
  total_steps: int
  mesh: jax.sharding.Mesh | None = None
