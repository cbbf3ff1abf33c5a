"""Random-access image sources: Fashion-MNIST (IDX), sklearn digits, TFDS, synthetic.

Every source is a grain-compatible random-access data source: `len(source)` and
`source[i] -> {"image": uint8 [H, W, C], "label": int32 scalar}`, plus the
attributes `image_shape` (H, W, C) and `num_classes`, and a vectorised
`get_batch(indices) -> {"image": uint8 [B, H, W, C], "label": int32 [B]}` that the
pipeline uses to read a whole batch in one call. Labels are only used by evaluation.

Splits use the TFDS slicing syntax for every source: `"train"`, `"train[:10%]"`,
`"train[90%:]"`, `"train[:5000]"`, `"test[-1000:]"`; validation splits are carved
from train this way.

`data.image_size` (an int) makes every image a fixed `image_size x image_size`
square: the centre square of the image (side = the shorter side) is resized with
antialiased bilinear filtering, which equals resizing the shorter side and
centre-cropping. Per-item TFDS images are resized with PIL when it is importable
(pillow comes with matplotlib; it is several times faster per image), otherwise
with the numpy resampler that also resizes whole in-memory arrays at once.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from typing import Any

import ml_collections
from ml_collections import config_dict
import numpy as np

from jssl.data import fashion_mnist
from jssl.data.tfds_paths import tfds_data_dir

try:
  from PIL import Image as _PIL_Image
except ImportError:  # Optional: the numpy fallback is used instead.
  _PIL_Image = None

SOURCES = ("fashion_mnist", "digits", "tfds", "synthetic")
FASHION_MNIST_ENV = fashion_mnist.FASHION_MNIST_ENV
DEFAULT_FASHION_MNIST_DIR = fashion_mnist.DEFAULT_FASHION_MNIST_DIR
_DIGITS_NUM_TRAIN = 1437
_DIGITS_SEED = 0


def data_config(source: str = "fashion_mnist",
                **overrides) -> ml_collections.ConfigDict:
  """Returns the `data` config block with defaults for `source`.

  Args:
    source: one of "fashion_mnist", "digits", "tfds", "synthetic".
    **overrides: values for existing fields, e.g. `name="cifar10"`.

  Returns:
    A ConfigDict. Fields that default to None are typed placeholders so they can
    be set from the command line (`--config.data.image_size=224`).
  """
  data = ml_collections.ConfigDict(dict(
      source=source,
      name=config_dict.placeholder(str),  # TFDS dataset name (source "tfds").
      data_dir=config_dict.placeholder(str),  # IDX dir or TFDS data_dir.
      train_split="train",
      eval_split="test",
      image_size=config_dict.placeholder(int),  # None keeps the native size.
      image_key="image",
      label_key="label",
      num_classes=config_dict.placeholder(int),  # None: from the dataset.
      download=True,  # Fashion-MNIST: fall back to a TFDS download.
      synthetic_examples=1024,
      synthetic_shape=(32, 32, 3),
      synthetic_classes=10,
      synthetic_seed=0,
      worker_count=0,  # grain worker processes; 0 reads in this process.
      read_threads=8,  # threads assembling batches in each process.
      prefetch_batches=8,  # batches read ahead in each process.
  ))
  unknown = sorted(set(overrides) - set(data.keys()))
  if unknown:
    raise ValueError(f"data_config got unknown fields {unknown}; expected some of "
                     f"{sorted(data.keys())}.")
  data.update(overrides)
  _check_source(data)
  return data


def _check_source(data: ml_collections.ConfigDict) -> None:
  if data.source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {data.source!r}.")
  if data.source == "tfds" and not data.name:
    raise ValueError("data.name must name a TFDS dataset (e.g. 'cifar10') when "
                     "data.source is 'tfds'.")
  if data.image_size is not None and data.image_size <= 0:
    raise ValueError(f"data.image_size must be None or a positive int, got "
                     f"{data.image_size}.")


# ---------------------------------------------------------------------------
# Split syntax.

_SPLIT_RE = re.compile(
    r"^\s*([A-Za-z0-9_\-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def parse_split(split: str) -> tuple[str, str | None, str | None]:
  """Splits `"train[10%:5000]"` into `("train", "10%", "5000")`.

  Raises:
    ValueError: when `split` is not `name` or `name[start:stop]` with integer or
      percent bounds.
  """
  match = _SPLIT_RE.match(split) if isinstance(split, str) else None
  if match is None:
    raise ValueError(f"Split {split!r} must be 'name' or 'name[start:stop]' with "
                     "integer or percent bounds, e.g. 'train[:90%]'.")
  return match.group(1), match.group(2), match.group(3)


def _resolve_bound(split: str, text: str | None, n: int, default: int) -> int:
  if text is None:
    return default
  if text.endswith("%"):
    percent = int(text[:-1])
    if abs(percent) > 100:
      raise ValueError(f"Split {split!r} has a percent bound outside -100%..100%.")
    # Round half up so that "[:p%]" and "[p%:]" partition the split exactly.
    value = int(math.copysign(math.floor(n * abs(percent) / 100 + 0.5), percent))
  else:
    value = int(text)
  if value < 0:
    value += n
  return min(max(value, 0), n)


def split_range(split: str, num_examples: int) -> tuple[int, int]:
  """Returns the `[start, stop)` example range that `split` selects.

  Args:
    split: e.g. "train", "train[:10%]", "train[90%:]", "train[-500:]".
    num_examples: the size of the unsliced split.

  Returns:
    `(start, stop)` with `0 <= start <= stop <= num_examples`.
  """
  _, start, stop = parse_split(split)
  lo = _resolve_bound(split, start, num_examples, 0)
  hi = _resolve_bound(split, stop, num_examples, num_examples)
  return lo, max(lo, hi)


# ---------------------------------------------------------------------------
# Resizing.


def _square_box(height: int, width: int) -> tuple[float, float, float]:
  side = min(height, width)
  return (height - side) / 2, (width - side) / 2, side


def _interpolation_matrix(offset: float, side: int, extent: int, size: int
                          ) -> np.ndarray:
  """Returns float32 [size, extent] weights resampling `side` pixels to `size`.

  A triangle (bilinear) filter centred on each output pixel, widened by the
  downscaling factor so that shrinking averages rather than aliases; weights
  that fall outside the image are dropped and the rest renormalised.
  """
  scale = side / size
  support = max(scale, 1.0)
  centres = offset + (np.arange(size) + 0.5) * scale - 0.5
  distance = np.abs(np.arange(extent)[None, :] - centres[:, None]) / support
  weights = np.maximum(0.0, 1.0 - distance)
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
  """Centre-square crops and resizes a batch with antialiased bilinear filtering.

  Resampling is separable, so each axis is one matrix product; whole in-memory
  datasets resize at BLAS speed (Fashion-MNIST to 32x32 in well under a second).

  Args:
    images: uint8 [N, H, W, C].
    size: output side.
    chunk: images per matrix product, bounding the float32 temporaries.

  Returns:
    uint8 [N, size, size, C].
  """
  n, height, width, channels = images.shape
  if height == width == size:
    return images
  top, left, side = _square_box(height, width)
  rows = _interpolation_matrix(top, side, height, size)  # [size, H]
  cols = _interpolation_matrix(left, side, width, size)  # [size, W]
  out = np.empty((n, size, size, channels), np.uint8)
  for i in range(0, n, chunk):
    # Channels first, so both products are batched [size, H] @ [H, W] GEMMs.
    x = images[i:i + chunk].transpose(0, 3, 1, 2).astype(np.float32)
    x = np.matmul(np.matmul(rows, x), cols.T)  # [n, C, size, size]
    out[i:i + chunk] = np.clip(np.round(x), 0, 255).transpose(0, 2, 3, 1)
  return out


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """Centre-square crops and resizes one image, with PIL when available.

  Args:
    image: uint8 [H, W, C].
    size: output side.

  Returns:
    uint8 [size, size, C].
  """
  height, width, channels = image.shape
  if height == width == size:
    return image
  if _PIL_Image is None or channels not in (1, 3, 4):
    return resize_images(image[None], size)[0]
  top, left, side = _square_box(height, width)
  pil = _PIL_Image.fromarray(image[..., 0] if channels == 1 else image)
  # `box` crops in source coordinates before resampling, so the crop and the
  # (antialiased) resize are one exact operation.
  pil = pil.resize((size, size), _PIL_Image.Resampling.BILINEAR,
                   box=(left, top, left + side, top + side))
  return np.asarray(pil).reshape(size, size, channels)


# ---------------------------------------------------------------------------
# Sources.


class ArraySource:
  """An in-memory source over image and label arrays.

  Attributes:
    images: uint8 [N, H, W, C].
    labels: int32 [N].
    image_shape: (H, W, C).
    num_classes: number of classes.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int):
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} "
                       f"{images.shape}.")
    if labels.shape != images.shape[:1]:
      raise ValueError(f"labels must be [N={len(images)}], got {labels.shape}.")
    self.images = images
    self.labels = labels.astype(np.int32, copy=False)
    self.image_shape = tuple(images.shape[1:])
    self.num_classes = int(num_classes)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"image": self.images[index], "label": self.labels[index]}

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Returns {"image": uint8 [B, H, W, C], "label": int32 [B]}."""
    indices = np.asarray(indices, dtype=np.int64)
    return {"image": self.images[indices], "label": self.labels[indices]}

  def __repr__(self) -> str:
    return f"ArraySource(n={len(self)}, image_shape={self.image_shape})"


class SyntheticSource:
  """Deterministic random images from a seed, for tests and benchmarks.

  Each class has a fixed coarse 4x4 colour pattern; an image is half its class
  pattern plus half a noise image, so labels carry signal (k-NN beats chance).
  Noise images come from a bank of at most 128 per split so that batches are
  one vectorised gather even at 224x224 (benchmarks must not be input-bound).
  Example `i` depends only on (seed, split name, i).
  """

  _BANK = 128

  def __init__(self, total_examples: int, image_shape: tuple[int, int, int],
               num_classes: int, seed: int, split_name: str,
               start: int = 0, stop: int | None = None):
    """Selects examples [start, stop) of a split of `total_examples`."""
    self.image_shape = tuple(int(d) for d in image_shape)
    self.num_classes = int(num_classes)
    height, width, channels = self.image_shape
    split_seed = zlib.crc32(split_name.encode())
    # Drawn for the whole split, so that a slice sees the same examples.
    labels = np.random.default_rng([seed, split_seed, 0]).integers(
        0, self.num_classes, total_examples).astype(np.int32)
    self._noise = np.random.default_rng([seed, split_seed, 1]).integers(
        0, 256, (min(total_examples, self._BANK), *self.image_shape),
        dtype=np.uint8) // 2
    stop = total_examples if stop is None else stop
    self._labels = labels[start:stop]
    self._bank_ids = np.arange(start, stop) % self._BANK
    coarse = np.random.default_rng(seed).integers(
        0, 256, (self.num_classes, 4, 4, channels), dtype=np.uint8)
    rows = np.arange(height) * 4 // height
    cols = np.arange(width) * 4 // width
    self._patterns = np.ascontiguousarray(coarse[:, rows][:, :, cols] // 2)

  def __len__(self) -> int:
    return len(self._labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    label = self._labels[index]
    return {"image": self._patterns[label] + self._noise[self._bank_ids[index]],
            "label": label}

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = np.asarray(indices, dtype=np.int64)
    labels = self._labels[indices]
    return {"image": self._patterns[labels] + self._noise[self._bank_ids[indices]],
            "label": labels}

  def __repr__(self) -> str:
    return f"SyntheticSource(n={len(self)}, image_shape={self.image_shape})"


class TfdsSource:
  """A prepared TFDS ArrayRecord dataset read with `tfds.data_source` (no TF)."""

  def __init__(self, data: ml_collections.ConfigDict, split: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    name, data_dir = data.name, data.data_dir or tfds_data_dir()
    builder = _tfds_builder(name, data_dir)
    self._source = tfds.data_source(name, split=split, data_dir=data_dir,
                                    download=False)
    self._image_key, self._label_key = data.image_key, data.label_key
    self._image_size = data.image_size
    features = builder.info.features
    for key in (self._image_key, self._label_key):
      if key not in features:
        raise ValueError(f"TFDS dataset {name!r} has no feature {key!r} (set "
                         f"data.image_key / data.label_key); it has "
                         f"{sorted(features.keys())}.")
    shape = tuple(features[self._image_key].shape)
    if len(shape) == 2:
      shape = (*shape, 1)
    if self._image_size is not None:
      shape = (self._image_size, self._image_size, shape[-1])
    elif None in shape:
      raise ValueError(f"TFDS dataset {name!r} has images of varying size "
                       f"{shape}; set data.image_size for fixed batch shapes.")
    self.image_shape = shape
    self.num_classes = _tfds_num_classes(data, features[self._label_key],
                                         self._source)

  def __len__(self) -> int:
    return len(self._source)

  def _convert(self, example: dict[str, Any]) -> dict[str, np.ndarray]:
    image = np.asarray(example[self._image_key])
    if image.ndim == 2:
      image = image[..., None]
    if image.dtype != np.uint8:
      raise ValueError(f"TFDS feature {self._image_key!r} must be uint8, got "
                       f"{image.dtype}.")
    if self._image_size is not None:
      image = resize_image(image, self._image_size)
    return {"image": image, "label": np.int32(example[self._label_key])}

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self._convert(self._source[int(index)])

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    # ArrayRecord reads a list of keys in one (parallel) call.
    examples = self._source.__getitems__([int(i) for i in indices])
    return _stack([self._convert(example) for example in examples])

  def __repr__(self) -> str:
    return f"TfdsSource({self._source!r})"


def _tfds_builder(name: str, data_dir: str):
  """Returns the TFDS builder of a prepared dataset, or raises FileNotFoundError."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  message = (
      f"TFDS dataset {name!r} is not prepared in data_dir {data_dir!r}; prepare "
      f"it in ArrayRecord format with `tfds build {name} --data_dir={data_dir} "
      "--file_format=array_record` (or builder.download_and_prepare("
      "file_format='array_record')), or set data.data_dir to where it is.")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise FileNotFoundError(message) from None
  if not builder.is_prepared():
    raise FileNotFoundError(message)
  return builder


