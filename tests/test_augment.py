"""Tests for jssl.data.augment (per-image ops) and jssl.data.multicrop."""
import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jssl.data import augment
from jssl.data import multicrop

BATCH = 8  # one example per simulated device in the sharding test


def _images(shape, seed=0):
  return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


@functools.lru_cache(maxsize=None)
def _jitted(aug_key):
  """One compiled make_views per config, shared by the tests that use it."""
  aug = _config(aug_key)
  return jax.jit(lambda rng, images: multicrop.make_views(rng, images, aug))


def _config(aug_key):
  recipe, kwargs = aug_key[0], dict(aug_key[1:])
  overrides = kwargs.pop("overrides", ())
  aug = multicrop.aug_config(recipe, **kwargs)
  for name, value in overrides:
    aug[name] = value
  return aug


BYOL3 = ("byol", ("global_size", 16))
DINO3 = ("dino", ("global_size", 16), ("local_size", 8), ("num_local", 3))
SIMCLR3 = ("simclr", ("global_size", 16))
BYOL1 = ("byol", ("global_size", 20), ("channels", 1), ("small_images", True))
BYOL1_RAW = BYOL1 + (("overrides", (("mean", (0.0,)), ("std", (1.0,)))),)


# ----------------------------------------------------------------------------
# Views from config.


@pytest.mark.parametrize("aug_key,channels,expected", [
    (BYOL3, 3, {"global": (2, BATCH, 16, 16, 3)}),
    (DINO3, 3, {"global": (2, BATCH, 16, 16, 3), "local": (3, BATCH, 8, 8, 3)}),
    (SIMCLR3, 3, {"global": (2, BATCH, 16, 16, 3)}),
    (BYOL1, 1, {"global": (2, BATCH, 20, 20, 1)}),
])
def test_make_views_shapes_and_range(aug_key, channels, expected):
  aug = _config(aug_key)
  views = _jitted(aug_key)(jax.random.key(0),
                           _images((BATCH, 24, 24, channels)))
  assert {k: v.shape for k, v in views.items()} == expected
  mean, std = np.asarray(aug.mean), np.asarray(aug.std)
  for v in views.values():
    assert v.dtype == jnp.float32
    raw = np.asarray(v) * std + mean  # undo the normalisation
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_normalisation_is_mean_std():
  images = _images((BATCH, 24, 24, 1))
  rng = jax.random.key(3)
  raw = _jitted(BYOL1_RAW)(rng, images)["global"]
  normed = _jitted(BYOL1)(rng, images)["global"]
  assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
  np.testing.assert_allclose(normed, (raw - 0.2860) / 0.3530, atol=1e-5)


def test_per_example_and_per_key_randomness():
  same = np.repeat(_images((1, 24, 24, 3)), BATCH, axis=0)
  f = _jitted(BYOL3)
  views = np.asarray(f(jax.random.key(0), same)["global"])
  flat = views.reshape(2 * BATCH, -1)  # every view of every example
  dists = np.abs(flat[:, None] - flat[None]).max(-1)
  off_diagonal = dists[~np.eye(2 * BATCH, dtype=bool)]
  assert off_diagonal.min() > 1e-3
  again = np.asarray(f(jax.random.key(0), same)["global"])
  np.testing.assert_array_equal(views, again)
  other = np.asarray(f(jax.random.key(1), same)["global"])
  assert np.abs(views - other).max() > 1e-3


def test_per_view_probabilities_follow_the_tuples():
  # BYOL-style asymmetry with every other op switched off: the crop covers
  # the whole image, view 1 is always blurred, view 2 always solarized.
  aug = multicrop.aug_config("byol", global_size=16, channels=1)
  aug.global_scale, aug.ratio = (1.0, 1.0), (1.0, 1.0)
  aug.flip_p = aug.jitter_p = 0.0
  aug.blur_p, aug.solarize_p = (1.0, 0.0), (0.0, 1.0)
  aug.blur_sigma = (1.0, 1.0)
  aug.mean, aug.std = (0.0,), (1.0,)
  images = _images((4, 16, 16, 1))
  views = jax.jit(lambda r, x: multicrop.make_views(r, x, aug))(
      jax.random.key(0), images)["global"]
  x = images / 255.0
  blurred = jax.vmap(lambda im: augment.gaussian_blur(im, 1.0, 3))(x)
  np.testing.assert_allclose(views[0], blurred, atol=1e-5)
  np.testing.assert_allclose(views[1], np.where(x >= 0.5, 1 - x, x),
                             atol=1e-5)


def test_make_views_sharded_over_batch():
  images = _images((BATCH, 24, 24, 3))
  f = _jitted(BYOL3)
  reference = f(jax.random.key(5), images)["global"]
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  with jax.set_mesh(mesh):
    sharded = jax.device_put(images, NamedSharding(mesh, P("data")))
    views = f(jax.random.key(5), sharded)["global"]
  assert views.sharding.spec == P(None, "data")
  np.testing.assert_allclose(views, reference, atol=1e-5)


