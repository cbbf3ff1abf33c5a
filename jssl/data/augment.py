"""Per-image augmentations that run on the accelerator.

Every function here takes one image `[H, W, C]` (float32 in [0, 1], C in
{1, 3}) and is written to be `jax.vmap`-ed over a batch with one key per
example; nothing loops over examples in Python. Semantics follow torchvision's
transforms (RandomResizedCrop, RandomHorizontalFlip, ColorJitter,
RandomGrayscale, GaussianBlur, RandomSolarize) as used by the SimCLR, BYOL and
DINO recipes. Values are clipped to [0, 1] after every photometric op, as
torchvision does for float images, so that the next op sees a valid image.

Probabilities and strengths given as Python numbers are static: an op whose
probability is 0 (or whose strength is 0) is left out of the traced program,
and one with probability 1 is applied without a run-time select.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

# ITU-R 601 luma weights, the ones torchvision's rgb_to_grayscale uses.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# torchvision's RandomResizedCrop tries this many boxes before falling back.
CROP_ATTEMPTS = 10


def to_float(images: jax.Array) -> jax.Array:
  """Converts images to float32 in [0, 1].

  Args:
    images: `[..., H, W, C]`; integer dtypes are read as 0-255 pixel values,
      float dtypes are assumed to be in [0, 1] already.

  Returns:
    float32 array of the same shape.
  """
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def normalize(images: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  """Per-channel `(x - mean) / std` of images `[..., C]`; len(mean) == C."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images - mean) / std


def _apply_if(u: jax.Array, p, fn: Callable[[jax.Array], jax.Array],
              image: jax.Array) -> jax.Array:
  """Returns fn(image) if the uniform u < p (so with probability p), else image.

  A Python p of 0 or 1 is resolved while tracing so the program carries no
  dead branch; a traced p (one value per view) selects at run time.
  """
  if isinstance(p, (int, float)):
    if p <= 0:
      return image
    if p >= 1:
      return fn(image)
  return jnp.where(u < p, fn(image), image)


# ----------------------------------------------------------------------------
# Geometry.


