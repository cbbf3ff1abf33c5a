"""Tests for jssl.data.sources and jssl.data.pipeline.

Fashion-MNIST tests read the real IDX files installed by the Debian package
dataset-fashion-mnist; the TFDS tests build a tiny ArrayRecord dataset without
TensorFlow.
"""

import gzip
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from jssl.data import pipeline
from jssl.data import fashion_mnist, sources

FASHION_DIR = sources.DEFAULT_FASHION_MNIST_DIR
needs_fashion = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")),
    reason="sudo apt-get install dataset-fashion-mnist")


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch):
  monkeypatch.delenv(sources.FASHION_MNIST_ENV, raising=False)


def _write_idx(path, array, compress=True):
  codes = {np.dtype(np.uint8): 0x08}
  header = bytes([0, 0, codes[array.dtype], array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  payload = header + array.tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(payload) if compress else payload)


def _write_tiny_fashion(directory, n, compress=True):
  """Writes a valid n-example 'test' split of IDX files into `directory`."""
  rng = np.random.default_rng(n)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, (n,), dtype=np.uint8)
  suffix = ".gz" if compress else ""
  _write_idx(os.path.join(directory, "t10k-images-idx3-ubyte" + suffix), images,
             compress)
  _write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte" + suffix), labels,
             compress)
  return images, labels


# ---------------------------------------------------------------------------
# Fashion-MNIST.


@needs_fashion
def test_fashion_mnist_real_files():
  data = sources.data_config("fashion_mnist")
  train, test = sources.get_source(data, "train"), sources.get_source(data, "test")
  assert (len(train), len(test)) == (60000, 10000)
  assert train.image_shape == (28, 28, 1) and train.num_classes == 10
  images, labels = sources.load_arrays(data, "train")
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels), np.full(10, 6000))
  item = test[3]
  assert item["image"].shape == (28, 28, 1) and item["image"].dtype == np.uint8
  assert item["label"].dtype == np.int32 and item["label"].shape == ()
  assert sources.dataset_info(data) == dict(image_shape=(28, 28, 1),
                                            num_classes=10, num_train=60000)


@needs_fashion
def test_fashion_mnist_split_slices():
  data = sources.data_config("fashion_mnist")
  full_images, full_labels = sources.load_arrays(data, "train")
  head = sources.get_source(data, "train[:10%]")
  tail = sources.get_source(data, "train[90%:]")
  assert (len(head), len(tail)) == (6000, 6000)
  np.testing.assert_array_equal(head.images, full_images[:6000])
  np.testing.assert_array_equal(tail.labels, full_labels[54000:])
  assert len(sources.get_source(data, "train[:5000]")) == 5000
  rest = sources.get_source(data, "train[10%:]")
  assert len(head) + len(rest) == 60000
  np.testing.assert_array_equal(rest.images[0], full_images[6000])
  info = sources.dataset_info(sources.data_config(train_split="train[:90%]"))
  assert info["num_train"] == 54000


def test_split_range():
  assert sources.split_range("train", 100) == (0, 100)
  assert sources.split_range("train[:10%]", 60000) == (0, 6000)
  assert sources.split_range("train[90%:]", 60000) == (54000, 60000)
  assert sources.split_range("train[-10:]", 100) == (90, 100)
  assert sources.split_range("train[5:3]", 100) == (5, 5)
  assert sources.split_range("validation[1:500]", 100) == (1, 100)
  # Percent boundaries are shared, so complementary slices partition exactly.
  for n in (7, 99, 1437):
    assert sources.split_range("x[:33%]", n)[1] == sources.split_range("x[33%:]", n)[0]
  for bad in ("train[:10", "train[a:b]", "train[:200%]", "train+test"):
    with pytest.raises(ValueError, match="train"):
      sources.split_range(bad, 100)


@needs_fashion
def test_fashion_mnist_data_dir_and_env(tmp_path, monkeypatch):
  copy_dir, env_dir, tiny_dir = (tmp_path / d for d in ("copy", "env", "tiny"))
  for d in (copy_dir, env_dir, tiny_dir):
    d.mkdir()
  for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(os.path.join(FASHION_DIR, name), copy_dir / name)
  expected = sources.load_arrays(sources.data_config(), "test")
  copied = sources.load_arrays(sources.data_config(data_dir=str(copy_dir)), "test")
  np.testing.assert_array_equal(copied[0], expected[0])
  np.testing.assert_array_equal(copied[1], expected[1])

  env_images, _ = _write_tiny_fashion(env_dir, 5)
  tiny_images, tiny_labels = _write_tiny_fashion(tiny_dir, 7, compress=False)
  monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(env_dir))
  images, _ = sources.load_arrays(sources.data_config(), "test")
  np.testing.assert_array_equal(images[..., 0], env_images)
  # data.data_dir wins over the environment variable; plain IDX works too.
  images, labels = sources.load_arrays(sources.data_config(data_dir=str(tiny_dir)),
                                       "test")
  np.testing.assert_array_equal(images[..., 0], tiny_images)
  np.testing.assert_array_equal(labels, tiny_labels)


