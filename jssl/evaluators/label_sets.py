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

"samples" is paper 004's sample-level labelling (section 4): a few train images, each
augmented many times, with the image's number as its class; it labels new images rather than
a split's, so jssl/evaluators/sample_level.py builds it.

"predicted:RUN@STEP" are paper 004's random targets of graded randomness (section 5):
the class predictions (argmax of the "logits" layer) of the jssl run RUN, trained with
the supervised method (jssl/methods/supervised.py), at its checkpoint STEP, on the same
images. "predicted:RUN@all" stands for one such set per checkpoint of RUN. An early
checkpoint gives nearly arbitrary labels, the last one nearly the true classes; the
degree of randomness is 1 - STEP / (RUN's newest step), as the paper normalises it (1:
initialisation, 0: end of training). The evaluation program computes these labels
(jssl/evaluators/analysis_eval.py); this module parses the names and does the arithmetic.
"""
import numpy as np

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_SUPERCLASSES = ("tops", "trousers & dresses", "footwear", "bags")
FASHION_MNIST_COARSE = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], np.int32)   # class -> superclass

LABEL_SETS = ("classes", "superclasses")   # labellings of a split's own images
SAMPLES = "samples"   # the evaluation program's sample-level set (jssl/evaluators/sample_level.py)
PREDICTED = "predicted:"   # + RUN@STEP or RUN@all


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


def is_predicted(label_set: str) -> bool:
  return label_set.startswith(PREDICTED)


def parse_predicted(label_set: str) -> tuple[str, int | None]:
  """'predicted:RUN@STEP' -> (RUN, STEP); 'predicted:RUN@all' -> (RUN, None). One sentence when malformed."""
  run, at, step = label_set[len(PREDICTED):].rpartition("@")
  if not at or not run or not (step == "all" or step.isdigit()):
    raise ValueError(f"analysis label set {label_set!r} must be predicted:RUN@STEP with RUN a supervised run's "
                     f"directory and STEP one of its checkpoint steps or 'all'.")
  return run, None if step == "all" else int(step)


def predicted_name(run: str, step: int) -> str:
  return f"{PREDICTED}{run}@{step}"


def predicted_labels(logits: np.ndarray) -> np.ndarray:
  """Class predictions int32 [N] of logits [N, K] (ties: the lower class)."""
  logits = np.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits must be [N, K]; got shape {logits.shape}.")
  return np.argmax(logits, axis=1).astype(np.int32)


def agreement(labels: np.ndarray, classes: np.ndarray) -> float:
  """Fraction of examples whose label equals their true class: 1 for semantic targets, ~1/K for arbitrary ones."""
  labels, classes = np.asarray(labels), np.asarray(classes)
  if labels.shape != classes.shape or not labels.size:
    raise ValueError(f"labels {labels.shape} and classes {classes.shape} must be the same non-empty shape.")
  return float(np.mean(labels == classes))


def randomness(step: int, last_step: int) -> float:
  """Paper 004's degree of randomness of the targets at `step` of a run that ends at `last_step`."""
  return 1.0 - step / last_step if last_step > 0 else 0.0