def _tfds_num_classes(data, label_feature, source) -> int:
  if data.num_classes is not None:
    return int(data.num_classes)
  num_classes = getattr(label_feature, "num_classes", None)
  if num_classes is not None:
    return int(num_classes)
  if len(source) > 20_000:
    raise ValueError(f"TFDS dataset {data.name!r} has no ClassLabel feature "
                     f"{data.label_key!r}; set data.num_classes.")
  # Plain integer labels: a small dataset is cheap to scan once.
  labels = [int(source[i][data.label_key]) for i in range(len(source))]
  return max(labels, default=-1) + 1


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


# ---------------------------------------------------------------------------
# Fashion-MNIST.

@functools.lru_cache(maxsize=1)
def _digits_splits():
  """Returns {"train": (images, labels), "test": ...} with a fixed-seed split."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(_DIGITS_SEED).permutation(len(labels))
  splits = {"train": order[:_DIGITS_NUM_TRAIN], "test": order[_DIGITS_NUM_TRAIN:]}
  out = {}
  for name, idx in splits.items():
    split_images, split_labels = images[idx], labels[idx]
    split_images.flags.writeable = split_labels.flags.writeable = False
    out[name] = (split_images, split_labels)
  return out


# ---------------------------------------------------------------------------
# Public entry points.


def get_source(data: ml_collections.ConfigDict, split: str):
  """Returns a grain-compatible random-access source for `split`.

  Args:
    data: the `data` config (see `data_config`).
    split: a split name with optional TFDS-style slice, e.g. "train[:90%]".

  Returns:
    A source with `__len__`, `__getitem__(i) -> {"image": uint8 [H, W, C],
    "label": int32 []}`, `get_batch(indices)`, `image_shape` and `num_classes`.
  """
  _check_source(data)
  if data.source == "tfds":
    return TfdsSource(data, split)
  name = parse_split(split)[0]
  if data.source == "synthetic":
    lo, hi = split_range(split, data.synthetic_examples)
    return SyntheticSource(data.synthetic_examples, tuple(data.synthetic_shape),
                           data.num_classes or data.synthetic_classes,
                           data.synthetic_seed, name, start=lo, stop=hi)
  if data.source == "digits":
    splits = _digits_splits()
    if name not in splits:
      raise ValueError(f"digits has splits {sorted(splits)}, got {name!r}.")
    images, labels = splits[name]
  else:
    images, labels = fashion_mnist.arrays(data, name)
  lo, hi = split_range(split, len(images))
  images, labels = images[lo:hi], labels[lo:hi]
  if data.image_size is not None:
    images = resize_images(images, data.image_size)
  return ArraySource(images, labels, data.num_classes or 10)


def load_arrays(data: ml_collections.ConfigDict, split: str,
                max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads (the first `max_examples` of) a split into memory.

  Returns:
    images uint8 [N, H, W, C] and labels int32 [N]; may be read-only views of
    the cached dataset.
  """
  source = get_source(data, split)
  n = len(source) if max_examples is None else min(len(source), max_examples)
  if isinstance(source, ArraySource):
    return source.images[:n], source.labels[:n]
  if n == 0:
    return (np.zeros((0, *source.image_shape), np.uint8), np.zeros((0,), np.int32))
  chunks = [source.get_batch(np.arange(i, min(i + 1024, n)))
            for i in range(0, n, 1024)]
  return (np.concatenate([c["image"] for c in chunks]),
          np.concatenate([c["label"] for c in chunks]))


def dataset_info(data: ml_collections.ConfigDict) -> dict[str, Any]:
  """Returns image_shape (H, W, C), num_classes and num_train (of train_split)."""
  source = get_source(data, data.train_split)
  return dict(image_shape=tuple(source.image_shape),
              num_classes=source.num_classes, num_train=len(source))
