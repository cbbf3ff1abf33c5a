"""ResNet backbones (He et al., 2016) for self-supervised pre-training.

The network is the torchvision-style ResNet v1.5 (the stride of a bottleneck block
sits on its 3x3 convolution) without the classification layer: the output is the
global average pool of the last stage. Configured by

  cfg.name = "resnet"
  cfg.variant = "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152"
                | "resnet_tiny"
  cfg.small_stem = False   # True: 3x3 stride-1 stem and no max-pool (28-32 px images)
  cfg.stem_pool = True     # False: drop the 3x3 stride-2 max-pool after the 7x7 stride-2 stem
                           # (28 px on CPU: stage 1 at 14 x 14 instead of 7 x 7)
  cfg.width = 1            # channel multiplier (wide ResNets, e.g. SimCLR's 2x/4x)
  cfg.widths = ()          # optional per-stage base widths replacing the variant's, e.g.
                           # (16, 32, 64, 512) for a wider output at little cost on 28 px
  cfg.stage_sizes = ()     # optional blocks per stage replacing the variant's, e.g. (1, 1, 1, 1)
  cfg.dtype = "float32"    # compute dtype, "float32" or "bfloat16"

Precision: parameters and BatchNorm statistics are float32 whatever `cfg.dtype` says.
Convolutions run in the compute dtype; BatchNorm normalises in float32 and casts its
result back, so the per-stage feature maps (and "local") come out in the compute dtype,
while the pooled output ("pre_logits") is averaged in float32 and returned as float32.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

# (block kind, blocks per stage, base widths per stage). Every preset is decoded here.
_VARIANTS = {
  "resnet_tiny": ("basic", (1, 1, 1, 1), (16, 32, 64, 128)),
  "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
  "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
  "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512)),
  "resnet101": ("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512)),
  "resnet152": ("bottleneck", (3, 8, 36, 3), (64, 128, 256, 512)),
}

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# He-normal over fan-out, as torchvision initialises ResNet convolutions.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _compute_dtype(name: str) -> Any:
  if name not in _DTYPES:
    raise ValueError(
      f"model.dtype must be one of {sorted(_DTYPES)}, got {name!r}.")
  return _DTYPES[name]


class ConvBN(nnx.Module):
  """A bias-free convolution followed by BatchNorm (no activation).

  Padding is symmetric (k // 2 on every side), as in torchvision, rather than
  XLA's "SAME", which pads stride-2 convolutions asymmetrically.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
               stride: int = 1, *, zero_scale: bool = False, dtype: Any,
               rngs: nnx.Rngs):
    pad = kernel_size // 2
    self.conv = nnx.Conv(
      in_channels, out_channels, (kernel_size, kernel_size), strides=stride,
      padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
      kernel_init=_CONV_INIT, rngs=rngs)
    # dtype=float32: BatchNorm statistics and normalisation stay in float32 even
    # when the convolution runs in bfloat16.
    self.bn = nnx.BatchNorm(
      out_channels, momentum=0.9, epsilon=1e-5, dtype=jnp.float32,
      scale_init=(nnx.initializers.zeros if zero_scale
                  else nnx.initializers.ones),
      rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[B, H, W, C_in] -> [B, H / stride, W / stride, C_out] in the compute dtype."""
    y = self.bn(self.conv(x), use_running_average=not train)
    return y.astype(self.dtype)


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

  expansion = 1

  def __init__(self, in_channels: int, channels: int, stride: int, *,
               dtype: Any, rngs: nnx.Rngs):
    self.conv1 = ConvBN(in_channels, channels, 3, stride, dtype=dtype, rngs=rngs)
    # Zero-init of the last BN scale makes every block start as the identity,
    # which helps large-batch training (Goyal et al., 2017).
    self.conv2 = ConvBN(channels, channels, 3, zero_scale=True, dtype=dtype,
                        rngs=rngs)
    needs_projection = stride != 1 or in_channels != channels
    self.shortcut = (ConvBN(in_channels, channels, 1, stride, dtype=dtype,
                            rngs=rngs) if needs_projection else None)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[B, H, W, C_in] -> [B, H / stride, W / stride, channels]."""
    y = jax.nn.relu(self.conv1(x, train=train))
    y = self.conv2(y, train=train)
    skip = x if self.shortcut is None else self.shortcut(x, train=train)
    return jax.nn.relu(y + skip)


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a projection shortcut."""

  expansion = 4

  def __init__(self, in_channels: int, channels: int, stride: int, *,
               dtype: Any, rngs: nnx.Rngs):
    out_channels = channels * self.expansion
    self.conv1 = ConvBN(in_channels, channels, 1, dtype=dtype, rngs=rngs)
    self.conv2 = ConvBN(channels, channels, 3, stride, dtype=dtype, rngs=rngs)
    self.conv3 = ConvBN(channels, out_channels, 1, zero_scale=True, dtype=dtype,
                        rngs=rngs)
    needs_projection = stride != 1 or in_channels != out_channels
    self.shortcut = (ConvBN(in_channels, out_channels, 1, stride, dtype=dtype,
                            rngs=rngs) if needs_projection else None)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[B, H, W, C_in] -> [B, H / stride, W / stride, 4 * channels]."""
    y = jax.nn.relu(self.conv1(x, train=train))
    y = jax.nn.relu(self.conv2(y, train=train))
    y = self.conv3(y, train=train)
    skip = x if self.shortcut is None else self.shortcut(x, train=train)
    return jax.nn.relu(y + skip)


class ResNet(nnx.Module):
  """A ResNet trunk: stem, four stages, global average pool.

  Attributes:
    out_dim: width of the pooled output (and of the last stage's feature map).
  """

  def __init__(self, *, block: str, stage_sizes: tuple[int, ...],
               widths: tuple[int, ...], in_channels: int,
               small_stem: bool = False, stem_pool: bool = True, width: int = 1,
               dtype: str = "float32", rngs: nnx.Rngs):
    """Builds the network.

    Args:
      block: "basic" or "bottleneck".
      stage_sizes: number of blocks in each of the four stages.
      widths: base channel count of each stage (before the multiplier and, for
        bottleneck blocks, before the 4x expansion).
      in_channels: channels of the input images.
      small_stem: 3x3 stride-1 stem conv and no max-pool (CIFAR-style, for
        28-32 px images) instead of the 7x7 stride-2 conv and 3x3 stride-2 pool.
      width: channel multiplier applied to the stem and every stage.
      dtype: compute dtype name, "float32" or "bfloat16".
      rngs: initialisation randomness.
    """
    if block not in ("basic", "bottleneck"):
      raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}.")
    if width < 1:
      raise ValueError(f"model.width must be a positive integer, got {width}.")
    block_cls = BasicBlock if block == "basic" else Bottleneck
    self.dtype = _compute_dtype(dtype)
    self.in_channels = in_channels
    self.small_stem = small_stem
    self.stem_pool = stem_pool and not small_stem

    stem_channels = widths[0] * width
    self.stem = ConvBN(in_channels, stem_channels, 3 if small_stem else 7,
                       1 if small_stem else 2, dtype=self.dtype, rngs=rngs)
    stages = []
    channels_in = stem_channels
    for i, (num_blocks, base) in enumerate(zip(stage_sizes, widths)):
      blocks = []
      for j in range(num_blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block_cls(channels_in, base * width, stride,
                                dtype=self.dtype, rngs=rngs))
        channels_in = base * width * block_cls.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.out_dim = channels_in

  def __call__(self, x: jax.Array, *, train: bool,
               mask: jax.Array | None = None,
               **unused_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images.

    Args:
      x: images [B, H, W, C] (any float dtype; cast to the compute dtype).
      train: use batch statistics in BatchNorm and update the running ones
        (True), or use the running statistics (False).
      mask: must be None; patch masking is a ViT feature, and silently
        ignoring a mask would corrupt a masked-modelling method.
      **unused_kwargs: accepted so that callers can pass the same keywords to
        every backbone (e.g. `rng`); ignored here.

    Returns:
      (output, intermediates): output is the float32 global average pool
      [B, out_dim]; intermediates holds "stage1".."stage4" ([B, h_i, w_i, c_i],
      compute dtype), "local" (the last stage's map [B, h, w, out_dim], the
      pre-pooling local representations) and "pre_logits" (= output).
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
        f"ResNet input must be [B, H, W, {self.in_channels}], got {x.shape}.")
    if mask is not None:
      raise ValueError("ResNet does not support `mask`; use a ViT backbone.")
    x = x.astype(self.dtype)
    x = jax.nn.relu(self.stem(x, train=train))
    if self.stem_pool:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    intermediates = {}
    for i, stage in enumerate(self.stages):
      for block in stage:
        x = block(x, train=train)
      intermediates[f"stage{i + 1}"] = x
    intermediates["local"] = x
    # Averaging in float32 avoids bf16 rounding in a sum over h * w positions.
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    intermediates["pre_logits"] = pooled
    return pooled, intermediates