def test_eval_preprocess():
  aug = multicrop.aug_config("byol", global_size=24)
  aug.eval_resize = 28
  images = _images((4, 28, 40, 3))
  out = multicrop.eval_preprocess(images, aug)
  assert out.shape == (4, 24, 24, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, multicrop.eval_preprocess(images, aug))
  # No resize needed: the result is the normalised centre crop itself.
  square = _images((2, 32, 32, 3))
  aug.eval_resize = 32
  mean, std = np.asarray(aug.mean), np.asarray(aug.std)
  expected = (square[:, 4:28, 4:28] / 255.0 - mean) / std
  np.testing.assert_allclose(
      multicrop.eval_preprocess(square, aug), expected, atol=1e-5)
  # Resizing a constant image keeps it constant.
  flat = np.full((1, 28, 40, 3), 51, np.uint8)
  aug.eval_resize = 28
  np.testing.assert_allclose(multicrop.eval_preprocess(flat, aug),
                             np.broadcast_to((0.2 - mean) / std,
                                             (1, 24, 24, 3)), atol=1e-5)


def test_aug_config_defaults():
  byol = multicrop.aug_config("byol", global_size=224)
  assert byol.eval_resize == 256 and byol.global_scale == (0.08, 1.0)
  assert byol.blur_p == (1.0, 0.1) and byol.solarize_p == (0.0, 0.2)
  assert multicrop.aug_config("dino", global_size=224, local_size=96,
                              num_local=10).global_scale == (0.4, 1.0)
  assert multicrop.aug_config("dino", global_size=224).global_scale == (0.14,
                                                                          1.0)
  small = multicrop.aug_config("simclr", global_size=28, channels=1,
                               small_images=True)
  assert small.blur_p == (0.0, 0.0) and small.local_blur_p == 0.0
  assert small.eval_resize == 28 and small.mean == (0.2860,)
  with pytest.raises(ValueError, match="recipe"):
    multicrop.aug_config("mocov9", global_size=32)


# ----------------------------------------------------------------------------
# validate.


@pytest.mark.parametrize("field,value", [
    ("global_size", 64),
    ("local_size", 40),
    ("global_scale", (0.0, 1.0)),
    ("global_scale", (0.5, 1.2)),
    ("local_scale", (0.4, 0.05)),
    ("ratio", (4 / 3, 3 / 4)),
    ("flip_p", 1.5),
    ("jitter_p", -0.1),
    ("gray_p", 2.0),
    ("local_blur_p", 1.1),
    ("blur_p", (1.0, 1.2)),
    ("solarize_p", (-0.2,)),
    ("blur_p", ()),
    ("solarize_p", ()),
    ("mean", (0.5, 0.5)),
    ("std", (0.5,)),
    ("num_global", 0),
    ("blur_sigma", (2.0, 0.1)),
    ("jitter", (0.4, 0.4, 0.2, 0.7)),
    ("eval_resize", 8),
])
def test_validate_rejects(field, value):
  aug = multicrop.aug_config("dino", global_size=16, local_size=8,
                             num_local=2)
  aug[field] = value
  with pytest.raises(ValueError, match=f"aug.{field}"):
    multicrop.validate(aug, (28, 28, 3))


def test_validate_names_image_size_and_runs_before_compiling():
  aug = multicrop.aug_config("byol", global_size=64)
  multicrop.validate(multicrop.aug_config("byol", global_size=28), (28, 28, 3))
  with pytest.raises(ValueError, match="aug.global_size=64 is larger than the "
                     "28x28 images"):
    jax.jit(lambda r, x: multicrop.make_views(r, x, aug)).lower(
        jax.random.key(0), jax.ShapeDtypeStruct((2, 28, 28, 3), jnp.uint8))


# ----------------------------------------------------------------------------
# Single ops on hand-made cases.


def _float_image(shape, seed=0):
  return jnp.asarray(np.random.RandomState(seed).rand(*shape), jnp.float32)


def test_flip_reverses_columns():
  image = jnp.arange(2 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 1)
  np.testing.assert_array_equal(augment.flip_left_right(image)[:, :, 0],
                                [[2, 1, 0], [5, 4, 3]])


def test_solarize():
  x = jnp.asarray([0.0, 0.25, 0.49, 0.5, 0.75, 1.0]).reshape(1, 6, 1)
  np.testing.assert_allclose(augment.solarize(x).ravel(),
                             [0.0, 0.25, 0.49, 0.5, 0.25, 0.0])


def test_grayscale_weights_and_gray_identity():
  image = _float_image((4, 5, 3))
  expected = image @ jnp.asarray([0.299, 0.587, 0.114])
  gray = augment.grayscale(image)
  assert gray.shape == (4, 5, 3)
  for c in range(3):
    np.testing.assert_allclose(gray[..., c], expected, atol=1e-6)
  already_gray = jnp.repeat(image[..., :1], 3, axis=-1)
  np.testing.assert_allclose(augment.grayscale(already_gray), already_gray,
                             atol=1e-6)


