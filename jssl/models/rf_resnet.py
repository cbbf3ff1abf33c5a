"""RF-ResNet (paper 003, CO-SSL, section 3.2): ResNets with a bounded receptive field.

An RF-ResNet is jssl's ResNet (jssl/models/resnet.py, torchvision's v1.5 layout) with
three changes, so that every local (pre-pooling) representation sees only a bounded
patch of the image, with about the parameters of the ResNet it replaces:

1. Bounded receptive field. Every 3x3 convolution becomes a 1x1 convolution of
   stride 1, except the *first 3x3 convolution of the first and of the middle block*
   of each of the four stages. The stem convolution is kept as it is. Precisely, in
   a stage of n blocks numbered 0 .. n-1, the "spatial" blocks are block 0 and block
   n // 2 (for even n, the later of the two central blocks):

     n = 1: block 0 only (first and middle coincide: one 3x3 in the stage)
     n = 2: blocks 0, 1       n = 3: blocks 0, 1       n = 4: blocks 0, 2
     n = 5: blocks 0, 2       n = 6: blocks 0, 3       n = 7: blocks 0, 3

   In a basic block the kept 3x3 is its first convolution (its second becomes
   1x1); a bottleneck block has one 3x3, between the 1x1 reduce and expand, and
   that is the one kept. Every other block is made only of 1x1 convolutions. The
   stride of a stage sits on its first block's 3x3 (and the block's 1x1 projection
   shortcut); the middle block's 3x3 always has stride 1. The receptive field does
   not depend on which block is the middle one, only on whether it differs from
   the first: it is the same for every n >= 2 (the paper's Fig. 2 says n > 2) and
   smaller for n = 1.
   Switches: `max_pool` (the paper's m: keep the 3x3 stride-2 max-pool after
   the stem) and `strides` (the paper's s, s', s'', "the strides of the 3x3
   convolution in the second to fourth blocks", read as those of the first
   blocks of stages 2-4; stage 1 has stride 1 as in every ResNet).
2. A residual MLP after the global average pool with the structure of one block
   of the network, its convolutions as dense layers on the pooled vector C:
   bottleneck C -> C/4 -> C/4 -> C, basic C -> C -> C, each layer bias-free and
   followed by BatchNorm, ReLU between layers, then relu(x + mlp(x)). Its last
   BatchNorm scale starts at zero, as in every jssl ResNet block, so the MLP
   starts as the identity on the (non-negative) pooled features. The paper
   evaluates both sides: "pooled" (the averaged bag of patch representations)
   and "pre_logits" (after the MLP, the global representation fed to heads).
   `mlp=False` drops it (the paper's "RF-ResNetv0").
3. Parameter matching. 1x1 convolutions have fewer parameters than 3x3 ones, so
   RF-ResNet50 adds one (all-1x1) block to stage 4 (`extra_block`; the paper:
   23.7M vs 23.5M, 21.4M without the MLP) and RF-ResNet18 doubles every stage
   to 4 blocks (8M vs 11M). Extra 1x1 blocks do not change the receptive field.
   Counted here: RF-ResNet50 23,749,696 parameters (21,384,256 without the MLP)
   against ResNet-50's 23,508,032 (+1.03%), the paper's 23.7M and 21.4M to its
   rounding; RF-ResNet18 7,524,928 (6,998,592) against ResNet-18's 11,176,512.

Receptive field (`receptive_field`): the standard formula (Araujo et al., 2019;
the paper's appendix B.1) along the longest path, the chain of main-branch
convolutions: r <- r + (k - 1) * jump, then jump <- jump * stride, from r = jump = 1.
The shortcuts (1x1) never widen it. With it, torchvision's ResNet-50 (7x7/2 stem,
max-pool, stride on the 3x3 of the first block of stages 2-4) has r = 427 px; the
paper quotes "approximately 425". The presets, decoded in `PRESETS` only and named
by their computed receptive field (tests check each name):

  preset            block       blocks     stem        m  s,s',s''  RF   map (image)
  rf99_resnet50     bottleneck  3,4,6,3+1  7x7/2       0  2,2,2     99   14x14 (224)
  rf67_resnet50     bottleneck  3,4,6,3+1  7x7/2       0  2,1,2     67   28x28 (224)
  rf163_resnet50    bottleneck  3,4,6,3+1  7x7/2       1  2,2,1     163  14x14 (224)
  rf195_resnet50    bottleneck  3,4,6,3+1  7x7/2       1  2,2,2     195   7x7  (224)
  rf29_resnet18     basic       4,4,4,4    3x3/1       0  1,2,2     29   16x16 (64)
  rf13_resnet_tiny  basic       1,1,1,1    3x3/1       0  1,2,2     13    7x7  (28)

How the paper's names were decoded. RF99-ResNet50: of the 16 settings of
(m, s, s', s'') on ResNet-50's 7x7/2 stem, m = 0 with (2, 2, 2) and m = 1 with
(1, 2, 1) both give 99;
the paper uses 196 local representations at 224 px (Table 5, n^2 = 196) and, to
match ResNet-50's 7x7, subsamples them by 2 (appendix A.5), so its map is 14x14 and
its output stride 16: m = 0, (2, 2, 2). The backbone cost agrees: XLA counts 3.3x
ResNet-50's FLOPs for it at 224 px (the paper's Table 11: 106 / 32.8 = 3.2x), and
4.9x for the other setting. Fig. 3A's other RF-ResNet50s: 67 and 163 each have
a single setting; "193" is reached by none, and the largest setting
(m = 1, all strides 2) gives 195 by the formula, 2 px above the paper's number just
as 427 is for ResNet-50, so it is named rf195 here. RF29-ResNet18 (Tiny-ImageNet,
64 px) uses He et al.'s small-image stem (3x3 stride-1 convolution, no max-pool);
there strides (1, 2, 2) and (2, 1, 1) both give 29 and the paper does not say which:
jssl takes (1, 2, 2), whose 16x16 map and output stride 4 (1/16 of the image side)
mirror RF99-ResNet50's 14x14 and 16/224. rf13_resnet_tiny is jssl's CPU-sized
member for 28 px Fashion-MNIST: (13 / 28)^2 ~ 0.2 of the image, the portion the
paper picks for both of its presets ((99 / 224)^2 ~ (29 / 64)^2 ~ 0.2).

Configured by

  cfg.name = "rf_resnet"
  cfg.variant = "rf99_resnet50"  # a key of PRESETS
  cfg.dtype = "float32"          # compute dtype, "float32" or "bfloat16"
  # Optional overrides of the preset (absent or None: the preset's value); a
  # variant's name then no longer states its receptive field (model.receptive_field does):
  cfg.block = "bottleneck"       # "basic" | "bottleneck"
  cfg.stage_sizes = (3, 4, 6, 3) # blocks per stage, before the extra block
  cfg.widths = (64, 128, 256, 512)  # base channels per stage (x4 at a bottleneck's output)
  cfg.stem = "imagenet"          # "imagenet": 7x7 stride 2 | "small": 3x3 stride 1
  cfg.max_pool = False           # m: 3x3 stride-2 max-pool after the stem
  cfg.strides = (2, 2, 2)        # s, s', s'': strides of stages 2, 3, 4
  cfg.extra_block = True         # one more (1x1-only) block in stage 4
  cfg.mlp = True                 # residual MLP after pooling

The ResNet's `small_stem` and `stem_pool`, which the base config sets for every
model, are not read: a preset fixes its stem, so a variant's name keeps its meaning.

Precision as jssl's ResNet: parameters and BatchNorm in float32, convolutions and
dense layers in the compute dtype; stage maps ("local") come out in the compute
dtype, "pooled" and "pre_logits" in float32.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl.models import resnet

_BLOCKS = ("basic", "bottleneck")
_STEMS = {"imagenet": (7, 2), "small": (3, 1)}   # stem -> (kernel, stride)
_POOL = (3, 2)                                     # max-pool (kernel, stride)
_DENSE_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def middle_block(num_blocks: int) -> int:
  """Index of a stage's middle block: n // 2 (the first block itself when n = 1)."""
  return num_blocks // 2


