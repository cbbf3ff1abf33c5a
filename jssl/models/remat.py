"""Rematerialisation of transformer blocks (`config.model.remat`), shared by the ViT and Swin.

  cfg.remat = "none"    # keep every block's activations for the backward pass
  cfg.remat = "block"   # keep only each block's input; recompute its insides in the backward pass

"block" wraps each block call in `nnx.remat` (jax.checkpoint lifted to NNX
modules): the backward pass runs each block's forward again, about a third
more FLOPs per step, and in exchange the activations held between the passes
shrink to one [B, T, D] tensor per block, so a ViT-L/16 fits a larger batch
per device. The values and gradients are the same.
"""
from flax import nnx

MODES = ("none", "block")


def check(mode: str) -> str:
  """Returns `mode`; one sentence naming model.remat when it is not one of MODES."""
  if mode not in MODES:
    raise ValueError(f"model.remat={mode!r} must be one of {', '.join(MODES)}.")
  return mode


@nnx.remat
def _recomputed(block, x, rng):
  return block(x, rng)


def call(block: nnx.Module, x, rng, mode: str):
  """block(x, rng), rematerialised when mode is "block"."""
  return _recomputed(block, x, rng) if mode == "block" else block(x, rng)
