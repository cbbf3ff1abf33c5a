"""Where TFDS keeps prepared datasets; shared by `sources` and `fashion_mnist` (which must not import each other)."""
import os


def tfds_data_dir() -> str:
  """TFDS's default data_dir, read at call time (TFDS reads it at import)."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