def spatial_blocks(num_blocks: int) -> tuple[int, ...]:
  """Indices of the blocks of an n-block stage that keep a 3x3 convolution."""
  return tuple(sorted({0, middle_block(num_blocks)}))


def conv_path(*, block: str, stage_sizes: tuple[int, ...], strides: tuple[int, ...] = (2, 2, 2),
              stem: str = "imagenet", max_pool: bool = True,
              bounded: bool = True) -> list[tuple[int, int]]:
  """(kernel, stride) of each layer on the longest input-to-"local" path, in order.

  The path is the stem, the max-pool if any, then every block's main-branch
  convolutions. `stage_sizes` counts every block of a stage (extra block included).
  `bounded=False` keeps all 3x3 convolutions: the plain ResNet of the same shape.
  """
  if block not in _BLOCKS:
    raise ValueError(f"model.block must be one of {_BLOCKS}, got {block!r}.")
  if stem not in _STEMS:
    raise ValueError(f"model.stem must be one of {sorted(_STEMS)}, got {stem!r}.")
  path = [_STEMS[stem]]
  if max_pool:
    path.append(_POOL)
  for num_blocks, stage_stride in zip(stage_sizes, (1,) + tuple(strides)):
    spatial = spatial_blocks(num_blocks)
    for j in range(num_blocks):
      stride = stage_stride if j == 0 else 1
      k = 3 if (j in spatial or not bounded) else 1
      if block == "basic":
        path += [(k, stride), (1 if bounded else 3, 1)]
      else:
        path += [(1, 1), (k, stride), (1, 1)]
  return path


