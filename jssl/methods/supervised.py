"""Supervised classification: an encoder and a linear classifier trained with softmax
cross-entropy on the labels of the batch.

Not a self-supervised method: it is the reference network of paper 004's random
targets (section 5, appendix B.5), whose class predictions at several points of its
training are targets of graded randomness (an early checkpoint gives nearly arbitrary
labels, the last one nearly the true classes). The analysis evaluation reads them as
the label sets `predicted:RUN@STEP` (jssl/evaluators/label_sets.py).

One augmented view per image (the first global view; the "supervised" augmentation
recipe of jssl/data/multicrop.py makes only one). The classifier sits inside the
encoder (`Classifier`), so the evaluators see the backbone's output as the
representation, as for every other method, and its logits as one more named layer,
"logits". Paper 004 trains its target networks (a ResNet-18, a ViT) with Adam and a
cosine schedule (lr 0.05 for the ResNet, 1e-3 with weight decay 5e-5 for the ViT);
jssl's default is AdamW lr 1e-3, weight decay 1e-4, cosine, no warm-up. Logged
metrics: "cross_entropy" and "train_acc" (on the augmented view, in train mode).
"""
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jssl.methods import common


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_classes = 10   # the classifier's outputs; must equal the dataset's classes (checked by validate_data)
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """AdamW lr 1e-3 (per 256 images), weight decay 1e-4, cosine to 0 without warm-up; applied by
  `jssl.config.base`."""
  c.optim.update(name="adamw", lr=1e-3, min_lr=0.0, weight_decay=1e-4, warmup_epochs=0.0)


def validate_data(config, info: dict) -> None:
  """Raises one sentence when the classifier's width does not match the dataset's classes."""
  if config.supervised.num_classes != info["num_classes"]:
    raise ValueError(f"supervised.num_classes={config.supervised.num_classes} must equal the "
                     f"{info['num_classes']} classes of the dataset {config.data.source}.")


class Classifier(nnx.Module):
  """A backbone with a linear classifier on its output.

  `__call__` returns the backbone's (output, intermediates) with "logits" [B, K]
  (float32) added to the intermediates, so the output stays the representation
  evaluators read and the logits are a layer like any other.
  """

  def __init__(self, backbone: nnx.Module, num_classes: int, *, rngs: nnx.Rngs):
    self.backbone = backbone
    self.head = nnx.Linear(backbone.out_dim, num_classes, rngs=rngs)
    self.out_dim = backbone.out_dim

  def __call__(self, x, *, train: bool, **kwargs):
    out, inter = self.backbone(x, train=train, **kwargs)
    return out, dict(inter, logits=self.head(out.astype(jnp.float32)))


class Student(nnx.Module):

  def __init__(self, encoder: Classifier):
    self.encoder = encoder


class NoTeacher(nnx.Module):
  """No teacher network; this empty module keeps the train state's shape."""


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """Returns (student, empty teacher)."""
  if config.supervised.num_classes < 2:
    raise ValueError(f"supervised.num_classes={config.supervised.num_classes} must be >= 2.")
  backbone = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  return Student(Classifier(backbone, config.supervised.num_classes, rngs=rngs)), NoTeacher()


def init_state(config) -> dict:
  del config
  return {}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean over the batch of -log softmax(logits)[label]: logits [B, K], labels int [B] -> scalar."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [G, B, S, S, C] (the first view is used), views["label"]: int [B].

  Returns (loss, (method_state, metrics, features [B, D])).
  """
  del teacher, rng, ctx, config
  if "label" not in views:
    raise ValueError("The supervised method needs the batch's labels as views['label'] (the trainer passes them).")
  labels = views["label"]
  h, inter = student.encoder(views["global"][0], train=True)
  logits = inter["logits"]
  value = cross_entropy(logits, labels)
  acc = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  return value, (method_state, {"cross_entropy": value, "train_acc": acc}, jax.lax.stop_gradient(h))
