"""Vision Transformer (Dosovitskiy et al., 2021) backbone, DINO/iBOT style.

Pre-norm blocks, a [CLS] token, learned position embeddings, no classifier. Configured by

  cfg.name = "vit"
  cfg.variant = "S/16"       # "<size>/<patch>", size in Ti, S, B, L, H
  cfg.image_size = 224       # the patch grid the position embedding is built for
  cfg.dtype = "float32"      # compute dtype, "float32" or "bfloat16"
  cfg.drop_path = 0.0        # stochastic depth, linearly increasing over blocks
  cfg.pool = "cls"           # "cls" or "mean" (of the patch tokens)
  cfg.stem_channels = ()     # convolutional stem before the patch embedding, e.g. (32,); () = none
  cfg.attention_impl = None  # passed to jax.nn.dot_product_attention
  cfg.remat = "none"         # "block": recompute each block in the backward pass (jssl/models/remat.py)
  # optional overrides of the preset (ablations, fast tests): cfg.depth, cfg.width, cfg.num_heads

With `stem_channels`, a stack of 3x3 convolutions (each BatchNorm + ReLU, widths as
given) runs before the patch embedding, after Xiao et al. (2021), "Early convolutions help
transformers see better": a convolution strides 2 while the patch size left to cover is
even, otherwise 1, and the patch embedding covers what is left (patch 16 with four
convolutions: their stem, ending in a 1x1 projection; patch 7: stride-1 convolutions and
a 7x7 patch embedding). The token grid is the same as without the stem. A masked token
replaces the patch embedding's output, so its pixels still reach the neighbouring tokens
through the convolutions' borders (one pixel per stride-1 convolution).

Inputs whose patch grid differs from the configured one (e.g. 96 px multi-crop local
views into a 224 px model) get bilinearly resized patch position embeddings; the
[CLS] position embedding is used as is.

Precision: parameters are float32. Matmuls, attention and the residual stream run in
the compute dtype (attention logits and softmax in float32 inside
`jax.nn.dot_product_attention`); LayerNorms are computed in float32. Outputs taken
after the final LayerNorm ("cls", "tokens", "local", "pre_logits") are float32; the
per-block [CLS] features ("block_i") are in the compute dtype.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jssl import sharding
from jssl.models import remat as remat_lib
from jssl.models import resnet

# size name -> (width D, depth, heads). The MLP hidden width is MLP_RATIO * D.
_SIZES = {
  "Ti": (192, 12, 3),
  "S": (384, 12, 6),
  "B": (768, 12, 12),
  "L": (1024, 24, 16),
  "H": (1280, 32, 16),
}
MLP_RATIO = 4

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

_INIT = nnx.initializers.truncated_normal(stddev=0.02)
# PyTorch's nn.GELU (used by DINO/iBOT) is the exact erf form; jax defaults to tanh.
_gelu = functools.partial(jax.nn.gelu, approximate=False)


def decode_variant(variant: str) -> dict[str, int]:
  """Decodes "S/16"-style names into width, depth, num_heads, mlp_dim, patch_size."""
  try:
    size, patch = variant.split("/")
    width, depth, heads = _SIZES[size]
    patch = int(patch)
  except (AttributeError, ValueError, KeyError):
    raise ValueError(
      f"model.variant must look like '<size>/<patch>' with size in "
      f"{list(_SIZES)} (e.g. 'S/16'), got {variant!r}.") from None
  return dict(width=width, depth=depth, num_heads=heads,
              mlp_dim=MLP_RATIO * width, patch_size=patch)


def resize_pos_embed(posemb: jax.Array, grid: tuple[int, int],
                     new_grid: tuple[int, int]) -> jax.Array:
  """Bilinearly resizes patch position embeddings to a new patch grid.

  Args:
    posemb: [1, 1 + gh * gw, D] embeddings, the [CLS] one first.
    grid: (gh, gw), the grid `posemb` was built for.
    new_grid: (h, w), the grid wanted.

  Returns:
    [1, 1 + h * w, D]; the [CLS] embedding is kept unchanged. Resizing uses
    `jax.image.resize`, which antialiases when shrinking (as big_vision does).
  """
  if tuple(grid) == tuple(new_grid):
    return posemb
  cls_pos, patch_pos = posemb[:, :1], posemb[:, 1:]
  d = posemb.shape[-1]
  patch_pos = patch_pos.reshape(1, grid[0], grid[1], d)
  patch_pos = jax.image.resize(patch_pos, (1, new_grid[0], new_grid[1], d),
                               method="bilinear")
  patch_pos = patch_pos.reshape(1, new_grid[0] * new_grid[1], d)
  return jnp.concatenate([cls_pos, patch_pos], axis=1)


def _drop_path(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Stochastic depth: zeroes a residual branch per example, rescales the rest."""
  if rate == 0.0 or rng is None:
    return x
  keep = 1.0 - rate
  shape = (x.shape[0],) + (1,) * (x.ndim - 1)
  kept = jax.random.bernoulli(rng, keep, shape)
  return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