def receptive_field(*, block: str, stage_sizes: tuple[int, ...],
                    strides: tuple[int, ...] = (2, 2, 2), stem: str = "imagenet",
                    max_pool: bool = True, bounded: bool = True) -> int:
  """Side in pixels of the receptive field of one unit of the last stage's map.

  r = 1 + sum_l (k_l - 1) * prod_{i < l} s_i over `conv_path(...)` (Araujo et al.,
  2019; paper 003, appendix B.1). Arguments as `conv_path`; e.g. torchvision's
  ResNet-50 is `receptive_field(block="bottleneck", stage_sizes=(3, 4, 6, 3),
  bounded=False)` = 427.
  """
  r, jump = 1, 1
  for kernel, stride in conv_path(block=block, stage_sizes=stage_sizes, strides=strides,
                                  stem=stem, max_pool=max_pool, bounded=bounded):
    r += (kernel - 1) * jump
    jump *= stride
  return r


@dataclasses.dataclass(frozen=True)
class Spec:
  """One RF-ResNet: the switches of the paper's Fig. 2 plus widths and the MLP."""
  block: str
  stage_sizes: tuple[int, int, int, int]
  widths: tuple[int, int, int, int]
  stem: str
  max_pool: bool
  strides: tuple[int, int, int]
  extra_block: bool
  mlp: bool = True

  def __post_init__(self):
    if self.block not in _BLOCKS:
      raise ValueError(f"model.block must be one of {_BLOCKS}, got {self.block!r}.")
    if self.stem not in _STEMS:
      raise ValueError(f"model.stem must be one of {sorted(_STEMS)}, got {self.stem!r}.")
    for name in ("max_pool", "extra_block", "mlp"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"model.{name} must be True or False, got {getattr(self, name)!r}.")
    for name, value, size in (("stage_sizes", self.stage_sizes, 4), ("widths", self.widths, 4),
                              ("strides", self.strides, 3)):
      if len(value) != size or any(not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"model.{name} must be {size} positive integers, got {value!r}.")

  @property
  def blocks_per_stage(self) -> tuple[int, ...]:
    """Blocks actually built in each stage (the extra block counted in stage 4)."""
    return self.stage_sizes[:3] + (self.stage_sizes[3] + int(self.extra_block),)

  @property
  def receptive_field(self) -> int:
    return receptive_field(block=self.block, stage_sizes=self.blocks_per_stage,
                           strides=self.strides, stem=self.stem, max_pool=self.max_pool)

  @property
  def output_stride(self) -> int:
    """Input pixels between neighbouring units of the last stage's map."""
    stride = _STEMS[self.stem][1] * (_POOL[1] if self.max_pool else 1)
    for s in self.strides:
      stride *= s
    return stride


_R50 = dict(block="bottleneck", stage_sizes=(3, 4, 6, 3), widths=(64, 128, 256, 512),
            stem="imagenet", extra_block=True)