def create(cfg: ml_collections.ConfigDict, *, in_channels: int,
           rngs: nnx.Rngs) -> ResNet:
  """Builds the ResNet that `cfg` (the `config.model` block) describes."""
  variant = cfg.get("variant", None)
  if variant not in _VARIANTS:
    raise ValueError(
      f"model.variant must be one of {sorted(_VARIANTS)}, got {variant!r}.")
  block, stage_sizes, widths = _VARIANTS[variant]
  sizes = tuple(cfg.get("stage_sizes", None) or ())
  if sizes:
    if len(sizes) != len(stage_sizes) or not all(isinstance(n, int) and n > 0 for n in sizes):
      raise ValueError(f"model.stage_sizes={sizes!r} must be {len(stage_sizes)} positive integers, "
                       f"the blocks of each stage of {variant}.")
    stage_sizes = sizes
  custom = tuple(cfg.get("widths", None) or ())
  if custom:
    if len(custom) != len(stage_sizes) or not all(isinstance(w, int) and w > 0 for w in custom):
      raise ValueError(f"model.widths={custom!r} must be {len(stage_sizes)} positive integers, "
                       f"one per stage of {variant}.")
    widths = custom
  return ResNet(
    block=block, stage_sizes=stage_sizes, widths=widths,
    in_channels=in_channels, small_stem=bool(cfg.get("small_stem", False)),
    stem_pool=bool(cfg.get("stem_pool", True)),
    width=int(cfg.get("width", 1)), dtype=cfg.get("dtype", "float32"),
    rngs=rngs)