def test_gaussian_blur():
  for sigma in (0.1, 0.7, 2.0):
    np.testing.assert_allclose(augment.gaussian_kernel(sigma, 5).sum(), 1.0,
                               atol=1e-6)
  assert [augment.blur_kernel_size(s) for s in (224, 96, 32, 8, 1)] == [
      23, 9, 3, 3, 1]
  constant = jnp.full((9, 9, 3), 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(constant, 1.3, 5), constant,
                             atol=1e-6)
  # Against a direct 2-D convolution with reflect padding.
  image = _float_image((9, 7, 1))
  kernel = np.asarray(augment.gaussian_kernel(1.3, 5))
  padded = np.pad(np.asarray(image)[..., 0], 2, mode="reflect")
  direct = np.zeros((9, 7))
  for dy in range(5):
    for dx in range(5):
      direct += kernel[dy] * kernel[dx] * padded[dy:dy + 9, dx:dx + 7]
  np.testing.assert_allclose(augment.gaussian_blur(image, 1.3, 5)[..., 0],
                             direct, atol=1e-5)


def test_colour_ops_identities_and_extremes():
  # Compiled once each: op-by-op dispatch of the HSV round trip is slower.
  adjust_brightness = jax.jit(augment.adjust_brightness)
  adjust_contrast = jax.jit(augment.adjust_contrast)
  adjust_saturation = jax.jit(augment.adjust_saturation)
  adjust_hue = jax.jit(augment.adjust_hue)
  image = _float_image((6, 6, 3))
  gray = _float_image((6, 6, 1))
  for x in (image, gray):
    np.testing.assert_allclose(adjust_brightness(x, 1.0), x, atol=1e-6)
    np.testing.assert_allclose(adjust_contrast(x, 1.0), x, atol=1e-6)
    np.testing.assert_allclose(adjust_brightness(x, 0.0), 0 * x)
    flat = adjust_contrast(x, 0.0)  # the mean gray level everywhere
    np.testing.assert_allclose(flat, jnp.full_like(x, flat[0, 0, 0]),
                               atol=1e-6)
  np.testing.assert_allclose(adjust_saturation(image, 1.0), image,
                             atol=1e-6)
  np.testing.assert_allclose(adjust_saturation(image, 0.0),
                             augment.grayscale(image), atol=1e-6)
  np.testing.assert_allclose(adjust_hue(image, 0.0), image, atol=1e-5)
  red = jnp.asarray([[[1.0, 0.0, 0.0]]])
  np.testing.assert_allclose(adjust_hue(red, 1 / 3), [[[0, 1, 0]]],
                             atol=1e-5)
  for op, factor in ((adjust_brightness, 3.0),
                     (adjust_contrast, 3.0),
                     (adjust_saturation, 3.0),
                     (adjust_hue, -0.5)):
    out = op(image, factor)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_hsv_matches_colorsys():
  pixels = np.concatenate([np.random.RandomState(1).rand(20, 3),
                           [[0.2, 0.2, 0.2], [0, 0, 0], [1, 0, 1]]])
  h, s, v = augment.rgb_to_hsv(jnp.asarray(pixels, jnp.float32))
  expected = np.asarray([colorsys.rgb_to_hsv(*p) for p in pixels])
  np.testing.assert_allclose(np.stack([h, s, v], -1), expected, atol=1e-5)
  np.testing.assert_allclose(augment.hsv_to_rgb(h, s, v), pixels, atol=1e-5)


def test_color_jitter_order_and_range():
  image = _float_image((6, 6, 3))
  out = augment.color_jitter(jax.random.key(0), image, (0.8, 0.8, 0.8, 0.5))
  assert out.shape == image.shape
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  zero = augment.color_jitter(jax.random.key(0), image, (0.0, 0.0, 0.0, 0.0))
  np.testing.assert_array_equal(zero, image)
  one_channel = augment.color_jitter(jax.random.key(0), image[..., :1],
                                     (0.4, 0.4, 0.2, 0.1))
  assert one_channel.shape == (6, 6, 1)


def test_random_resized_crop():
  # Jitted (sizes and ranges static): op-by-op dispatch here is slower.
  crop = jax.jit(augment.random_resized_crop, static_argnums=(2, 3, 4))
  sample = jax.jit(jax.vmap(augment.sample_crop_box,
                            in_axes=(0, None, None, None, None)),
                   static_argnums=(1, 2, 3, 4))
  image = _float_image((12, 12, 3))
  same = crop(jax.random.key(0), image, 12, (1.0, 1.0), (1.0, 1.0))
  np.testing.assert_allclose(same, image, atol=1e-5)
  # Boxes lie inside the image and cover the requested area range.
  boxes = np.asarray(sample(jax.random.split(jax.random.key(1), 256), 20, 30,
                            (0.1, 0.5), (3 / 4, 4 / 3)))
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= 20).all() and (left + w <= 30).all()
  area = h * w / 600
  assert area.min() > 0.08 and area.max() < 0.56
  assert len(set(map(tuple, boxes))) > 100  # boxes vary
  # No attempt can fit an aspect ratio of 2 covering the whole square image:
  # torchvision's fallback is the centred box with the ratio clamped to 2.
  box = sample(jax.random.split(jax.random.key(2), 1), 12, 12, (1.0, 1.0),
               (2.0, 2.0))
  np.testing.assert_array_equal(box, [[3, 0, 6, 12]])