# Every preset is decoded here; the module docstring says how the paper's names were read.
PRESETS = {
  "rf99_resnet50": Spec(**_R50, max_pool=False, strides=(2, 2, 2)),
  "rf67_resnet50": Spec(**_R50, max_pool=False, strides=(2, 1, 2)),
  "rf163_resnet50": Spec(**_R50, max_pool=True, strides=(2, 2, 1)),
  "rf195_resnet50": Spec(**_R50, max_pool=True, strides=(2, 2, 2)),
  "rf29_resnet18": Spec(block="basic", stage_sizes=(4, 4, 4, 4), widths=(64, 128, 256, 512),
                        stem="small", max_pool=False, strides=(1, 2, 2), extra_block=False),
  "rf13_resnet_tiny": Spec(block="basic", stage_sizes=(1, 1, 1, 1), widths=(16, 32, 64, 128),
                           stem="small", max_pool=False, strides=(1, 2, 2), extra_block=False),
}


class BasicBlock(resnet.BasicBlock):
  """jssl's basic block with a 3x3 first convolution only if `spatial`; the second is 1x1."""

  def __init__(self, in_channels: int, channels: int, stride: int, *, spatial: bool,
               dtype: Any, rngs: nnx.Rngs):
    self.conv1 = resnet.ConvBN(in_channels, channels, 3 if spatial else 1, stride,
                               dtype=dtype, rngs=rngs)
    self.conv2 = resnet.ConvBN(channels, channels, 1, zero_scale=True, dtype=dtype, rngs=rngs)
    needs_projection = stride != 1 or in_channels != channels
    self.shortcut = (resnet.ConvBN(in_channels, channels, 1, stride, dtype=dtype, rngs=rngs)
                     if needs_projection else None)


class Bottleneck(resnet.Bottleneck):
  """jssl's bottleneck block with its middle convolution 3x3 only if `spatial`, else 1x1."""

  def __init__(self, in_channels: int, channels: int, stride: int, *, spatial: bool,
               dtype: Any, rngs: nnx.Rngs):
    out_channels = channels * self.expansion
    self.conv1 = resnet.ConvBN(in_channels, channels, 1, dtype=dtype, rngs=rngs)
    self.conv2 = resnet.ConvBN(channels, channels, 3 if spatial else 1, stride, dtype=dtype,
                               rngs=rngs)
    self.conv3 = resnet.ConvBN(channels, out_channels, 1, zero_scale=True, dtype=dtype,
                               rngs=rngs)
    needs_projection = stride != 1 or in_channels != out_channels
    self.shortcut = (resnet.ConvBN(in_channels, out_channels, 1, stride, dtype=dtype, rngs=rngs)
                     if needs_projection else None)


