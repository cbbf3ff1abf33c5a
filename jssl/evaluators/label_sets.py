"""Labellings the analysis metrics read besides a dataset's own classes (paper 004, section 4).

"classes" are the dataset's labels. "superclasses" map them to a coarser hierarchy level.
For Fashion-MNIST, which has none, jssl defines four groups (METHODS.md asks for a
documented grouping such as tops / bottoms / footwear / bags):

  0 tops:                T-shirt/top (0), Pullover (2), Coat (4), Shirt (6)
  1 trousers & dresses:  Trouser (1), Dress (3)
  2 footwear:            Sandal (5), Sneaker (7), Ankle boot (9)
  3 bags:                Bag (8)

The dress is neither a top nor footwear; it joins the trouser as the other garment
that covers the legs (both are long, narrow silhouettes in the 28 x 28 images), which
keeps every group at the level of "what part of the body it is worn on". CIFAR-100's
20 coarse labels are a separate TFDS feature and are not mapped here.
"""
import numpy as np

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_SUPERCLASSES = ("tops", "trousers & dresses", "footwear", "bags")
FASHION_MNIST_COARSE = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], np.int32)   # class -> superclass

LABEL_SETS = ("classes", "superclasses")


def _is_fashion_mnist(data: dict) -> bool:
  return data.get("source") == "fashion_mnist" or (data.get("name") or "").startswith("fashion_mnist")


def relabel(labels: np.ndarray, num_classes: int, label_set: str, data: dict) -> tuple[np.ndarray, int]:
  """(labels, num_classes) of `label_set` for a split of the dataset `data` (source, name).

  Raises one sentence for an unknown label set or a dataset without superclasses.
  """
  if label_set == "classes":
    return labels, num_classes
  if label_set != "superclasses":
    raise ValueError(f"analysis label set {label_set!r} must be one of {', '.join(LABEL_SETS)}.")
  if not _is_fashion_mnist(data) or num_classes != len(FASHION_MNIST_COARSE):
    raise ValueError(f"superclasses are defined for Fashion-MNIST only; the dataset {data} has none here. "
                     "Use --config.analysis.labels=classes.")
  return FASHION_MNIST_COARSE[np.asarray(labels)], len(FASHION_MNIST_SUPERCLASSES)
