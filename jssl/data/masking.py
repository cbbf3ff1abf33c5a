"""Patch masks for masked image modelling (BEiT / iBOT / SOVE), computed on the accelerator.

Both generators return bool `[B, N]` masks, N = h * w patches in row-major order
(the ViT's patch order); True means "replace this patch by the mask token".
Every image gets its own key (split from `rng`) and the per-image work is
vmapped, so the functions are jittable and an image's mask depends only on its
key, not on the batch size or the device layout.

Per-image variation as in iBOT: `ratio` is a float or a (min, max) pair sampled
uniformly per image (iBOT: 0.3 +- 0.2, i.e. (0.1, 0.5)), and only a fraction
`mask_prob` of the images is masked at all (iBOT: 0.5); the others get an
all-False mask. The per-image target count is round(ratio * N).

  mask = blockwise_mask(key, 64, (14, 14), (0.1, 0.5), mask_prob=0.5)  # [64, 196]
"""
import math

import jax
import jax.numpy as jnp

Ratio = float | tuple[float, float]


def _ratio_range(ratio: Ratio) -> tuple[float, float]:
  lo, hi = (ratio, ratio) if isinstance(ratio, (int, float)) else tuple(ratio)
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"mask ratio must be a float or a (min, max) pair in [0, 1], got {ratio!r}.")
  return float(lo), float(hi)


def _targets(key: jax.Array, ratio: Ratio, mask_prob: float, num_patches: int) -> jax.Array:
  """Per-image number of patches to mask: round(r * N), r ~ U(min, max); 0 w.p. 1 - mask_prob."""
  lo, hi = _ratio_range(ratio)
  if not 0.0 <= mask_prob <= 1.0:
    raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}.")
  r_key, p_key = jax.random.split(key)
  r = jax.random.uniform(r_key, (), minval=lo, maxval=hi)
  target = jnp.round(r * num_patches).astype(jnp.int32)
  return jnp.where(jax.random.uniform(p_key, ()) < mask_prob, target, 0)


def random_mask(rng: jax.Array, batch_size: int, grid_hw: tuple[int, int], ratio: Ratio, *,
                mask_prob: float = 1.0) -> jax.Array:
  """Exactly round(ratio * N) uniformly random patches per masked image.

  Args:
    rng: PRNG key.
    batch_size: B.
    grid_hw: (h, w) patch grid; N = h * w.
    ratio: fraction of patches to mask, or a (min, max) range sampled per image.
    mask_prob: probability that an image is masked at all.

  Returns:
    bool [B, N].
  """
  n = grid_hw[0] * grid_hw[1]

  def one(key):
    t_key, p_key = jax.random.split(key)
    target = _targets(t_key, ratio, mask_prob, n)
    # The positions of the `target` smallest of N uniform draws are a uniformly
    # random subset of that size.
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(p_key, (n,))))
    return rank < target

  return jax.vmap(one)(jax.random.split(rng, batch_size))


def reference_min_block(grid_hw: tuple[int, int]) -> int:
  """iBOT's (and the SOVE code's) smallest block: (min(h, w) // 3)**2 patches, at least 1.

  16 on a 14 x 14 grid, 4 on 7 x 7; BEiT's fixed 4 is what `blockwise_mask` defaults to.
  """
  return max(1, (min(grid_hw) // 3) ** 2)


def blockwise_mask(rng: jax.Array, batch_size: int, grid_hw: tuple[int, int], ratio: Ratio, *,
                   mask_prob: float = 1.0, min_block: int = 4, aspect: tuple[float, float] = (0.3, 1 / 0.3),
                   max_attempts: int = 64) -> jax.Array:
  """BEiT / iBOT blockwise masking: random rectangles until about ratio * N patches are masked.

  Each attempt, with `left` = target - (patches masked so far), draws an area
  uniformly between min_block and `left` (either order, as the reference
  samplers do), a log-uniform aspect ratio a in `aspect`, and a block of
  round(sqrt(area a)) x round(sqrt(area / a)) patches (strictly smaller than
  the grid) at a uniform position. The block is kept if it adds between 1 and
  `left` new patches, so the count never exceeds the target. The reference
  samplers loop until they stall; to stay jittable this runs a fixed
  `max_attempts` attempts per image (lax.fori_loop, vmapped over images).

  How close it gets (measured on 512 images per setting): with the default 64
  attempts every mask hit its target exactly on 14 x 14 and 7 x 7 grids for
  ratios 0.1-0.7 (min_block 4); with 32 attempts about 1% of images ended 1
  patch short at ratio 0.5, with 16 attempts up to 8 patches short. Exactness
  comes from the last attempts: once fewer than min_block patches are left,
  areas of 1-3 patches are drawn and fill the remainder.

  Args:
    rng: PRNG key.
    batch_size: B.
    grid_hw: (h, w) patch grid; N = h * w, row-major.
    ratio: fraction of patches to mask, or a (min, max) range sampled per image.
    mask_prob: probability that an image is masked at all.
    min_block: smallest block area in patches (BEiT's min_num_patches).
    aspect: (min, max) block aspect ratio h / w, sampled log-uniformly.
    max_attempts: block placements tried per image (static).

  Returns:
    bool [B, N]; each image's count is <= its target.
  """
  h, w = grid_hw
  n = h * w
  log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]

  def one(key):
    t_key, loop_key = jax.random.split(key)
    target = _targets(t_key, ratio, mask_prob, n)

    def attempt(i, mask):
      a_key, r_key, t_key, l_key = jax.random.split(jax.random.fold_in(loop_key, i), 4)
      left = target - jnp.sum(mask)
      lo = jnp.minimum(min_block, left).astype(jnp.float32)
      hi = jnp.maximum(min_block, left).astype(jnp.float32)
      area = jax.random.uniform(a_key, (), minval=lo, maxval=hi)
      ar = jnp.exp(jax.random.uniform(r_key, (), minval=log_lo, maxval=log_hi))
      bh = jnp.round(jnp.sqrt(area * ar)).astype(jnp.int32)
      bw = jnp.round(jnp.sqrt(area / ar)).astype(jnp.int32)
      top = jax.random.randint(t_key, (), 0, jnp.maximum(h - bh + 1, 1))
      lft = jax.random.randint(l_key, (), 0, jnp.maximum(w - bw + 1, 1))
      block = (rows >= top) & (rows < top + bh) & (cols >= lft) & (cols < lft + bw)
      new = jnp.sum(block & ~mask)
      ok = (bh < h) & (bw < w) & (new > 0) & (new <= left)
      return jnp.where(ok, mask | block, mask)

    mask = jax.lax.fori_loop(0, max_attempts, attempt, jnp.zeros((h, w), bool))
    return mask.reshape(n)

  return jax.vmap(one)(jax.random.split(rng, batch_size))
