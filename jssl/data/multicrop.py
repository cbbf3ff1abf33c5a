"""Multi-view batches from an augmentation config, computed on the accelerator.

`make_views` turns a uint8 batch into the global (and, for DINO-style
multi-crop, local) views a method consumes, grouped by resolution so every
group has a static shape. `aug_config` holds the defaults of the SimCLR, BYOL
and DINO recipes and of supervised training; `validate` rejects a bad config
with one sentence before anything is compiled.

Typical use inside a jitted step (the config is static, so it is closed over):

  aug = aug_config("byol", global_size=224)
  views = make_views(jax.random.fold_in(rng, step), images, aug)
  views["global"]  # float32 [2, B, 224, 224, 3]
"""

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from jssl.data import augment

RECIPES = ("byol", "dino", "simclr", "supervised")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fashion-MNIST train-set statistics, the one-channel data jssl ships with.
GRAY_MEAN = (0.2860,)
GRAY_STD = (0.3530,)


def aug_config(recipe: str, *, global_size: int, local_size: int = 0,
               num_local: int = 0, channels: int = 3,
               small_images: bool = False) -> ml_collections.ConfigDict:
  """Default augmentation config of a recipe.

  Args:
    recipe: one of "byol", "dino", "simclr", "supervised" (one view: random
      resized crop and flip only, torchvision's ImageNet classification recipe).
    global_size: side of the global views.
    local_size: side of the local views (multi-crop only).
    num_local: number of local views; 0 disables multi-crop.
    channels: 1 or 3; picks the normalisation statistics.
    small_images: True for 28-32 px data, where blur is dropped (METHODS.md).

  Returns:
    A ConfigDict of plain ints, floats and tuples, so that every field can be
    overridden from the command line. Per-view tuples (blur_p, solarize_p) are
    cycled over the global views.
  """
  if recipe not in RECIPES:
    raise ValueError(f"recipe={recipe!r} is not one of {RECIPES}.")
  if channels not in (1, 3):
    raise ValueError(f"channels={channels} must be 1 or 3.")
  c = ml_collections.ConfigDict()
  c.recipe = recipe
  c.num_global = 2
  c.num_local = num_local
  c.global_size = global_size
  c.local_size = local_size
  if recipe == "dino":
    # DINO's 0.4 lower bound assumes local crops cover the small scales; with
    # no local crops the SOVE code's 0.14 is used instead.
    c.global_scale = (0.4, 1.0) if num_local > 0 else (0.14, 1.0)
  else:
    c.global_scale = (0.08, 1.0)
  c.local_scale = (0.05, 0.4)
  c.ratio = (3 / 4, 4 / 3)
  c.flip_p = 0.5
  c.jitter = (0.4, 0.4, 0.2, 0.1)
  c.jitter_p = 0.8
  c.gray_p = 0.2
  if recipe == "simclr":
    c.blur_p = (0.5, 0.5)
    c.solarize_p = (0.0, 0.0)
  else:
    # BYOL's asymmetric pair: always blur view 1, solarize only view 2.
    c.blur_p = (1.0, 0.1)
    c.solarize_p = (0.0, 0.2)
  c.local_blur_p = 0.5
  c.blur_sigma = (0.1, 2.0)
  c.local_solarize_p = 0.0
  if recipe == "supervised":
    c.num_global = 1
    c.jitter_p = c.gray_p = 0.0
    c.blur_p, c.solarize_p = (0.0,), (0.0,)
  if small_images:
    # A 10% kernel on 28-32 px is 3 taps: blur mostly destroys the little
    # detail such images have, so the small-image recipes drop it.
    c.blur_p = tuple(0.0 for _ in c.blur_p)
    c.local_blur_p = 0.0
  c.mean = IMAGENET_MEAN if channels == 3 else GRAY_MEAN
  c.std = IMAGENET_STD if channels == 3 else GRAY_STD
  c.eval_resize = (global_size if small_images
                   else int(round(global_size / 0.875)))
  return c


def _per_view(value) -> tuple:
  """A per-view field as a tuple; a bare number means the same for all views."""
  if isinstance(value, numbers.Number):
    return (value,)
  return tuple(value)


