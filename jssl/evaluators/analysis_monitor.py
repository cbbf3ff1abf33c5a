"""Clustering metrics (paper 004) of chosen layers, tracked during training.

Configured by `config.analysis` (jssl/config.py):

  every_epochs        0: off; > 0: at step 0 of a fresh run, every this many epochs
                      (fractions allowed: 0.5 = twice an epoch) and at the end
  layers              comma-separated intermediates ("stem,block_1,block_2"); "" = pre_logits
  labels              comma-separated label sets (jssl/evaluators/label_sets.py)
  max_train_examples  size of the fixed random subset of the train split (centres, CDNV, ...)
  max_test_examples   size of the fixed random subset of data.eval_split (NCC test)
  block_size          rows per blockwise step of jssl/evaluators/analysis.py
  mine                also MINE's I(input; layer) in nats per layer (jssl/evaluators/mine.py),
                      on the first mine_examples train-subset images, mine_seeds critics of
                      mine_steps steps, mine_hidden units, mine_pca_dim components per side

The subsets are drawn once with a fixed seed (not config.seed), so runs with different
seeds are measured on the same images. Each trigger runs the encoder once per split for
all layers (maps are average-pooled, as in the evaluation program) and reports, per layer
and label set, `analysis/<layer>/<labels>/<metric>` for the metrics of
`analysis.analyse` (NCC train/test, CDNV, class variance, class distance), plus
`analysis/epoch` and, with `mine`, `analysis/<layer>/mine_ixz` and its seed spread
`analysis/<layer>/mine_ixz_std`. The input side of MINE is the flattened images as stored
(uint8): the per-dimension standardisation MINE applies makes the evaluation
normalisation irrelevant, so the values equal those of `--config.analysis.mine=True`
in `python -m jssl.evaluate --config=configs/eval/analysis.py:RUN` on the same images. `python -m jssl.evaluators.analysis_plots --workdir=RUN` draws them.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jssl.data import multicrop, sources
from jssl.evaluators import analysis, feature_cache, features, label_sets, mine

METRICS = ("ncc_train", "ncc_test", "cdnv", "class_variance", "class_distance")
SUBSET_SEED = 0


def split_names(text: str) -> list[str]:
  return [name.strip() for name in text.split(",") if name.strip()]


def _subset(data, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """A fixed random subset (in dataset order) of `size` examples of `split`; all of it when size < 0."""
  images, labels = sources.load_arrays(data, split)
  if 0 <= size < len(images):
    keep = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(images), size, replace=False))
    images, labels = images[keep], labels[keep]
  return np.asarray(images), np.asarray(labels)


class AnalysisMonitor:
  """Runs the clustering metrics of `config.analysis.layers` on fixed train/test subsets.

  With every_epochs = 0 it is disabled: nothing is loaded and `due` is always False.
  """

  def __init__(self, config, setup, mesh, *, steps_per_epoch: int, state, log=print):
    a = config.analysis
    self.config, self.setup, self.mesh, self.log = config, setup, mesh, log
    self.steps_per_epoch = steps_per_epoch
    self.enabled = a.every_epochs > 0
    if not self.enabled:
      return
    self.interval = max(1, int(round(a.every_epochs * steps_per_epoch)))
    self.layers = split_names(a.layers) or ["pre_logits"]
    self.label_sets = split_names(a.labels)
    unknown = sorted(set(self.label_sets) - set(label_sets.LABEL_SETS))
    if unknown or not self.label_sets:
      raise ValueError(f"config.analysis.labels={a.labels!r} must name some of {', '.join(label_sets.LABEL_SETS)}.")
    self.train_x, train_y = _subset(config.data, config.data.train_split, a.max_train_examples)
    self.test_x, test_y = _subset(config.data, config.data.eval_split, a.max_test_examples)
    data = {"source": config.data.source, "name": config.data.get("name")}
    # label set -> (train labels, test labels, number of classes); raises now for a set the data lacks
    self.targets = {}
    for name in self.label_sets:
      ytr, n = label_sets.relabel(train_y, setup.num_classes, name, data)
      yte, _ = label_sets.relabel(test_y, setup.num_classes, name, data)
      self.targets[name] = (ytr, yte, n)
    params, stats = setup.encoder_params(state, config.eval.network)
    self.names, self.dims = self._resolve(params, stats)
    flat = [n for names in self.names for n in names]
    self._fn = feature_cache.make_pooled_fn(setup.encoder_def, config.aug, flat)

  def _resolve(self, params, stats) -> tuple[list[list[str]], list[int]]:
    """Each layer's intermediate names and pooled width, from shapes only (nothing runs)."""
    def fn(p, s, x):
      out, inter = nnx.merge(self.setup.encoder_def, p, s)(multicrop.eval_preprocess(x, self.config.aug), train=False)
      return dict(inter, output=out)
    shapes = jax.eval_shape(fn, params, stats, jax.ShapeDtypeStruct((1, *self.train_x.shape[1:]), jnp.uint8))
    names = [feature_cache.resolve_layer(layer, shapes) for layer in self.layers]
    return names, [sum(shapes[n].shape[-1] for n in group) for group in names]

  def due(self, step: int) -> bool:
    return self.enabled and step % self.interval == 0

  def _features(self, state, images: np.ndarray, split: str) -> list[np.ndarray]:
    params, stats = self.setup.encoder_params(state, self.config.eval.network)
    feats = features.extract(self._fn, params, stats, images, batch_size=self.config.eval.batch_size,
                             mesh=self.mesh, desc=f"analysis features, {len(images)} {split} images")
    return np.split(feats, np.cumsum(self.dims)[:-1], axis=1)

  def _mine(self, layer: str, feats: np.ndarray) -> dict[str, float]:
    a = self.config.analysis
    n = len(feats) if a.mine_examples < 0 else min(a.mine_examples, len(feats))
    est = mine.estimate(self.train_x[:n], feats[:n], seeds=a.mine_seeds, steps=a.mine_steps, hidden=a.mine_hidden,
                        pca_dim=a.mine_pca_dim)
    return {f"analysis/{layer}/mine_ixz": est["mi"], f"analysis/{layer}/mine_ixz_std": est["mi_std"]}

  def run(self, state, step: int) -> dict[str, float]:
    """The metrics of every layer and label set at `step`, keyed analysis/<layer>/<labels>/<metric>."""
    t0 = time.perf_counter()
    self.log(f"Analysis (step {step}): {len(self.layers)} layer(s) x {len(self.label_sets)} label set(s) on "
             f"{len(self.train_x)} train / {len(self.test_x)} test images...")
    train_f, test_f = self._features(state, self.train_x, "train"), self._features(state, self.test_x, "test")
    out = {"analysis/epoch": step / self.steps_per_epoch}
    for layer, tr, te in zip(self.layers, train_f, test_f):
      for name, (ytr, yte, n) in self.targets.items():
        values = analysis.analyse(tr, ytr, te, yte, num_classes=n, block_size=self.config.analysis.block_size)
        out.update({f"analysis/{layer}/{name}/{m}": values[m] for m in METRICS})
      if self.config.analysis.mine:
        out.update(self._mine(layer, tr))
    last = f"analysis/{self.layers[-1]}/{self.label_sets[0]}"
    self.log(f"Analysis (step {step}): {self.layers[-1]} {self.label_sets[0]} NCC test={out[last + '/ncc_test']:.4f}, "
             f"CDNV={out[last + '/cdnv']:.4f} [{time.perf_counter() - t0:.1f}s]")
    return out
