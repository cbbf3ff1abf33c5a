"""Fashion-MNIST from its IDX files (the Debian package `dataset-fashion-mnist`),
a directory named by the config or $JSSL_FASHION_MNIST_DIR, or, where there is
internet, TFDS's checksummed download of the same files."""

from __future__ import annotations

import functools
import gzip
import math
import os
import socket
import urllib.parse
import zlib

import ml_collections
import numpy as np

from jssl.data.tfds_paths import tfds_data_dir

FASHION_MNIST_ENV = "JSSL_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_INSTALL_HINT = (
    "install them with `sudo apt-get install dataset-fashion-mnist`, or set "
    f"{FASHION_MNIST_ENV} or data.data_dir to a directory holding "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")


_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (gzipped or not) into a read-only array.

  Raises:
    ValueError: naming the file when it is not valid gzip, has a wrong magic
      number, or is truncated.
  """
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"IDX file {path} is not valid gzip data ({e}).") from e
  if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
    raise ValueError(f"IDX file {path} has a wrong magic number {raw[:4]!r}.")
  ndim = raw[3]
  offset = 4 + 4 * ndim
  if len(raw) < offset:
    raise ValueError(f"IDX file {path} is truncated inside its header.")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = math.prod(dims) * dtype.itemsize
  if len(raw) - offset != expected:
    raise ValueError(f"IDX file {path} holds {len(raw) - offset} data bytes but "
                     f"its header {dims} needs {expected} (truncated or corrupt).")
  array = np.frombuffer(raw, dtype, offset=offset).reshape(dims)
  return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=8)
def _read_fashion_mnist(images_path: str, labels_path: str):
  """Returns read-only (uint8 [N, 28, 28, 1], int32 [N]), cached per file pair."""
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"IDX file {images_path} must hold uint8 [N, H, W] images, "
                     f"got {images.dtype} {images.shape}.")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"IDX file {labels_path} must hold {len(images)} labels to "
                     f"match {images_path}, got shape {labels.shape}.")
  labels = labels.astype(np.int32)
  labels.flags.writeable = False
  return images[..., None], labels


def _find_file(directory: str, stem: str) -> str | None:
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def arrays(data: ml_collections.ConfigDict, name: str):
  """Finds and loads the raw Fashion-MNIST split `name` ("train" or "test")."""
  if name not in _FASHION_MNIST_FILES:
    raise ValueError(f"Fashion-MNIST has splits {sorted(_FASHION_MNIST_FILES)}, "
                     f"got {name!r}.")
  if data.data_dir:
    directory, origin = data.data_dir, "data.data_dir"
  elif os.environ.get(FASHION_MNIST_ENV):
    directory, origin = os.environ[FASHION_MNIST_ENV], f"${FASHION_MNIST_ENV}"
  else:
    directory, origin = DEFAULT_FASHION_MNIST_DIR, "the default"
  paths = [_find_file(directory, stem) for stem in _FASHION_MNIST_FILES[name]]
  if all(paths):
    return _read_fashion_mnist(*paths)
  looked = f"{directory} ({origin})"
  if origin != "the default":
    # A directory the user named is authoritative: never download elsewhere.
    raise FileNotFoundError(f"Fashion-MNIST {name} IDX files were not found in "
                            f"{looked}; {_INSTALL_HINT}.")
  try:
    return _fashion_mnist_via_tfds(name, data.download)
  except ValueError:
    raise  # A corrupt download is not a missing one.
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else repr(e)
    raise FileNotFoundError(
        f"Fashion-MNIST {name} IDX files were not found in {looked} nor as a "
        f"prepared TFDS fashion_mnist in {tfds_data_dir()}, and a TFDS download "
        f"was not possible ({reason}); {_INSTALL_HINT}.") from e


@functools.lru_cache(maxsize=2)
def _fashion_mnist_from_prepared_tfds(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source("fashion_mnist", split=name, data_dir=data_dir,
                            download=False)
  examples = source.__getitems__(list(range(len(source))))
  images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
  labels = np.asarray([e["label"] for e in examples], np.int32)
  images.flags.writeable = labels.flags.writeable = False
  return images.reshape(len(images), 28, 28, 1), labels


def _fashion_mnist_via_tfds(name: str, download: bool):
  """Loads Fashion-MNIST from a prepared TFDS copy, else downloads its IDX files.

  TFDS's own `download_and_prepare` for fashion_mnist needs TensorFlow to encode
  PNGs, so only the download step of TFDS is used and the IDX files it fetches
  (checksum-verified) are read directly.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder_cls = tfds.builder_cls("fashion_mnist")
  data_dir = tfds_data_dir()
  try:
    if tfds.builder("fashion_mnist", data_dir=data_dir).is_prepared():
      return _fashion_mnist_from_prepared_tfds(name, data_dir)
  except Exception:  # pylint: disable=broad-except
    pass  # e.g. prepared as TFRecord, which random access cannot read.
  if not download:
    raise RuntimeError("downloading is disabled by data.download=False")
  base_url = builder_cls.URL
  if not _host_resolves(base_url):
    raise RuntimeError(f"cannot resolve {urllib.parse.urlparse(base_url).hostname}")
  manager = tfds.download.DownloadManager(
      download_dir=os.path.join(data_dir, "downloads"),
      url_infos=builder_cls.url_infos, dataset_name="fashion_mnist")
  urls = [urllib.parse.urljoin(base_url, stem + ".gz")
          for stem in _FASHION_MNIST_FILES[name]]
  images_path, labels_path = manager.download(urls)
  return _read_fashion_mnist(os.fspath(images_path), os.fspath(labels_path))


def _host_resolves(url: str) -> bool:
  """Cheap offline check so that a machine without network fails at once.

  TFDS retries failed downloads for minutes; behind a proxy name resolution is
  the proxy's job, so the check is skipped there.
  """
  if any(os.environ.get(v) for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                     "https_proxy")):
    return True
  try:
    socket.getaddrinfo(urllib.parse.urlparse(url).hostname, 80)
    return True
  except OSError:
    return False


# ---------------------------------------------------------------------------
# Digits.