def _crop_box(u: jax.Array, height: int, width: int, scale: Sequence[float],
              ratio: Sequence[float]) -> jax.Array:
  """`sample_crop_box` from uniforms `u`, `[2 * attempts + 2]` in [0, 1)."""
  attempts = (u.shape[0] - 2) // 2
  u_area, u_ratio = u[:attempts], u[attempts:2 * attempts]
  u_top, u_left = u[-2], u[-1]
  target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)
  box_w = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  box_h = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
  first = jnp.argmax(fits)  # index of the first fitting attempt (0 if none)
  found = jnp.any(fits)

  # The fallback depends only on static shapes, so it is computed in Python.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fb_w, fb_h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fb_h, fb_w = height, int(round(height * max(ratio)))
  else:
    fb_h, fb_w = height, width

  h = jnp.where(found, box_h[first], fb_h)
  w = jnp.where(found, box_w[first], fb_w)
  # Uniform over the H - h + 1 positions where the box fits; the clip guards
  # against u rounding up to 1 in float32.
  top = jnp.minimum(jnp.floor(u_top * (height - h + 1)).astype(jnp.int32),
                    height - h)
  left = jnp.minimum(jnp.floor(u_left * (width - w + 1)).astype(jnp.int32),
                     width - w)
  top = jnp.where(found, top, (height - fb_h) // 2)
  left = jnp.where(found, left, (width - fb_w) // 2)
  return jnp.stack([top, left, h, w]).astype(jnp.int32)


def sample_crop_box(rng: jax.Array, height: int, width: int,
                    scale: Sequence[float], ratio: Sequence[float],
                    attempts: int = CROP_ATTEMPTS) -> jax.Array:
  """Samples a RandomResizedCrop box the way torchvision does.

  Each attempt draws an area fraction uniformly in `scale` and an aspect ratio
  (width / height) log-uniformly in `ratio`, and rounds the box to whole pixels.
  All attempts are drawn at once and the first one that fits inside the image
  wins; its position is uniform over the places it fits. If none fits, the box
  is torchvision's fallback: the largest centred box whose aspect ratio is
  clamped into `ratio` (the whole image when its own ratio is in range).

  Args:
    rng: PRNG key.
    height: static image height.
    width: static image width.
    scale: (min, max) fraction of the image area.
    ratio: (min, max) aspect ratio, width / height.
    attempts: number of boxes tried before the fallback.

  Returns:
    int32 `[4]`: (top, left, box_height, box_width).
  """
  u = jax.random.uniform(rng, (2 * attempts + 2,))
  return _crop_box(u, height, width, scale, ratio)


def resized_crop(image: jax.Array, box: jax.Array, size: int) -> jax.Array:
  """Resamples a box of the image to `[size, size, C]`, bilinear, antialiased.

  The box has a traced size but the output shape is static, so instead of
  slicing and resizing (as torchvision does) the box is mapped onto the output
  grid with one `jax.image.scale_and_translate`. A difference from torchvision:
  interpolation near the box border may read the pixels just outside the box
  (they exist, since the box lies inside the image), where torchvision clamps to
  the box's own border pixels. A box the size of the output is copied exactly.

  Args:
    image: `[H, W, C]` float image.
    box: int `[4]` (top, left, box_height, box_width), inside the image.
    size: static output side.

  Returns:
    `[size, size, C]` float32.
  """
  box = box.astype(jnp.float32)
  top, left, h, w = box[0], box[1], box[2], box[3]
  scale = jnp.stack([size / h, size / w])
  translation = -jnp.stack([top, left]) * scale
  return jax.image.scale_and_translate(
      image, (size, size, image.shape[-1]), (0, 1), scale, translation,
      method="linear", antialias=True)


def random_resized_crop(rng: jax.Array, image: jax.Array, size: int,
                        scale: Sequence[float], ratio: Sequence[float],
                        attempts: int = CROP_ATTEMPTS) -> jax.Array:
  """torchvision's RandomResizedCrop: `[H, W, C]` -> `[size, size, C]`."""
  height, width = image.shape[0], image.shape[1]
  box = sample_crop_box(rng, height, width, scale, ratio, attempts)
  return resized_crop(image, box, size)


def flip_left_right(image: jax.Array) -> jax.Array:
  """Mirrors `[H, W, C]` along the width axis."""
  return image[:, ::-1, :]


# ----------------------------------------------------------------------------
# Colour.


def rgb_to_gray(image: jax.Array) -> jax.Array:
  """Luma of an RGB image: `[H, W, 3]` -> `[H, W, 1]`."""
  weights = jnp.asarray(GRAY_WEIGHTS, image.dtype)
  return jnp.sum(image * weights, axis=-1, keepdims=True)


def grayscale(image: jax.Array) -> jax.Array:
  """torchvision's Grayscale(3 output channels): `[H, W, 3]` -> `[H, W, 3]`."""
  return jnp.broadcast_to(rgb_to_gray(image), image.shape)


def _luma(image: jax.Array) -> jax.Array:
  """Gray level of an image with 1 or 3 channels, `[H, W, 1]`."""
  return image if image.shape[-1] == 1 else rgb_to_gray(image)


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """Scales intensities by `factor` (1 is the identity); `[H, W, C]`."""
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """Blends with the mean gray level of the image (1 is the identity)."""
  mean = jnp.mean(_luma(image))
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """Blends an RGB image with its grayscale version (1 is the identity)."""
  return jnp.clip(factor * image + (1.0 - factor) * rgb_to_gray(image), 0.0,
                  1.0)


def rgb_to_hsv(image: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """RGB `[..., 3]` in [0, 1] -> (hue, saturation, value), each `[...]`.

  All three are in [0, 1]; hue is in turns (red 0, green 1/3, blue 2/3).
  """
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  value = jnp.max(image, axis=-1)
  chroma = value - jnp.min(image, axis=-1)
  # Gray pixels (chroma 0) and black pixels (value 0) have no defined hue or
  # saturation; the safe divisors keep their gradients and values finite.
  safe_value = jnp.where(value > 0, value, 1.0)
  safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / safe_value, 0.0)
  hue = jnp.where(
      value == r, (g - b) / safe_chroma,
      jnp.where(value == g, 2.0 + (b - r) / safe_chroma,
                4.0 + (r - g) / safe_chroma))
  hue = jnp.where(chroma > 0, jnp.mod(hue / 6.0, 1.0), 0.0)
  return hue, saturation, value


def hsv_to_rgb(hue: jax.Array, saturation: jax.Array,
               value: jax.Array) -> jax.Array:
  """Inverse of `rgb_to_hsv`: three `[...]` arrays -> RGB `[..., 3]`."""
  h6 = hue * 6.0
  sector = jnp.floor(h6)
  frac = h6 - sector
  sector = jnp.mod(sector.astype(jnp.int32), 6)
  p = value * (1.0 - saturation)
  q = value * (1.0 - saturation * frac)
  t = value * (1.0 - saturation * (1.0 - frac))
  conds = [sector == k for k in range(6)]
  r = jnp.select(conds, [value, q, p, p, t, value])
  g = jnp.select(conds, [t, value, value, q, p, p])
  b = jnp.select(conds, [p, p, t, value, value, q])
  return jnp.stack([r, g, b], axis=-1)


def adjust_hue(image: jax.Array, delta) -> jax.Array:
  """Rotates the hue of an RGB image by `delta` turns in [-0.5, 0.5].

  A delta of 0 is the identity (up to float rounding of the HSV round trip).
  """
  hue, saturation, value = rgb_to_hsv(image)
  rgb = hsv_to_rgb(jnp.mod(hue + delta, 1.0), saturation, value)
  return jnp.clip(rgb, 0.0, 1.0)


def _jitter_ops(strengths: Sequence[float], channels: int):
  """The jitter ops that are not identities, with their factor ranges.

  Ops with strength 0 are left out, and so are saturation and hue for
  one-channel images, where they are identities.
  """
  brightness, contrast, saturation, hue = strengths
  ops = []
  if brightness > 0:
    ops.append((adjust_brightness, max(0.0, 1.0 - brightness),
                1.0 + brightness))
  if contrast > 0:
    ops.append((adjust_contrast, max(0.0, 1.0 - contrast), 1.0 + contrast))
  if channels == 3 and saturation > 0:
    ops.append((adjust_saturation, max(0.0, 1.0 - saturation),
                1.0 + saturation))
  if channels == 3 and hue > 0:
    ops.append((adjust_hue, -hue, hue))
  return ops


def _color_jitter(u: jax.Array, image: jax.Array,
                  strengths: Sequence[float]) -> jax.Array:
  """`color_jitter` from uniforms `u`, `[2 * number of ops]` in [0, 1)."""
  ops = _jitter_ops(strengths, image.shape[-1])
  if not ops:
    return image
  n = len(ops)
  low = jnp.asarray([lo for _, lo, _ in ops], jnp.float32)
  high = jnp.asarray([hi for _, _, hi in ops], jnp.float32)
  factors = low + (high - low) * u[:n]
  # Sorting i.i.d. uniforms gives a uniformly random permutation.
  order = jnp.argsort(u[n:2 * n])
  # Each branch applies one op with its own factor; a per-example index is what
  # lets the order differ across the batch under vmap.
  branches = [lambda x, i=i, op=op: op(x, factors[i])
              for i, (op, _, _) in enumerate(ops)]
  for step in range(n):
    image = jax.lax.switch(order[step], branches, image)
  return image


def color_jitter(rng: jax.Array, image: jax.Array,
                 strengths: Sequence[float]) -> jax.Array:
  """torchvision's ColorJitter(brightness, contrast, saturation, hue).

  Factors are drawn like torchvision: brightness, contrast and saturation
  uniformly in [max(0, 1 - s), 1 + s], hue uniformly in [-s, s]; the ops run in
  a random order drawn per example. Ops with strength 0 are left out, and so are
  saturation and hue for one-channel images, where they are identities.

  Args:
    rng: PRNG key.
    image: `[H, W, C]` float in [0, 1].
    strengths: (brightness, contrast, saturation, hue) as Python numbers.

  Returns:
    `[H, W, C]` float in [0, 1].
  """
  n = len(_jitter_ops(strengths, image.shape[-1]))
  return _color_jitter(jax.random.uniform(rng, (2 * n,)), image, strengths)


# ----------------------------------------------------------------------------
# Blur and solarization.


def blur_kernel_size(side: int) -> int:
  """Odd Gaussian kernel size about 10% of the image side (23 for 224 px).

  At least 3 (so small views still blur) and at most 2 * side - 1 (so reflect
  padding stays inside the image).
  """
  size = int(0.1 * side)
  size += 1 - size % 2
  return min(max(size, 3), 2 * side - 1)


def gaussian_kernel(sigma, size: int) -> jax.Array:
  """Normalised 1-D Gaussian `[size]` centred on the middle tap."""
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  kernel = jnp.exp(-0.5 * jnp.square(x / sigma))
  return kernel / jnp.sum(kernel)


def gaussian_blur(image: jax.Array, sigma, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur of `[H, W, C]`, reflect-padded like torchvision.

  The kernel size is static and sigma may be traced (one per example); the
  taps are applied as shifted, weighted sums, which XLA fuses into one loop and
  which vmap turns into a per-example kernel without a grouped convolution.
  """
  kernel = gaussian_kernel(sigma, kernel_size)
  radius = kernel_size // 2
  height, width = image.shape[0], image.shape[1]
  padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)),
                   mode="reflect")
  rows = sum(kernel[i] * padded[i:i + height] for i in range(kernel_size))
  out = sum(kernel[i] * rows[:, i:i + width] for i in range(kernel_size))
  return jnp.clip(out, 0.0, 1.0)


def solarize(image: jax.Array, threshold: float = 0.5) -> jax.Array:
  """Inverts pixels at or above threshold: x >= t -> 1 - x; `[H, W, C]`."""
  return jnp.where(image >= threshold, 1.0 - image, image)


# ----------------------------------------------------------------------------
# The whole view.


def augment_image(rng: jax.Array, image: jax.Array, *, size: int,
                  scale: Sequence[float], ratio: Sequence[float],
                  flip_p: float, jitter: Sequence[float], jitter_p: float,
                  gray_p: float, blur_p, blur_sigma: Sequence[float],
                  solarize_p) -> jax.Array:
  """One SimCLR/BYOL/DINO view of one image.

  Order as in the reference recipes: random resized crop, horizontal flip,
  colour jitter (with probability jitter_p), grayscale, Gaussian blur (sigma
  uniform in blur_sigma, kernel about 10% of `size`), solarization. Grayscale
  is skipped for one-channel images, where it is an identity.

  Args:
    rng: PRNG key for this example and view.
    image: `[H, W, C]` float32 in [0, 1].
    size: static output side.
    scale: RandomResizedCrop area range.
    ratio: RandomResizedCrop aspect-ratio range.
    flip_p: probability of a horizontal flip.
    jitter: (brightness, contrast, saturation, hue) strengths.
    jitter_p: probability of applying colour jitter.
    gray_p: probability of converting to grayscale.
    blur_p: probability of blurring; a Python float or a traced scalar.
    blur_sigma: (min, max) of the blur's standard deviation in pixels.
    solarize_p: probability of solarizing; a Python float or a traced scalar.

  Returns:
    `[size, size, C]` float32 in [0, 1] (not normalised).
  """
  # One draw per example: every jax.random call is a separate threefry
  # computation in the compiled program, and dozens of them per view made
  # compilation several times slower than the augmentations themselves.
  n_crop = 2 * CROP_ATTEMPTS + 2
  n_jitter = 2 * len(_jitter_ops(jitter, image.shape[-1]))
  u = jax.random.uniform(rng, (n_crop + n_jitter + 6,))
  u_crop, u_jitter = u[:n_crop], u[n_crop:n_crop + n_jitter]
  coin = dict(zip(("flip", "jitter", "gray", "blur", "sigma", "solarize"),
                  u[n_crop + n_jitter:]))

  height, width = image.shape[0], image.shape[1]
  x = resized_crop(image, _crop_box(u_crop, height, width, scale, ratio), size)
  x = jnp.clip(x, 0.0, 1.0)  # bilinear weights are convex, but stay exact
  x = _apply_if(coin["flip"], flip_p, flip_left_right, x)
  x = _apply_if(coin["jitter"], jitter_p,
                lambda y: _color_jitter(u_jitter, y, jitter), x)
  if x.shape[-1] == 3:
    x = _apply_if(coin["gray"], gray_p, grayscale, x)
  sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * coin["sigma"]
  kernel_size = blur_kernel_size(size)
  x = _apply_if(coin["blur"], blur_p,
                lambda y: gaussian_blur(y, sigma, kernel_size), x)
  x = _apply_if(coin["solarize"], solarize_p, solarize, x)
  return x
