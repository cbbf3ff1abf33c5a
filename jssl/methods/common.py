"""Pieces several methods share: building the configured encoder, step context."""
import importlib
import typing

import jax
from flax import nnx


def create_encoder(config, *, in_channels: int, rngs: nnx.Rngs) -> nnx.Module:
  """The backbone named by config.model.name (the module name is the registry)."""
  module = importlib.import_module(f"jssl.models.{config.model.name}")
  return module.create(config.model, in_channels=in_channels, rngs=rngs)


class StepContext(typing.NamedTuple):
  """What a method's schedules need besides the config: the traced step and the run's length."""
  step: jax.Array
  steps_per_epoch: int
  total_steps: int
