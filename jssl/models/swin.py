"""Swin Transformer (Liu et al., 2021) backbone, as used by EsViT, iBOT and SOVE.

Hierarchical windowed attention: a 4x4 patch embedding, four stages of blocks that
attend within non-overlapping windows (every second block shifts the windows by half
a window), patch merging between stages, a final LayerNorm and an average pool. No
classifier. Configured by

  cfg.name = "swin"
  cfg.variant = "T"          # "T", "S", "B" (or "tiny-test", a toy for tests)
  cfg.image_size = 224       # informational: nothing in the network depends on it
  cfg.window_size = 7        # attention window side (in tokens)
  cfg.dtype = "float32"      # compute dtype, "float32" or "bfloat16"
  cfg.drop_path = 0.0        # stochastic depth, linearly increasing over blocks
  cfg.attention_impl = None  # passed to jax.nn.dot_product_attention
  cfg.remat = "none"         # "block": recompute each block in the backward pass (jssl/models/remat.py)
  # optional overrides of the preset: cfg.embed_dim, cfg.depths, cfg.num_heads

Any input whose side is a multiple of 4 works. A stage whose resolution is at most
the window uses one window covering it and no shift (as the reference does, e.g. the
3x3 last stage of a 96 px crop); otherwise the stage is zero-padded to a multiple of
the window and padded tokens are masked out as keys, so they never change real
tokens. The relative position bias is indexed by the offset between two tokens, so a
smaller window reuses the central entries of the same table.

Precision: parameters are float32. Matmuls, attention and the residual stream run in
the compute dtype (attention logits and softmax in float32 inside
`jax.nn.dot_product_attention`); LayerNorms are computed in float32. "tokens",
"local" and "pre_logits" are float32; "stage1".."stage4" are in the compute dtype.
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

# variant -> (embed dim C of stage 1, blocks per stage, heads per stage). Stage i
# has width C * 2**i; the MLP hidden width is MLP_RATIO times the stage width.
_VARIANTS = {
  "tiny-test": (16, (1, 1, 2, 1), (1, 1, 2, 2)),
  "T": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
  "S": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
  "B": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
MLP_RATIO = 4
PATCH_SIZE = 4

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

_INIT = nnx.initializers.truncated_normal(stddev=0.02)
# The reference uses PyTorch's nn.GELU, the exact erf form; jax defaults to tanh.
_gelu = functools.partial(jax.nn.gelu, approximate=False)
# PyTorch's LayerNorm default, which the reference keeps.
_LN_EPS = 1e-5


def _drop_path(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Stochastic depth: zeroes a residual branch per example, rescales the rest."""
  if rate == 0.0 or rng is None:
    return x
  keep = 1.0 - rate
  kept = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