def _check_prob(name: str, value) -> None:
  if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
    raise ValueError(f"aug.{name}={value!r} must be a probability in [0, 1].")


def _check_range(name: str, value, *, upper: float | None = None) -> None:
  """(min, max) with 0 < min <= max (<= upper when given)."""
  bound = "" if upper is None else f" <= {upper}"
  ok = (isinstance(value, Sequence) and len(value) == 2 and
        all(isinstance(v, numbers.Real) for v in value) and
        0 < value[0] <= value[1] and (upper is None or value[1] <= upper))
  if not ok:
    raise ValueError(
        f"aug.{name}={value!r} must be a pair (min, max) with "
        f"0 < min <= max{bound}.")


def validate(aug: ml_collections.ConfigDict,
             image_shape: tuple[int, int, int]) -> None:
  """Checks an augmentation config against the image shape.

  Args:
    aug: config as made by `aug_config`, possibly overridden.
    image_shape: (H, W, C) of the images `make_views` will receive.

  Raises:
    ValueError: one sentence naming the first bad field.
  """
  height, width, channels = image_shape
  if channels not in (1, 3):
    raise ValueError(f"Images have {channels} channels; augmentation needs 1 "
                     "or 3.")
  side = min(height, width)
  if not isinstance(aug.num_global, int) or aug.num_global < 1:
    raise ValueError(f"aug.num_global={aug.num_global!r} must be an integer "
                     ">= 1.")
  if not isinstance(aug.num_local, int) or aug.num_local < 0:
    raise ValueError(f"aug.num_local={aug.num_local!r} must be an integer "
                     ">= 0.")
  sizes = ["global_size"] + (["local_size"] if aug.num_local > 0 else [])
  for name in sizes:
    size = aug[name]
    if not isinstance(size, int) or size < 1:
      raise ValueError(f"aug.{name}={size!r} must be a positive integer "
                       f"(aug.num_local={aug.num_local}).")
    if size > side:
      raise ValueError(
          f"aug.{name}={size} is larger than the {height}x{width} images; set "
          f"it to at most {side} or use larger images.")
  _check_range("global_scale", aug.global_scale, upper=1.0)
  if aug.num_local > 0:
    _check_range("local_scale", aug.local_scale, upper=1.0)
  _check_range("ratio", aug.ratio)
  _check_range("blur_sigma", aug.blur_sigma)
  for name in ("flip_p", "jitter_p", "gray_p", "local_blur_p",
               "local_solarize_p"):
    _check_prob(name, aug[name])
  for name in ("blur_p", "solarize_p"):
    values = _per_view(aug[name])
    if not values:
      raise ValueError(f"aug.{name} is empty; give one probability per global "
                       "view (cycled when shorter).")
    for v in values:
      _check_prob(name, v)
  jitter = aug.jitter
  if (not isinstance(jitter, Sequence) or len(jitter) != 4 or
      not all(isinstance(v, numbers.Real) and v >= 0 for v in jitter) or
      jitter[3] > 0.5):
    raise ValueError(
        f"aug.jitter={jitter!r} must be four non-negative strengths "
        "(brightness, contrast, saturation, hue) with hue <= 0.5.")
  for name in ("mean", "std"):
    stats = _per_view(aug[name])
    if len(stats) != channels:
      raise ValueError(f"aug.{name}={aug[name]!r} has {len(stats)} values but "
                       f"the images have {channels} channels.")
  if any(s <= 0 for s in _per_view(aug.std)):
    raise ValueError(f"aug.std={aug.std!r} must be positive.")
  if not isinstance(aug.eval_resize, int) or aug.eval_resize < aug.global_size:
    raise ValueError(
        f"aug.eval_resize={aug.eval_resize!r} must be an integer >= "
        f"aug.global_size={aug.global_size} (the centre crop is cut from it).")


