"""RES-L-H: a constant-width residual network (paper 004, appendix A.2; Galanti et al.).

A stem of two 2x2 stride-2 convolutions, each followed by BatchNorm and ReLU, then
L residual blocks g_i(x) = relu(x + BN(conv(relu(BN(conv(x)))))) whose 3x3
convolutions (stride 1, padding 1) all have H channels, then a global average pool.
Configured by

  cfg.name = "res_lh"
  cfg.depth = 5            # L, the number of residual blocks
  cfg.width = 250          # H, the channels of every convolution
  cfg.dtype = "float32"    # compute dtype, "float32" or "bfloat16"

Where the paper is silent, jssl chooses (METHODS.md, section 004): both stem
convolutions output H channels (so every block's shortcut is the identity) and use
no padding (28 px -> 14 -> 7); convolutions have no bias (BatchNorm follows each);
BatchNorm scales start at 1 (PyTorch's default, the paper's framework); the output
is the global average pool of the last block, as jssl's ResNet.

Precision as jssl/models/resnet.py: parameters and BatchNorm in float32, convolutions
in the compute dtype, the pooled output averaged and returned in float32.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# He-normal over fan-out, as jssl's ResNet initialises its convolutions.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvBN(nnx.Module):
  """A bias-free convolution with explicit symmetric padding, then BatchNorm (no activation)."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
               padding: int, *, dtype: Any, rngs: nnx.Rngs):
    self.conv = nnx.Conv(
      in_channels, out_channels, (kernel_size, kernel_size), strides=stride,
      padding=((padding, padding), (padding, padding)), use_bias=False, dtype=dtype,
      kernel_init=_CONV_INIT, rngs=rngs)
    self.bn = nnx.BatchNorm(out_channels, momentum=0.9, epsilon=1e-5, dtype=jnp.float32, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.bn(self.conv(x), use_running_average=not train).astype(self.dtype)


class Block(nnx.Module):
  """relu(x + BN(conv3x3(relu(BN(conv3x3(x)))))) at constant width."""

  def __init__(self, channels: int, *, dtype: Any, rngs: nnx.Rngs):
    self.conv1 = ConvBN(channels, channels, 3, 1, 1, dtype=dtype, rngs=rngs)
    self.conv2 = ConvBN(channels, channels, 3, 1, 1, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = jax.nn.relu(self.conv1(x, train=train))
    return jax.nn.relu(x + self.conv2(y, train=train))


class ResLH(nnx.Module):
  """Stem, L constant-width residual blocks, global average pool.

  Attributes:
    out_dim: H, the width of the pooled output and of every block's map.
    depth: L.
  """

  def __init__(self, *, depth: int, width: int, in_channels: int, dtype: str = "float32",
               rngs: nnx.Rngs):
    if depth < 1:
      raise ValueError(f"model.depth must be a positive integer (the L of RES-L-H), got {depth}.")
    if width < 1:
      raise ValueError(f"model.width must be a positive integer (the H of RES-L-H), got {width}.")
    if dtype not in _DTYPES:
      raise ValueError(f"model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    self.dtype = _DTYPES[dtype]
    self.in_channels = in_channels
    self.depth = depth
    self.stem1 = ConvBN(in_channels, width, 2, 2, 0, dtype=self.dtype, rngs=rngs)
    self.stem2 = ConvBN(width, width, 2, 2, 0, dtype=self.dtype, rngs=rngs)
    self.blocks = nnx.List([Block(width, dtype=self.dtype, rngs=rngs) for _ in range(depth)])
    self.out_dim = width

  def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None = None,
               **unused_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images.

    Args:
      x: images [B, S, S, C] (any float dtype; cast to the compute dtype).
      train: BatchNorm batch statistics (and running-average updates) or running ones.
      mask: must be None (patch masking is a ViT feature).
      **unused_kwargs: accepted so callers can pass every backbone the same keywords.

    Returns:
      (output, intermediates): output is the float32 global average pool [B, H];
      intermediates holds "stem" (after the two stride-2 convolutions), "block_1" ..
      "block_L" (each block's output [B, S/4, S/4, H], compute dtype), "local" (the
      last block's map) and "pre_logits" (= output).
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"RES-L-H input must be [B, H, W, {self.in_channels}], got {x.shape}.")
    if mask is not None:
      raise ValueError("RES-L-H does not support `mask`; use a ViT backbone.")
    x = x.astype(self.dtype)
    x = jax.nn.relu(self.stem1(x, train=train))
    x = jax.nn.relu(self.stem2(x, train=train))
    intermediates = {"stem": x}
    for i, block in enumerate(self.blocks):
      x = block(x, train=train)
      intermediates[f"block_{i + 1}"] = x
    intermediates["local"] = x
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    intermediates["pre_logits"] = pooled
    return pooled, intermediates


def create(cfg: ml_collections.ConfigDict, *, in_channels: int, rngs: nnx.Rngs) -> ResLH:
  """Builds the RES-L-H that `cfg` (the `config.model` block) describes; RES-5-250 by default."""
  return ResLH(depth=int(cfg.get("depth", 5)), width=int(cfg.get("width", 250)),
               in_channels=in_channels, dtype=cfg.get("dtype", "float32"), rngs=rngs)