def window_layout(height: int, width: int, window: int,
                  shift: bool) -> tuple[int, int]:
  """(window side, shift) a block uses on a height x width token grid."""
  if min(height, width) <= window:
    return min(height, width), 0
  return window, (window // 2 if shift else 0)


@functools.lru_cache(maxsize=None)
def relative_position_index(window: int, table_window: int) -> np.ndarray:
  """Table rows of the bias between tokens of a window, [window**2, window**2].

  Args:
    window: side of the window the tokens are in.
    table_window: side the (2 * table_window - 1)**2-row table was built for.
  """
  rows, cols = np.divmod(np.arange(window * window), window)
  dr = rows[:, None] - rows[None, :] + table_window - 1
  dc = cols[:, None] - cols[None, :] + table_window - 1
  return dr * (2 * table_window - 1) + dc


def _to_windows(x: jax.Array, window: int) -> jax.Array:
  """[B, H, W, ...] (H, W multiples of window) -> [B, nW, window**2, ...]."""
  b, h, w = x.shape[:3]
  rest = x.shape[3:]
  x = x.reshape(b, h // window, window, w // window, window, *rest)
  # Method calls rather than jnp functions: the attention mask applies this to
  # numpy arrays, which must stay numpy (static) under jit.
  x = x.swapaxes(2, 3)
  return x.reshape(b, (h // window) * (w // window), window * window, *rest)


def _from_windows(x: jax.Array, height: int, width: int) -> jax.Array:
  """Inverse of `_to_windows`: [B, nW, window**2, C] -> [B, height, width, C]."""
  b, _, t, c = x.shape
  window = int(round(t ** 0.5))
  x = x.reshape(b, height // window, width // window, window, window, c)
  return jnp.swapaxes(x, 2, 3).reshape(b, height, width, c)


@functools.lru_cache(maxsize=None)
def window_attention_mask(height: int, width: int, window: int,
                          shift: int) -> np.ndarray | None:
  """Which tokens of a (shifted) window may attend to which, [nW, T, T] bool.

  The grid of height x width real tokens is zero-padded to multiples of `window`
  and rolled by -shift in both axes before being cut into windows. A query may
  attend to a key iff neither or both were wrapped around by the roll along each
  axis (so tokens from opposite image borders stay apart) and the key is a real
  token. Returns None when every pair is allowed.

  Args:
    height, width: the real token grid.
    window: window side (T = window**2 tokens per window).
    shift: the cyclic shift, 0 <= shift < window.
  """
  hp, wp = -(-height // window) * window, -(-width // window) * window
  if shift == 0 and (hp, wp) == (height, width):
    return None
  # Regions of the rolled grid along one axis: the last `shift` rows are the
  # wrapped-around ones; the `window - shift` rows before them share their
  # windows; the rest never meet either.
  def regions(n):
    ids = np.zeros(n, np.int32)
    if shift:
      ids[n - window:n - shift], ids[n - shift:] = 1, 2
    return ids
  region = regions(hp)[:, None] * 3 + regions(wp)[None, :]
  valid = np.zeros((hp, wp), bool)
  valid[:height, :width] = True
  valid = np.roll(valid, (-shift, -shift), axis=(0, 1))
  region = _to_windows(region[None], window)[0]  # [nW, T]
  valid = _to_windows(valid[None], window)[0]
  return (region[:, :, None] == region[:, None, :]) & valid[:, None, :]


class WindowAttention(nnx.Module):
  """Multi-head self-attention within windows, with a relative position bias."""

  def __init__(self, dim: int, num_heads: int, window: int, *, dtype: Any,
               attention_impl: str | None = None, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"width {dim} is not divisible by {num_heads} heads.")
    self.num_heads = num_heads
    self.window = window
    self.attention_impl = attention_impl
    self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.proj = nnx.Linear(dim, dim, dtype=dtype, kernel_init=_INIT, rngs=rngs)
    self.bias_table = nnx.Param(
      _INIT(rngs.params(), ((2 * window - 1) ** 2, num_heads)))

  def __call__(self, x: jax.Array, mask: np.ndarray | None) -> jax.Array:
    """Attends within each window.

    Args:
      x: [B, nW, T, D] tokens of windows of side sqrt(T) <= the table's window.
      mask: None or bool [nW, T, T] from `window_attention_mask`.

    Returns:
      [B, nW, T, D].
    """
    b, nw, t, d = x.shape
    qkv = self.qkv(x).reshape(b * nw, t, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    index = relative_position_index(int(round(t ** 0.5)), self.window)
    bias = self.bias_table[...][index].transpose(2, 0, 1)[None]  # [1, h, T, T]
    if mask is not None:
      # Broadcast at run time: a [B * nW, 1, T, T] constant would be huge.
      mask = jnp.broadcast_to(jnp.asarray(mask)[None, :, None],
                              (b, nw, 1, t, t)).reshape(b * nw, 1, t, t)
    y = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype),
                                     mask=mask,
                                     implementation=self.attention_impl)
    return self.proj(y.reshape(b, nw, t, d))


class SwinBlock(nnx.Module):
  """Pre-norm block: x + WindowAttention(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, dim: int, num_heads: int, window: int, shift: bool, *,
               drop_path: float, dtype: Any, attention_impl: str | None,
               rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=jnp.float32,
                               rngs=rngs)
    self.attn = WindowAttention(dim, num_heads, window, dtype=dtype,
                                attention_impl=attention_impl, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=jnp.float32,
                               rngs=rngs)
    self.fc1 = nnx.Linear(dim, MLP_RATIO * dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.fc2 = nnx.Linear(MLP_RATIO * dim, dim, dtype=dtype, kernel_init=_INIT,
                          rngs=rngs)
    self.window = window
    self.shift = shift
    self.drop_path = drop_path
    self.dtype = dtype

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """[B, H, W, D] -> [B, H, W, D]; `rng` given means stochastic depth is active."""
    rngs = (None, None) if rng is None else tuple(jax.random.split(rng))
    b, h, w, d = x.shape
    window, shift = window_layout(h, w, self.window, self.shift)
    y = self.norm1(x).astype(self.dtype)
    hp, wp = -(-h // window) * window, -(-w // window) * window
    y = jnp.pad(y, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
    if shift:
      y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
    y = self.attn(_to_windows(y, window),
                  window_attention_mask(h, w, window, shift))
    y = _from_windows(y, hp, wp)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    x = x + _drop_path(y[:, :h, :w], self.drop_path, rngs[0])
    y = self.fc2(_gelu(self.fc1(self.norm2(x).astype(self.dtype))))
    return x + _drop_path(y, self.drop_path, rngs[1])


class PatchMerging(nnx.Module):
  """Halves the resolution: 2x2 neighbours concatenated, LN, Linear 4D -> 2D."""

  def __init__(self, dim: int, *, dtype: Any, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(4 * dim, epsilon=_LN_EPS, dtype=jnp.float32,
                              rngs=rngs)
    self.reduction = nnx.Linear(4 * dim, 2 * dim, use_bias=False, dtype=dtype,
                                kernel_init=_INIT, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, D] -> [B, ceil(H / 2), ceil(W / 2), 2D]; odd sides zero-padded."""
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    # Channel order (even row, even col), (odd, even), (even, odd), (odd, odd).
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                         x[:, 1::2, 1::2]], axis=-1)
    return self.reduction(self.norm(x).astype(self.dtype))


class SwinTransformer(nnx.Module):
  """Swin trunk: patch embedding, four stages with merging, norm, average pool.

  Attributes:
    out_dim: width of the last stage, embed_dim * 8.
  """

  def __init__(self, *, embed_dim: int, depths: tuple[int, ...],
               num_heads: tuple[int, ...], window_size: int, in_channels: int,
               drop_path: float = 0.0, dtype: str = "float32",
               attention_impl: str | None = None, remat: str = "none",
               rngs: nnx.Rngs):
    """Builds the network.

    Args:
      embed_dim: width of the first stage; it doubles at every merging.
      depths: blocks per stage.
      num_heads: attention heads per stage.
      window_size: attention window side in tokens.
      in_channels: channels of the input images.
      drop_path: stochastic-depth rate of the last block; block i (0-based over
        all stages) uses drop_path * i / (num_blocks - 1).
      dtype: compute dtype name, "float32" or "bfloat16".
      attention_impl: `implementation` of `jax.nn.dot_product_attention`.
      remat: "none", or "block" to recompute each block's activations in the
        backward pass (`jssl.models.remat`).
      rngs: initialisation randomness.
    """
    self.remat = remat_lib.check(remat)
    if dtype not in _DTYPES:
      raise ValueError(
        f"model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    if len(depths) != len(num_heads):
      raise ValueError(f"depths {depths} and num_heads {num_heads} must have "
                       "one entry per stage.")
    if not 0.0 <= drop_path < 1.0:
      raise ValueError(f"model.drop_path must be in [0, 1), got {drop_path}.")
    if window_size < 1:
      raise ValueError(f"model.window_size must be >= 1, got {window_size}.")
    self.dtype = _DTYPES[dtype]
    self.in_channels = in_channels
    self.drop_path = float(drop_path)
    self.out_dim = embed_dim * 2 ** (len(depths) - 1)

    # Pixels in, so a fan-in scaled init as in vit.py rather than the fixed 0.02.
    self.patch_embed = nnx.Conv(
      in_channels, embed_dim, (PATCH_SIZE, PATCH_SIZE), strides=PATCH_SIZE,
      padding="VALID", dtype=self.dtype,
      kernel_init=nnx.initializers.lecun_normal(), rngs=rngs)
    self.patch_norm = nnx.LayerNorm(embed_dim, epsilon=_LN_EPS,
                                    dtype=jnp.float32, rngs=rngs)
    self.mask_token = nnx.Param(_INIT(rngs.params(), (1, 1, embed_dim)))
    rates = iter(np.linspace(0.0, drop_path, sum(depths)))
    stages, merges = [], []
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
      dim = embed_dim * 2 ** i
      stages.append(nnx.List([
        SwinBlock(dim, heads, window_size, shift=j % 2 == 1,
                  drop_path=float(next(rates)), dtype=self.dtype,
                  attention_impl=attention_impl, rngs=rngs)
        for j in range(depth)]))
      if i < len(depths) - 1:
        merges.append(PatchMerging(dim, dtype=self.dtype, rngs=rngs))
    self.stages = nnx.List(stages)
    self.merges = nnx.List(merges)
    self.norm = nnx.LayerNorm(self.out_dim, epsilon=_LN_EPS, dtype=jnp.float32,
                              rngs=rngs)

  def token_grid(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) of the final-stage grid ("tokens") for a height x width input.

    This is also the grid masks are drawn on (see `__call__`): each merging
    halves a side, rounding up as PatchMerging's zero padding does.
    """
    h, w = height // PATCH_SIZE, width // PATCH_SIZE
    for _ in range(len(self.stages) - 1):
      h, w = -(-h // 2), -(-w // 2)
    return h, w

  def expand_mask(self, mask: jax.Array, height: int,
                  width: int) -> jax.Array:
    """A [B, N] mask on the patch-embedding or the token grid -> [B, h, w].

    A mask on the final token grid (`token_grid`) is repeated over the
    2**(stages - 1) x 2**(stages - 1) patch embeddings each final token is
    merged from (cropped where merging padded), as iBOT's Swin does, so a
    masked final token saw none of its pixels.
    """
    h, w = height // PATCH_SIZE, width // PATCH_SIZE
    b = mask.shape[0]
    if mask.shape[1:] == (h * w,):
      return mask.reshape(b, h, w)
    th, tw = self.token_grid(height, width)
    if mask.shape[1:] != (th * tw,):
      raise ValueError(
        f"mask must be [B, N] with N = {h * w} (the patch-embedding grid) or "
        f"{th * tw} (the token grid) for this input, got {mask.shape}.")
    f = 2 ** (len(self.stages) - 1)
    up = jnp.repeat(jnp.repeat(mask.reshape(b, th, tw), f, axis=1), f, axis=2)
    return up[:, :h, :w]

  def __call__(self, x: jax.Array, *, train: bool,
               rng: jax.Array | None = None, mask: jax.Array | None = None,
               **unused_kwargs) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Encodes a batch of images.

    Args:
      x: images [B, H, W, C]; H and W multiples of 4 (any float dtype).
      train: training mode; only stochastic depth depends on it.
      rng: PRNG key for stochastic depth, used when train is True and
        drop_path > 0. Without it no path is dropped (EMA teachers run so).
      mask: optional bool [B, N] in row-major order, either on the patch
        embedding grid (N = (H / 4) * (W / 4)) or on the final token grid
        (`token_grid`, expanded by `expand_mask`); True patch embeddings (after
        the patch norm) are replaced by the learned mask token (masked image
        modelling).
      **unused_kwargs: accepted so that callers can pass the same keywords to
        every backbone; ignored.

    Returns:
      (output, intermediates): output [B, out_dim] (float32) is the mean of
      "tokens"; intermediates holds "stage1".."stage4" ([B, h_i, w_i, C_i], each
      stage's output before merging), "tokens" [B, N_4, out_dim] after the final
      norm, "local" (tokens as [B, h_4, w_4, out_dim]) and "pre_logits".
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
        f"Swin input must be [B, H, W, {self.in_channels}], got {x.shape}.")
    b, hh, ww, _ = x.shape
    if hh % PATCH_SIZE or ww % PATCH_SIZE:
      raise ValueError(f"Swin input size {hh}x{ww} must be a multiple of "
                       f"the patch size {PATCH_SIZE}.")
    use_drop_path = train and self.drop_path > 0.0 and rng is not None

    x = self.patch_embed(sharding.constrain_batch(x).astype(self.dtype))
    x = self.patch_norm(x).astype(self.dtype)  # [B, h, w, C]
    _, h, w, c = x.shape
    if mask is not None:
      if mask.ndim != 2 or mask.shape[0] != b:
        raise ValueError(f"mask must be [B, N] with B = {b}, got {mask.shape}.")
      x = jnp.where(self.expand_mask(mask, hh, ww)[..., None],
                    self.mask_token[...].astype(x.dtype), x)

    intermediates = {}
    block_index = 0
    for i, stage in enumerate(self.stages):
      if i:
        x = self.merges[i - 1](x)
      # FSDP: gather each block's weights, not its activations.
      x = sharding.constrain_batch(x)
      for block in stage:
        block_rng = (jax.random.fold_in(rng, block_index) if use_drop_path
                     else None)
        x = sharding.constrain_batch(remat_lib.call(block, x, block_rng, self.remat))
        block_index += 1
      intermediates[f"stage{i + 1}"] = x

    y = self.norm(x)  # float32
    _, h, w, d = y.shape
    tokens = y.reshape(b, h * w, d)
    output = jnp.mean(tokens, axis=1)
    intermediates.update(tokens=tokens, local=y, pre_logits=output)
    return output, intermediates


def decode_variant(variant: str) -> dict[str, Any]:
  """Decodes "T" / "S" / "B" / "tiny-test" into embed_dim, depths, num_heads."""
  if variant not in _VARIANTS:
    raise ValueError(
      f"model.variant must be one of {sorted(_VARIANTS)}, got {variant!r}.")
  embed_dim, depths, heads = _VARIANTS[variant]
  return dict(embed_dim=embed_dim, depths=depths, num_heads=heads)


def create(cfg: ml_collections.ConfigDict, *, in_channels: int,
           rngs: nnx.Rngs) -> SwinTransformer:
  """Builds the Swin Transformer that `cfg` (the `config.model` block) describes."""
  sizes = decode_variant(cfg.get("variant", None))
  # Overrides of the preset, for ablations and fast tests.
  if cfg.get("embed_dim", None):
    sizes["embed_dim"] = int(cfg.embed_dim)
  for key in ("depths", "num_heads"):
    if cfg.get(key, None):
      sizes[key] = tuple(int(v) for v in cfg[key])
  return SwinTransformer(
    **sizes, window_size=int(cfg.get("window_size", 7)),
    in_channels=in_channels, drop_path=float(cfg.get("drop_path", 0.0)),
    dtype=cfg.get("dtype", "float32"),
    attention_impl=cfg.get("attention_impl", None), remat=cfg.get("remat", "none"), rngs=rngs)