def _view_group(rng: jax.Array, images: jax.Array, aug, *, num: int,
                size: int, scale, blur_p: tuple, solarize_p: tuple
                ) -> jax.Array:
  """`num` views of every image at one resolution: `[num, B, size, size, C]`."""
  batch = images.shape[0]
  static, per_view = {}, {}
  for name, ps in (("blur_p", blur_p), ("solarize_p", solarize_p)):
    ps = tuple(float(ps[i % len(ps)]) for i in range(num))
    # Views that agree keep the probability static (a 0 removes the op from
    # the program); views that differ get it as a traced per-view scalar.
    if len(set(ps)) == 1:
      static[name] = ps[0]
    else:
      per_view[name] = jnp.asarray(ps, jnp.float32)
  one_image = functools.partial(
      augment.augment_image, size=size, scale=tuple(scale),
      ratio=tuple(aug.ratio), flip_p=float(aug.flip_p),
      jitter=tuple(aug.jitter), jitter_p=float(aug.jitter_p),
      gray_p=float(aug.gray_p), blur_sigma=tuple(aug.blur_sigma), **static)

  def one_view(key, probs):
    keys = jax.random.split(key, batch)
    return jax.vmap(lambda k, x: one_image(k, x, **probs))(keys, images)

  view_keys = jax.random.split(rng, num)
  return jax.vmap(one_view)(view_keys, per_view)


def make_views(rng: jax.Array, images: jax.Array,
               aug: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Augmented, normalised views of a batch.

  Every view of every example gets its own key, split from `rng`. Jittable:
  `aug` is read while tracing, so close over it (it is static).

  Args:
    rng: PRNG key.
    images: uint8 `[B, H, W, C]`, C in {1, 3} (float input in [0, 1] also
      works).
    aug: augmentation config (see `aug_config`).

  Returns:
    {"global": float32 `[G, B, S, S, C]`} with G = aug.num_global and
    S = aug.global_size, plus "local": float32 `[L, B, s, s, C]` with
    L = aug.num_local and s = aug.local_size when L > 0; normalised with
    aug.mean and aug.std.
  """
  validate(aug, tuple(images.shape[1:]))
  x = augment.to_float(images)
  global_rng, local_rng = jax.random.split(rng)
  views = {
      "global": _view_group(
          global_rng, x, aug, num=aug.num_global, size=aug.global_size,
          scale=aug.global_scale, blur_p=_per_view(aug.blur_p),
          solarize_p=_per_view(aug.solarize_p)),
  }
  if aug.num_local > 0:
    views["local"] = _view_group(
        local_rng, x, aug, num=aug.num_local, size=aug.local_size,
        scale=aug.local_scale, blur_p=(aug.local_blur_p,),
        solarize_p=(aug.local_solarize_p,))
  mean, std = tuple(aug.mean), tuple(aug.std)
  return {k: augment.normalize(v, mean, std) for k, v in views.items()}


def eval_preprocess(images: jax.Array,
                    aug: ml_collections.ConfigDict) -> jax.Array:
  """Deterministic evaluation view: resize, centre crop, normalise.

  As torchvision's Resize(eval_resize) + CenterCrop(global_size): the shorter
  side is resized to aug.eval_resize (bilinear, antialiased), the longer one
  keeps the aspect ratio, and a centred aug.global_size square is cut out.

  Args:
    images: uint8 `[B, H, W, C]`.
    aug: augmentation config.

  Returns:
    float32 `[B, S, S, C]` with S = aug.global_size, normalised.
  """
  batch, height, width, channels = images.shape
  size, resize = aug.global_size, aug.eval_resize
  if resize < size:
    raise ValueError(
        f"aug.eval_resize={resize} must be >= aug.global_size={size} (the "
        "centre crop is taken from it).")
  if len(tuple(aug.mean)) != channels or len(tuple(aug.std)) != channels:
    raise ValueError(f"aug.mean/aug.std have {len(tuple(aug.mean))}/"
                     f"{len(tuple(aug.std))} values but the images have "
                     f"{channels} channels.")
  if height <= width:
    new_h, new_w = resize, int(resize * width / height)
  else:
    new_h, new_w = int(resize * height / width), resize
  x = augment.to_float(images)
  if (new_h, new_w) != (height, width):
    x = jax.image.resize(x, (batch, new_h, new_w, channels), method="linear",
                         antialias=True)
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  x = x[:, top:top + size, left:left + size, :]
  return augment.normalize(x, tuple(aug.mean), tuple(aug.std))