def test_fashion_mnist_missing(tmp_path, monkeypatch):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError) as err:
    sources.get_source(sources.data_config(data_dir=missing), "train")
  message = str(err.value)
  assert missing in message and "data.data_dir" in message
  assert "apt-get install dataset-fashion-mnist" in message
  assert sources.FASHION_MNIST_ENV in message

  monkeypatch.setenv(sources.FASHION_MNIST_ENV, missing)
  with pytest.raises(FileNotFoundError, match=sources.FASHION_MNIST_ENV):
    sources.get_source(sources.data_config(), "test")

  # The default location misses too: TFDS is tried (here with downloads off).
  monkeypatch.delenv(sources.FASHION_MNIST_ENV)
  monkeypatch.setattr(fashion_mnist, "DEFAULT_FASHION_MNIST_DIR", missing)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  with pytest.raises(FileNotFoundError) as err:
    sources.get_source(sources.data_config(download=False), "test")
  message = str(err.value)
  assert missing in message and str(tmp_path / "tfds") in message
  assert "data.download=False" in message and "dataset-fashion-mnist" in message


@needs_fashion
def test_fashion_mnist_download_fallback(tmp_path, monkeypatch):
  """Checks the TFDS-download glue; the network itself is replaced by local files."""
  calls = []

  class LocalDownloads:

    def __init__(self, **kwargs):
      calls.append(kwargs)

    def download(self, urls):
      calls.append(urls)
      return [os.path.join(FASHION_DIR, url.rsplit("/", 1)[1]) for url in urls]

  monkeypatch.setattr(fashion_mnist, "DEFAULT_FASHION_MNIST_DIR", str(tmp_path / "none"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setattr(fashion_mnist, "_host_resolves", lambda url: True)
  monkeypatch.setattr(tfds.download, "DownloadManager", LocalDownloads)
  images, labels = sources.load_arrays(sources.data_config(), "test")
  assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,)
  assert calls[0]["download_dir"] == str(tmp_path / "tfds" / "downloads")
  assert calls[0]["url_infos"]  # TFDS verifies the published checksums.
  assert [u.rsplit("/", 1)[1] for u in calls[1]] == [
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@needs_fashion
def test_fashion_mnist_corrupt(tmp_path):
  with gzip.open(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
    labels_bytes = f.read()
  good_images = os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz")
  cases = {
      "magic": gzip.compress(b"PK\x03\x04" + labels_bytes[4:]),
      "truncated": gzip.compress(labels_bytes[:-10]),
      "badgzip": gzip.compress(labels_bytes)[:-100],
  }
  for case, payload in cases.items():
    directory = tmp_path / case
    directory.mkdir()
    shutil.copy(good_images, directory / "t10k-images-idx3-ubyte.gz")
    path = directory / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=str(path)):
      sources.get_source(sources.data_config(data_dir=str(directory)), "test")


@needs_fashion
def test_image_size_resizes_arrays():
  data = sources.data_config(image_size=32)
  source = sources.get_source(data, "test[:16]")
  assert source.image_shape == (32, 32, 1) and source.images.dtype == np.uint8
  native = sources.get_source(sources.data_config(), "test[:16]").images
  per_item = np.stack([sources.resize_image(im, 32) for im in native])
  assert np.abs(per_item.astype(int) - source.images).max() <= 1


def test_resize_centre_crop():
  image = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3)
  # Same-size resampling of the centre square is exact for both resizers.
  np.testing.assert_array_equal(sources.resize_images(image[None], 4)[0],
                                image[:, 2:6])
  np.testing.assert_array_equal(sources.resize_image(image, 4), image[:, 2:6])
  flat = np.full((10, 6, 1), 77, np.uint8)
  assert sources.resize_image(flat, 3).shape == (3, 3, 1)
  np.testing.assert_array_equal(sources.resize_images(flat[None], 12)[0], 77)


# ---------------------------------------------------------------------------
# Digits and synthetic.


def test_digits():
  data = sources.data_config("digits")
  train, test = sources.get_source(data, "train"), sources.get_source(data, "test")
  assert (len(train), len(test)) == (1437, 360)
  assert train.image_shape == (8, 8, 1) and train.images.dtype == np.uint8
  assert train.images.max() == 255 and train.num_classes == 10
  assert set(np.unique(test.labels)) == set(range(10))
  again = sources.load_arrays(data, "test")
  np.testing.assert_array_equal(again[1], test.labels)
  assert len(sources.get_source(data, "train[:10%]")) == 144


def test_synthetic_determinism():
  data = sources.data_config("synthetic", synthetic_examples=64,
                             synthetic_shape=(12, 10, 3), synthetic_classes=4)
  a, b = sources.load_arrays(data, "train"), sources.load_arrays(data, "train")
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert a[0].shape == (64, 12, 10, 3) and a[0].dtype == np.uint8
  assert a[1].dtype == np.int32 and set(np.unique(a[1])) <= set(range(4))
  test = sources.load_arrays(data, "test")
  assert not np.array_equal(a[0], test[0])
  sliced = sources.get_source(data, "train[10:20]")
  np.testing.assert_array_equal(sliced[0]["image"], a[0][10])
  assert sliced[0]["label"] == a[1][10]
  other_seed = sources.load_arrays(
      sources.data_config("synthetic", synthetic_examples=64,
                          synthetic_shape=(12, 10, 3), synthetic_seed=1), "train")
  assert not np.array_equal(a[0], other_seed[0])


def test_config_validation():
  with pytest.raises(ValueError, match="data_config"):
    sources.data_config(imagesize=32)
  with pytest.raises(ValueError, match="data.source"):
    sources.data_config("mnist")
  with pytest.raises(ValueError, match="data.name"):
    sources.get_source(sources.data_config("tfds"), "train")


# ---------------------------------------------------------------------------
# TFDS (ArrayRecord, no TensorFlow).

_TINY_TRAIN, _TINY_TEST = 12, 5


def _tiny_examples(split, n):
  rng = np.random.default_rng(len(split))
  for i in range(n):
    # 2-D grayscale images exercise the channel expansion.
    yield i, {"image": rng.integers(0, 256, (6, 10), dtype=np.uint8),
              "label": i % 3}


class JsslTinyImages(tfds.core.GeneratorBasedBuilder):
  """A tiny ArrayRecord dataset with Tensor features (Image needs TensorFlow)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(6, 10), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train", _TINY_TRAIN),
            "test": self._generate_examples("test", _TINY_TEST)}

  def _generate_examples(self, split, n):
    yield from _tiny_examples(split, n)


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  JsslTinyImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def test_tfds_source(tiny_tfds_dir):
  data = sources.data_config("tfds", name="jssl_tiny_images", data_dir=tiny_tfds_dir)
  source = sources.get_source(data, "train")
  assert len(source) == _TINY_TRAIN
  assert source.image_shape == (6, 10, 1) and source.num_classes == 3
  expected = {ex["image"].tobytes(): ex for _, ex in _tiny_examples("train", 12)}
  for i in range(len(source)):
    item = source[i]
    assert item["image"].dtype == np.uint8 and item["image"].shape == (6, 10, 1)
    assert item["label"].dtype == np.int32
    match = expected[item["image"][..., 0].tobytes()]
    np.testing.assert_array_equal(item["image"][..., 0], match["image"])
    assert item["label"] == match["label"]
  assert len(sources.get_source(data, "train[:50%]")) == 6
  assert sources.dataset_info(data) == dict(image_shape=(6, 10, 1), num_classes=3,
                                            num_train=12)
  images, labels = sources.load_arrays(data, "test")
  assert images.shape == (_TINY_TEST, 6, 10, 1) and labels.dtype == np.int32

  sized = sources.get_source(sources.data_config(
      "tfds", name="jssl_tiny_images", data_dir=tiny_tfds_dir, image_size=4), "test")
  assert sized.image_shape == (4, 4, 1) and sized[0]["image"].shape == (4, 4, 1)
  it = pipeline.train_iterator(data, global_batch_size=8, seed=0)
  batch = next(it)
  assert batch["image"].shape == (8, 6, 10, 1) and batch["label"].shape == (8,)


def test_train_iterator_worker_processes(tiny_tfds_dir):
  """Grain worker processes receive a pickled TFDS source and keep the order."""
  data = sources.data_config("tfds", name="jssl_tiny_images", data_dir=tiny_tfds_dir)
  reference = pipeline.train_iterator(data, global_batch_size=8, seed=5)
  want = [next(reference) for _ in range(4)]
  data.worker_count = 2
  it = pipeline.train_iterator(data, global_batch_size=8, seed=5)
  try:
    for expected in want:
      got = next(it)
      np.testing.assert_array_equal(got["image"], expected["image"])
      np.testing.assert_array_equal(got["label"], expected["label"])
    del got
  finally:
    it.close()


def test_tfds_not_prepared(tmp_path):
  # jssl_tiny_images is registered (defined above) but not prepared here.
  empty = str(tmp_path / "empty")
  for name in ("jssl_tiny_images", "jssl_no_such_dataset"):
    data = sources.data_config("tfds", name=name, data_dir=empty)
    with pytest.raises(FileNotFoundError) as err:
      sources.get_source(data, "train")
    message = str(err.value)
    assert name in message and empty in message and "tfds build" in message


# ---------------------------------------------------------------------------
# Pipeline.


def _synthetic(n, **kw):
  # 28x28 noise from a 128-image bank: every example below 128 is unique.
  return sources.data_config("synthetic", synthetic_examples=n,
                             synthetic_shape=(28, 28, 1), **kw)


def _ids(data, split="train"):
  images, _ = sources.load_arrays(data, split)
  return {im.tobytes(): i for i, im in enumerate(images)}


def test_train_iterator_epochs():
  data = _synthetic(40)
  ids = _ids(data)
  it = pipeline.train_iterator(data, global_batch_size=8, seed=3)
  batches = [next(it) for _ in range(10)]
  assert batches[0]["image"].shape == (8, 28, 28, 1)
  assert batches[0]["image"].dtype == np.uint8
  assert batches[0]["label"].shape == (8,) and batches[0]["label"].dtype == np.int32
  order = [ids[im.tobytes()] for b in batches for im in b["image"]]
  first, second = order[:40], order[40:]
  assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
  assert first != second and first != list(range(40))
  other_seed = pipeline.train_iterator(data, global_batch_size=8, seed=4)
  assert not np.array_equal(next(other_seed)["image"], batches[0]["image"])


def test_train_iterator_straddles_epochs():
  data = _synthetic(20)
  ids = _ids(data)
  it = pipeline.train_iterator(data, global_batch_size=8, seed=0)
  order = [ids[im.tobytes()] for _ in range(5) for im in next(it)["image"]]
  assert sorted(order[:20]) == sorted(order[20:40]) == list(range(20))
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.train_iterator(_synthetic(4), global_batch_size=8, seed=0)


def test_train_iterator_state():
  data = _synthetic(40)
  it = pipeline.train_iterator(data, global_batch_size=8, seed=1)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = pipeline.train_iterator(data, global_batch_size=8, seed=1)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_train_iterator_orbax(tmp_path):
  data = _synthetic(40)
  it = pipeline.train_iterator(data, global_batch_size=8, seed=2)
  for _ in range(6):  # Past the first epoch boundary.
    next(it)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(6, args=ocp.args.Composite(data=pipeline.save_args(it)))
    manager.wait_until_finished()
  expected = [next(it) for _ in range(3)]

  fresh = pipeline.train_iterator(data, global_batch_size=8, seed=2)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    restored = manager.restore(
        6, args=ocp.args.Composite(data=pipeline.restore_args(fresh)))
  assert restored["data"] is fresh
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["image"], want["image"])


def test_eval_iterator_pads_and_masks():
  data = _synthetic(21)
  images, labels = sources.load_arrays(data, "test")
  batches = list(pipeline.eval_iterator(data, "test", global_batch_size=8))
  assert len(batches) == 3
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.dtype == bool and mask.sum() == 21 and not mask[21:].any()
  got_images = np.concatenate([b["image"] for b in batches])
  got_labels = np.concatenate([b["label"] for b in batches])
  np.testing.assert_array_equal(got_images[:21], images)
  np.testing.assert_array_equal(got_labels[:21], labels)
  assert not got_images[21:].any()
  assert all(b["image"].shape == (8, 28, 28, 1) for b in batches)

  limited = list(pipeline.eval_iterator(data, "test", global_batch_size=8,
                                        max_examples=10))
  assert len(limited) == 2 and sum(b["mask"].sum() for b in limited) == 10
  exact = list(pipeline.eval_iterator(data, "test[:16]", global_batch_size=8))
  assert len(exact) == 2 and all(b["mask"].all() for b in exact)


def test_to_global():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batch = next(pipeline.train_iterator(_synthetic(40), global_batch_size=16,
                                       seed=0))
  out = pipeline.to_global(batch, sharding)
  assert out["image"].shape == (16, 28, 28, 1) and out["label"].shape == (16,)
  for key in ("image", "label"):
    assert out[key].sharding.is_equivalent_to(sharding, out[key].ndim)
    assert len(out[key].addressable_shards) == 8
    assert out[key].addressable_shards[0].data.shape[0] == 2
    np.testing.assert_array_equal(np.asarray(out[key]), batch[key])


def test_check_batch_size():
  pipeline.check_batch_size(16)
  for bad in (12, 0, -8):
    with pytest.raises(ValueError, match="batch_size"):
      pipeline.check_batch_size(bad)
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.eval_iterator(_synthetic(8), "test", global_batch_size=4)
