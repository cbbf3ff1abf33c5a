"""Clustering metrics (paper 004) of chosen layers, tracked during training.

Configured by `config.analysis` (jssl/config.py):

  every_epochs        0: off; > 0: at step 0 of a fresh run, every this many epochs
                      (fractions allowed: 0.5 = twice an epoch) and at the end
  layers              comma-separated intermediates ("stem,block_1,block_2"); "" = pre_logits
  labels              comma-separated label sets (jssl/evaluators/label_sets.py): "classes",
                      "superclasses", "samples" (the sample-level set of `samples`, built once
                      from the train split and encoded again at every trigger) and
                      "predicted:RUN@STEP" / "predicted:RUN@all" (a supervised run's class
                      predictions on the two subsets, computed once when the run starts)
  samples             images, train_augs, test_augs, seed of the sample-level set
                      (jssl/evaluators/sample_level.py; the evaluation program's fields)
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
`analysis/<layer>/mine_ixz_std`. A predicted label set is named `predicted@STEP` in
these keys (no run path, so the keys keep their four parts; one supervised run per
config) and its randomness (1 - STEP / the run's last step) and agreement with the true
classes and the share of its most frequent label on each subset go in every row as
`analysis_targets/predicted@STEP/<randomness | agreement_train | agreement_test |
majority_train | majority_test>` (an untrained classifier tends to give most images one
label, and an accuracy on such targets is to be read against that share). The "samples" set is encoded with the model being
trained, with its own training augmentation (the first global view's settings). The input side of MINE is the flattened images as stored
(uint8): the per-dimension standardisation MINE applies makes the evaluation
normalisation irrelevant, so the values equal those of `--config.analysis.mine=True`
in `python -m jssl.evaluate --config=configs/eval/analysis.py:RUN` on the same images. `python -m jssl.evaluators.analysis_plots --workdir=RUN` draws them.
"""
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jssl.data import multicrop, sources
from jssl.evaluators import analysis, analysis_eval, feature_cache, features, label_sets, mine, sample_level

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
    known = set(label_sets.LABEL_SETS) | {label_sets.SAMPLES}
    unknown = sorted(n for n in set(self.label_sets) - known if not label_sets.is_predicted(n))
    if unknown or not self.label_sets:
      raise ValueError(f"config.analysis.labels={a.labels!r} must name some of {', '.join(sorted(known))} or "
                       f"predicted:RUN@STEP (RUN@all).")
    runs = {label_sets.parse_predicted(n)[0] for n in self.label_sets if label_sets.is_predicted(n)}
    if len(runs) > 1:
      raise ValueError(f"config.analysis.labels={a.labels!r} names {len(runs)} supervised runs; the training-time "
                       f"analysis takes predictions of one run (use the evaluation program for more).")
    self.train_x, train_y = _subset(config.data, config.data.train_split, a.max_train_examples)
    self.test_x, test_y = _subset(config.data, config.data.eval_split, a.max_test_examples)
    data = {"source": config.data.source, "name": config.data.get("name")}
    # label set -> (train labels, test labels, number of classes); raises now for a set the data lacks
    # self.keys: the label sets as the metric keys name them, predicted:RUN@all expanded to predicted@STEP
    self.targets, self.target_info, self.keys = {}, {}, []
    for name in self.label_sets:
      if name in label_sets.LABEL_SETS:
        ytr, n = label_sets.relabel(train_y, setup.num_classes, name, data)
        yte, _ = label_sets.relabel(test_y, setup.num_classes, name, data)
        self.targets[name] = (ytr, yte, n)
        self.keys.append(name)
      elif label_sets.is_predicted(name):
        self.keys += self._add_predicted(name, train_y, test_y)
      else:
        self.keys.append(name)
    params, stats = setup.encoder_params(state, config.eval.network)
    self.names, self.dims = self._resolve(params, stats)
    flat = [n for names in self.names for n in names]
    self._fn = feature_cache.make_pooled_fn(setup.encoder_def, config.aug, flat)
    self.samples = label_sets.SAMPLES in self.label_sets
    if self.samples:
      self._init_samples(params, stats)

  def _add_predicted(self, name: str, train_y: np.ndarray, test_y: np.ndarray) -> list[str]:
    """Targets predicted@STEP of each named checkpoint (its argmax class on the two subsets); their keys."""
    from jssl import checkpoint
    run, steps, last = analysis_eval.resolve_predicted(name)
    for step in steps:
      config, setup, state = checkpoint.load_pretrained(run, step=step, mesh=self.mesh)
      analysis_eval.check_supervised(name, run, config.method)
      params, stats = setup.encoder_params(state, "student")
      fn = feature_cache.make_pooled_fn(setup.encoder_def, config.aug, ["logits"])
      key = f"predicted@{step}"
      labels = [label_sets.predicted_labels(features.extract(
          fn, params, stats, x, batch_size=self.config.eval.batch_size, mesh=self.mesh,
          desc=f"analysis targets: {os.path.basename(os.path.normpath(run))}@{step}, {len(x)} {split} images"))
          for x, split in ((self.train_x, "train"), (self.test_x, "test"))]
      self.targets[key] = (labels[0], labels[1], config.supervised.num_classes)
      self.target_info.update({
          f"analysis_targets/{key}/randomness": label_sets.randomness(step, last),
          f"analysis_targets/{key}/agreement_train": label_sets.agreement(labels[0], train_y),
          f"analysis_targets/{key}/agreement_test": label_sets.agreement(labels[1], test_y),
          # the share of the most frequent label: what NCC reaches by naming it for every image
          f"analysis_targets/{key}/majority_train": float(np.bincount(labels[0]).max() / len(labels[0])),
          f"analysis_targets/{key}/majority_test": float(np.bincount(labels[1]).max() / len(labels[1]))})
    return [f"predicted@{step}" for step in steps]

  def _init_samples(self, params, stats) -> None:
    """The sample-level set's images and the jitted view encoder of every analysed layer."""
    cfg = self.config.analysis.samples
    sample_level.check(cfg)
    split = self.config.data.train_split
    images, _ = sources.load_arrays(self.config.data, split)
    self.sample_images = np.asarray(images)[sample_level.choose(len(images), cfg.images, cfg.seed, split)]
    one_view = sample_level.view_aug(self.config.aug)
    encode, widths = sample_level.layer_fns(self.setup, params, stats, one_view, self.layers,
                                            self.sample_images.shape[1:])
    self._sample_fn, self._sample_dims = sample_level.view_fn(encode, one_view, cfg.seed), widths

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

  def _sample_features(self, state) -> dict:
    """layer -> (train views' features, test views' features) of the sample-level set, with the current state."""
    cfg = self.config.analysis.samples
    params, stats = self.setup.encoder_params(state, self.config.eval.network)
    xtr, ytr, xte, yte = sample_level.extract_sets(
        self._sample_fn, params, stats, self.sample_images, cfg, mesh=self.mesh,
        batch_size=self.config.eval.batch_size, desc="analysis samples")
    self._sample_labels = (ytr, yte, cfg.images)
    bounds = np.cumsum([0] + list(self._sample_dims))
    return {layer: (xtr[:, lo:hi], xte[:, lo:hi]) for layer, lo, hi in zip(self.layers, bounds, bounds[1:])}

  def run(self, state, step: int) -> dict[str, float]:
    """The metrics of every layer and label set at `step`, keyed analysis/<layer>/<labels>/<metric>."""
    t0 = time.perf_counter()
    self.log(f"Analysis (step {step}): {len(self.layers)} layer(s) x {len(self.label_sets)} label set(s) on "
             f"{len(self.train_x)} train / {len(self.test_x)} test images...")
    train_f, test_f = self._features(state, self.train_x, "train"), self._features(state, self.test_x, "test")
    out = {"analysis/epoch": step / self.steps_per_epoch, **self.target_info}
    per_layer = {name: (tr, te) for name, tr, te in zip(self.layers, train_f, test_f)}
    samples = self._sample_features(state) if self.samples else {}
    for layer, (tr, te) in per_layer.items():
      for key in self.keys:
        if key == label_sets.SAMPLES:
          (xtr, xte), (ytr, yte, n) = samples[layer], self._sample_labels
        else:
          (xtr, xte), (ytr, yte, n) = (tr, te), self.targets[key]
        values = analysis.analyse(xtr, ytr, xte, yte, num_classes=n, block_size=self.config.analysis.block_size)
        out.update({f"analysis/{layer}/{key}/{m}": values[m] for m in METRICS})
      if self.config.analysis.mine:
        out.update(self._mine(layer, tr))
    first = self.keys[0]
    last = f"analysis/{self.layers[-1]}/{first}"
    self.log(f"Analysis (step {step}): {self.layers[-1]} {first} NCC test={out[last + '/ncc_test']:.4f}, "
             f"CDNV={out[last + '/cdnv']:.4f} [{time.perf_counter() - t0:.1f}s]")
    return out