class Attention(nnx.Module):
  """Multi-head self-attention with a fused qkv projection."""

  def __init__(self, dim: int, num_heads: int, *, dtype: Any,
               attention_impl: str | None = None, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"width {dim} is not divisible by {num_heads} heads.")
    self.num_heads = num_heads
    self.attention_impl = attention_impl
    self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.proj = nnx.Linear(dim, dim, dtype=dtype, kernel_init=_INIT, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, T, D] -> [B, T, D]."""
    b, t, d = x.shape
    qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    # [B, T, heads, head_dim] layout is what dot_product_attention (and cuDNN)
    # expects, so no transposes are needed.
    y = jax.nn.dot_product_attention(q, k, v,
                                     implementation=self.attention_impl)
    return self.proj(y.reshape(b, t, d))


class Block(nnx.Module):
  """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, dim: int, num_heads: int, mlp_dim: int, *,
               drop_path: float = 0.0, dtype: Any,
               attention_impl: str | None = None, rngs: nnx.Rngs):
    # dtype=float32: LayerNorm is computed in float32 whatever the compute dtype.
    self.norm1 = nnx.LayerNorm(dim, epsilon=1e-6, dtype=jnp.float32, rngs=rngs)
    self.attn = Attention(dim, num_heads, dtype=dtype,
                          attention_impl=attention_impl, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=1e-6, dtype=jnp.float32, rngs=rngs)
    self.fc1 = nnx.Linear(dim, mlp_dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.fc2 = nnx.Linear(mlp_dim, dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.drop_path = drop_path
    self.dtype = dtype

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """[B, T, D] -> [B, T, D]; `rng` given means stochastic depth is active."""
    rngs = (None, None) if rng is None else tuple(jax.random.split(rng))
    y = self.attn(self.norm1(x).astype(self.dtype))
    x = x + _drop_path(y, self.drop_path, rngs[0])
    y = self.fc2(_gelu(self.fc1(self.norm2(x).astype(self.dtype))))
    return x + _drop_path(y, self.drop_path, rngs[1])


class VisionTransformer(nnx.Module):
  """ViT trunk: patch embedding, [CLS] token, position embedding, blocks, norm.

  Attributes:
    out_dim: width D of the pooled output.
    patch_size: side of the square patches.
    grid: (gh, gw), the patch grid the position embedding was built for.
  """

  def __init__(self, *, width: int, depth: int, num_heads: int, mlp_dim: int,
               patch_size: int, image_size: int | tuple[int, int],
               in_channels: int, drop_path: float = 0.0, pool: str = "cls",
               dtype: str = "float32", attention_impl: str | None = None,
               remat: str = "none", stem_channels: tuple[int, ...] = (),
               rngs: nnx.Rngs):
    """Builds the network.

    Args:
      width: token width D.
      depth: number of blocks.
      num_heads: attention heads per block.
      mlp_dim: hidden width of the block MLPs.
      patch_size: side of the square patches.
      image_size: image side (or (H, W)) the position embedding is built for;
        must be a multiple of `patch_size`.
      in_channels: channels of the input images.
      drop_path: stochastic-depth rate of the last block; block i (0-based) uses
        drop_path * i / (depth - 1), as in DeiT/DINO.
      pool: what the output is: "cls" (the normalised [CLS] token) or "mean"
        (the mean of the normalised patch tokens).
      dtype: compute dtype name, "float32" or "bfloat16".
      attention_impl: `implementation` of `jax.nn.dot_product_attention`; None
        lets JAX choose and works on every backend.
      remat: "none", or "block" to recompute each block's activations in the
        backward pass (`jssl.models.remat`).
      stem_channels: widths of the 3x3 convolutions (BatchNorm, ReLU) run
        before the patch embedding; () for the plain patch embedding.
      rngs: initialisation randomness.
    """
    self.remat = remat_lib.check(remat)
    if dtype not in _DTYPES:
      raise ValueError(
        f"model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    if pool not in ("cls", "mean"):
      raise ValueError(f"model.pool must be 'cls' or 'mean', got {pool!r}.")
    if not 0.0 <= drop_path < 1.0:
      raise ValueError(f"model.drop_path must be in [0, 1), got {drop_path}.")
    image_hw = ((image_size, image_size) if isinstance(image_size, int)
                else tuple(image_size))
    if image_hw[0] % patch_size or image_hw[1] % patch_size:
      raise ValueError(
        f"model.image_size {image_size} must be a multiple of the patch size "
        f"{patch_size}.")
    self.dtype = _DTYPES[dtype]
    self.in_channels = in_channels
    self.patch_size = patch_size
    self.grid = (image_hw[0] // patch_size, image_hw[1] // patch_size)
    self.pool = pool
    self.out_dim = width
    self.depth = depth
    self.drop_path = float(drop_path)

    if any(int(ch) <= 0 for ch in stem_channels):
      raise ValueError(f"model.stem_channels must be positive widths, got {tuple(stem_channels)}.")
    stem, left, channels = [], patch_size, in_channels
    for ch in stem_channels:
      stride = 2 if left % 2 == 0 else 1
      stem.append(resnet.ConvBN(channels, int(ch), 3, stride, dtype=self.dtype, rngs=rngs))
      left, channels = left // stride, int(ch)
    self.stem = nnx.List(stem)
    # The patch embedding sees raw pixels (or the stem's features), so it keeps a
    # fan-in scaled init (like a dense layer on flattened patches), not the fixed 0.02.
    self.patch_embed = nnx.Conv(
      channels, width, (left, left), strides=left,
      padding="VALID", dtype=self.dtype,
      kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)
    self.cls_token = nnx.Param(_INIT(rngs.params(), (1, 1, width)))
    self.mask_token = nnx.Param(_INIT(rngs.params(), (1, 1, width)))
    num_patches = self.grid[0] * self.grid[1]
    self.pos_embed = nnx.Param(_INIT(rngs.params(), (1, 1 + num_patches, width)))
    rates = np.linspace(0.0, drop_path, depth)
    self.blocks = nnx.List([
      Block(width, num_heads, mlp_dim, drop_path=float(rate), dtype=self.dtype,
            attention_impl=attention_impl, rngs=rngs)
      for rate in rates])
    self.norm = nnx.LayerNorm(width, epsilon=1e-6, dtype=jnp.float32, rngs=rngs)

  def token_grid(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) of the patch grid ("tokens", and masks) for a height x width input."""
    return height // self.patch_size, width // self.patch_size

  def __call__(self, x: jax.Array, *, train: bool,
               rng: jax.Array | None = None, mask: jax.Array | None = None,
               **unused_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images.

    Args:
      x: images [B, H, W, C]; H and W multiples of the patch size (any float
        dtype; cast to the compute dtype).
      train: training mode: stochastic depth, and the stem's BatchNorm (batch
        statistics when True, running averages when False).
      rng: PRNG key for stochastic depth, used when train is True and
        drop_path > 0. Without it no path is dropped: EMA teachers run this way
        (DINO's and iBOT's teachers have no stochastic depth). Taking it as an
        argument keeps the module a pure function of (params, x, rng).
      mask: optional bool [B, N] (N = (H / p) * (W / p), row-major patch
        order); True patches are replaced by the learned mask token before the
        position embedding is added (masked image modelling).
      **unused_kwargs: accepted so that callers can pass the same keywords to
        every backbone; ignored.

    Returns:
      (output, intermediates): output [B, D] (float32) is "cls" or the mean of
      "tokens" according to `pool`; intermediates holds "cls" [B, D] and
      "tokens" [B, N, D] after the final norm, "local" (tokens as [B, h, w, D]),
      "pre_logits" (= output) and "block_1".."block_<depth>" ([B, D], the [CLS]
      token leaving each block, before the final norm).
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
        f"ViT input must be [B, H, W, {self.in_channels}], got {x.shape}.")
    b, hh, ww, _ = x.shape
    p = self.patch_size
    if hh % p or ww % p:
      raise ValueError(
        f"ViT input size {hh}x{ww} must be a multiple of the patch size {p}.")
    use_drop_path = train and self.drop_path > 0.0 and rng is not None

    x = sharding.constrain_batch(x).astype(self.dtype)
    for conv in self.stem:
      x = jax.nn.relu(conv(x, train=train))
    x = self.patch_embed(x)  # [B, h, w, D]
    h, w, d = x.shape[1:]
    x = x.reshape(b, h * w, d)
    if mask is not None:
      if mask.shape != (b, h * w):
        raise ValueError(
          f"mask must be [B, N] = {(b, h * w)} for this input, got {mask.shape}.")
      x = jnp.where(mask[..., None], self.mask_token[...].astype(x.dtype), x)

    pos = resize_pos_embed(self.pos_embed[...], self.grid, (h, w))
    x = x + pos[:, 1:].astype(x.dtype)
    # Broadcasting against zeros shaped like x's first token, rather than
    # broadcast_to, makes the [CLS] row inherit x's batch sharding, so the
    # concatenation below is well-defined under sharded (also Explicit) meshes.
    cls = jnp.zeros_like(x[:, :1]) + (self.cls_token[...]
                                      + pos[:, :1]).astype(x.dtype)
    x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + N, D]

    intermediates = {}
    x = sharding.constrain_batch(x)   # FSDP: gather each block's weights, not its activations
    for i, block in enumerate(self.blocks):
      block_rng = jax.random.fold_in(rng, i) if use_drop_path else None
      x = sharding.constrain_batch(remat_lib.call(block, x, block_rng, self.remat))
      intermediates[f"block_{i + 1}"] = x[:, 0]

    y = self.norm(x)  # float32
    cls_out, tokens = y[:, 0], y[:, 1:]
    output = cls_out if self.pool == "cls" else jnp.mean(tokens, axis=1)
    intermediates.update(cls=cls_out, tokens=tokens,
                         local=tokens.reshape(b, h, w, d), pre_logits=output)
    return output, intermediates


def create(cfg: ml_collections.ConfigDict, *, in_channels: int,
           rngs: nnx.Rngs) -> VisionTransformer:
  """Builds the ViT that `cfg` (the `config.model` block) describes."""
  sizes = decode_variant(cfg.get("variant", None))
  if cfg.get("depth", None):  # fewer blocks than the preset: ablations and fast tests
    sizes["depth"] = int(cfg.depth)
  if cfg.get("width", None):  # a narrower trunk (MLP_RATIO x width MLPs), same patch size
    sizes.update(width=int(cfg.width), mlp_dim=MLP_RATIO * int(cfg.width))
  if cfg.get("num_heads", None):
    sizes["num_heads"] = int(cfg.num_heads)
  image_size = cfg.get("image_size", None)
  if image_size is None:
    raise ValueError("model.image_size is required for a ViT (e.g. 224).")
  return VisionTransformer(
    **sizes, image_size=image_size, in_channels=in_channels,
    drop_path=float(cfg.get("drop_path", 0.0)), pool=cfg.get("pool", "cls"),
    dtype=cfg.get("dtype", "float32"),
    attention_impl=cfg.get("attention_impl", None), remat=cfg.get("remat", "none"),
    stem_channels=tuple(cfg.get("stem_channels", None) or ()), rngs=rngs)