class DenseBN(nnx.Module):
  """A bias-free dense layer in the compute dtype, then float32 BatchNorm (no activation)."""

  def __init__(self, in_features: int, out_features: int, *, zero_scale: bool = False,
               dtype: Any, rngs: nnx.Rngs):
    self.dense = nnx.Linear(in_features, out_features, use_bias=False, dtype=dtype,
                            kernel_init=_DENSE_INIT, rngs=rngs)
    self.bn = nnx.BatchNorm(out_features, momentum=0.9, epsilon=1e-5, dtype=jnp.float32,
                            scale_init=(nnx.initializers.zeros if zero_scale
                                        else nnx.initializers.ones), rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[B, in] -> float32 [B, out]."""
    return self.bn(self.dense(x), use_running_average=not train)


class ResidualMLP(nnx.Module):
  """One residual block's structure on pooled vectors: relu(x + BN(W_L ... relu(BN(W_1 x))))."""

  def __init__(self, dim: int, block: str, *, dtype: Any, rngs: nnx.Rngs):
    sizes = (dim, dim // 4, dim // 4, dim) if block == "bottleneck" else (dim, dim, dim)
    last = len(sizes) - 2
    self.layers = nnx.List([
      DenseBN(a, b, zero_scale=(i == last), dtype=dtype, rngs=rngs)
      for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """float32 [B, dim] -> float32 [B, dim]."""
    y = x
    for i, layer in enumerate(self.layers):
      y = layer(y, train=train)
      if i < len(self.layers) - 1:
        y = jax.nn.relu(y)
    return jax.nn.relu(x + y)


class RFResNet(nnx.Module):
  """Stem, four stages of bounded-receptive-field blocks, average pool, residual MLP.

  Attributes:
    out_dim: width of "local", "pooled" and "pre_logits".
    spec: the Spec it was built from.
    receptive_field: side in pixels of the receptive field of one "local" unit.
  """

  def __init__(self, spec: Spec, *, in_channels: int, dtype: str = "float32",
               rngs: nnx.Rngs):
    self.dtype = resnet._compute_dtype(dtype)
    self.spec = spec
    self.in_channels = in_channels
    self.receptive_field = spec.receptive_field
    block_cls = BasicBlock if spec.block == "basic" else Bottleneck
    kernel, stride = _STEMS[spec.stem]
    self.stem = resnet.ConvBN(in_channels, spec.widths[0], kernel, stride, dtype=self.dtype,
                              rngs=rngs)
    stages = []
    channels_in = spec.widths[0]
    for num_blocks, base, stage_stride in zip(spec.blocks_per_stage, spec.widths,
                                              (1,) + spec.strides):
      spatial = spatial_blocks(num_blocks)
      blocks = []
      for j in range(num_blocks):
        blocks.append(block_cls(channels_in, base, stage_stride if j == 0 else 1,
                                spatial=j in spatial, dtype=self.dtype, rngs=rngs))
        channels_in = base * block_cls.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.out_dim = channels_in
    self.mlp = (ResidualMLP(channels_in, spec.block, dtype=self.dtype, rngs=rngs)
                if spec.mlp else None)

  def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None = None,
               **unused_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images.

    Args:
      x: images [B, H, W, C] (any float dtype; cast to the compute dtype).
      train: BatchNorm batch statistics (and running-average updates) or running ones.
      mask: must be None (patch masking is a ViT feature).
      **unused_kwargs: accepted so callers can pass every backbone the same keywords.

    Returns:
      (output, intermediates): output is "pre_logits", float32 [B, out_dim];
      intermediates holds "stage1".."stage4" ([B, h_i, w_i, c_i], compute dtype),
      "local" (= "stage4", the bag of local representations [B, h, w, out_dim]),
      "pooled" (its float32 average [B, out_dim], before the MLP) and "pre_logits"
      (after the MLP; = "pooled" when `mlp` is off).
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"RF-ResNet input must be [B, H, W, {self.in_channels}], got {x.shape}.")
    if mask is not None:
      raise ValueError("RF-ResNet does not support `mask`; use a ViT backbone.")
    x = jax.nn.relu(self.stem(x.astype(self.dtype), train=train))
    if self.spec.max_pool:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    intermediates = {}
    for i, stage in enumerate(self.stages):
      for block in stage:
        x = block(x, train=train)
      intermediates[f"stage{i + 1}"] = x
    intermediates["local"] = x
    # Averaging in float32 avoids bf16 rounding in a sum over h * w positions.
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    out = pooled if self.mlp is None else self.mlp(pooled, train=train)
    intermediates["pooled"] = pooled
    intermediates["pre_logits"] = out
    return out, intermediates


_OVERRIDES = ("block", "stage_sizes", "widths", "stem", "max_pool", "strides", "extra_block",
              "mlp")


def spec_from_config(cfg: ml_collections.ConfigDict) -> Spec:
  """The preset `cfg.variant` with any of the override fields that `cfg` sets."""
  variant = cfg.get("variant", None)
  if variant not in PRESETS:
    raise ValueError(f"model.variant must be one of {sorted(PRESETS)}, got {variant!r}.")
  overrides = {}
  for name in _OVERRIDES:
    value = cfg.get(name, None)
    if value is None:
      continue
    if name in ("stage_sizes", "widths", "strides"):
      if not isinstance(value, (tuple, list)):
        raise ValueError(f"model.{name} must be a tuple of positive integers, got {value!r}.")
      value = tuple(value)
    overrides[name] = value
  return dataclasses.replace(PRESETS[variant], **overrides)


def create(cfg: ml_collections.ConfigDict, *, in_channels: int, rngs: nnx.Rngs) -> RFResNet:
  """Builds the RF-ResNet that `cfg` (the `config.model` block) describes."""
  return RFResNet(spec_from_config(cfg), in_channels=in_channels,
                  dtype=cfg.get("dtype", "float32"), rngs=rngs)
