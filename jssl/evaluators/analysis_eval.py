"""The "analysis" evaluation: clustering metrics of each configured layer under each label set.

For every layer in `config.analysis.layers` (default: the run's `config.layer`) and every
label set in `config.analysis.labels`, reports NCC train and test accuracy, CDNV, the
average class variance and the average squared distance between class means
(jssl/evaluators/analysis.py; the last three on the train split). With
`config.analysis.linear`, also fits the linear probe (`config.linear`'s protocol) and
reports its test accuracy and the ratio NCC test / linear test. With
`config.analysis.mine`, also "mine_ixz": MINE's estimate of I(X; Z) in nats between the
preprocessed input images X (network "pixels") and the layer Z, on the first
`mine_examples` train images, averaged over `mine_seeds` critics (jssl/evaluators/mine.py).

Label sets `predicted:RUN@STEP` (jssl/evaluators/label_sets.py) are the class predictions
of the supervised run RUN at checkpoint STEP on the very images analysed (same split,
count and order: its "logits" layer goes through the same feature cache). Their rows
carry `randomness` (1 - STEP / RUN's newest step), and each adds two rows,
"agreement_train" and "agreement_test": the fraction of images whose predicted label is
their true class (about 1/K for arbitrary labels, the classifier's accuracy at the end).

The label set "samples" is paper 004's sample-level labelling (jssl/evaluators/sample_level.py):
`samples.images` train images (seeded), each its own class, with `samples.train_augs`
augmented views of each as the train set and `samples.test_augs` other views as the test
set, drawn by the checkpoint's own training augmentation and extracted once for all layers.
Its rows state these sets in `train` and `test` instead of the analysed splits.
"""
import os

from jssl.evaluators import analysis, feature_cache, label_sets, linear, mine, report, sample_level

_METRICS = ("ncc_train", "ncc_test", "cdnv", "class_variance", "class_distance")


def rows(config, path: str, network: str, layer: str, features, protocol: dict, store=None) -> list[dict]:
  """Result rows for one checkpoint; `features(path, network, layer, "train" | "test")` gives FeatureSets.

  `store` (a feature_cache.FeatureStore) serves the predictions of `predicted:` label sets.
  """
  cfg = config.analysis
  layers = [name.strip() for name in cfg.layers.split(",") if name.strip()] or [layer]
  sets = [name.strip() for name in cfg.labels.split(",") if name.strip()]
  known = label_sets.LABEL_SETS + (label_sets.SAMPLES,)
  unknown = sorted(set(s for s in sets if not label_sets.is_predicted(s)) - set(known))
  if unknown or not sets:
    raise ValueError(f"config.analysis.labels={cfg.labels!r} must name some of {', '.join(known)} "
                     f"or predicted:RUN@STEP.")
  sets = _expand(sets, store)
  if label_sets.SAMPLES in sets:
    sample_level.check(cfg.samples)
    if store is None:
      raise ValueError("analysis label set 'samples' needs the evaluation program's feature store.")
  out, predicted = [], {}   # predicted: label set -> (train labels, test labels, classes, extra protocol)
  samples = None            # sample_level.SampleFeatures of every layer, extracted in one pass
  for name in layers:
    if cfg.mine:
      out.append(_mine_row(cfg, path, network, name, features, protocol))
    tr, te = features(path, network, name, "train"), features(path, network, name, "test")
    ytr, yte = feature_cache.require_labels(tr, "analysis"), feature_cache.require_labels(te, "analysis")
    for label_set in sets:
      xtr, xte = tr.feats, te.feats
      if isinstance(label_set, tuple):   # (name, run, step, last step): computed once, for the first layer
        key = label_set[0]
        if key not in predicted:
          predicted[key] = _predicted(store, label_set, tr, te, ytr, yte)
          a, b, _, extra = predicted[key]
          out += [report.row("analysis", f"agreement_{split}", label_sets.agreement(y, truth),
                             **dict(protocol, layer="", labels=key, **extra))
                  for split, y, truth in (("train", a, ytr), ("test", b, yte))]
        a, b, num_classes, extra = predicted[key]
      elif label_set == label_sets.SAMPLES:
        if samples is None:
          samples = sample_level.features(store, cfg.samples, tr.protocol, network, layers)
        key, extra, num_classes = label_set, samples.protocol, cfg.samples.images
        (xtr, xte), a, b = samples.feats[name], samples.train_labels, samples.test_labels
      else:
        key, extra = label_set, {}
        a, num_classes = label_sets.relabel(ytr, tr.num_classes, label_set, tr.protocol.get("data", {}))
        b, _ = label_sets.relabel(yte, te.num_classes, label_set, te.protocol.get("data", {}))
      where = dict(protocol, layer=name, labels=key, classes=num_classes, **extra)
      values = analysis.analyse(xtr, a, xte, b, num_classes=num_classes, block_size=cfg.block_size)
      out += [report.row("analysis", metric, values[metric], **where) for metric in _METRICS]
      if cfg.linear:
        probe_cfg = {k: v for k, v in config.linear.to_dict().items() if k != "layers"}
        acc = linear.probe(xtr, a, xte, b, num_classes=num_classes, cfg=probe_cfg)["test_acc"]
        out.append(report.row("analysis", "linear_test", acc, **where))
        out.append(report.row("analysis", "ncc_linear_ratio", analysis.ncc_linear_ratio(values["ncc_test"], acc),
                              **where))
  return out


def _mine_row(cfg, path: str, network: str, layer: str, features, protocol: dict) -> dict:
  """MINE's I(input; layer) on the first cfg.mine_examples train images."""
  n = cfg.mine_examples
  x, z = features(path, "pixels", layer, "train", max_n=n), features(path, network, layer, "train", max_n=n)
  est = mine.estimate(x.feats, z.feats, seeds=cfg.mine_seeds, steps=cfg.mine_steps, pca_dim=cfg.mine_pca_dim,
                      hidden=cfg.mine_hidden)
  return report.row("analysis", "mine_ixz", est["mi"], **dict(protocol, layer=layer), examples=len(x.feats),
                    seeds=cfg.mine_seeds, seed_std=round(est["mi_std"], 4), pca_dim=cfg.mine_pca_dim)


def resolve_predicted(name: str) -> tuple[str, list[int], int]:
  """(RUN, the steps named, RUN's newest step) of a label set predicted:RUN@STEP or @all; one sentence if bad."""
  run, step = label_sets.parse_predicted(name)
  try:
    steps = feature_cache.checkpoint_steps(run)
  except FileNotFoundError:
    steps = []
  if not steps:
    raise ValueError(f"analysis label set {name!r} names {run}, which holds no jssl checkpoint "
                     f"({os.path.join(run, 'checkpoints')} is missing or empty).")
  if step is not None and step not in steps:
    raise ValueError(f"analysis label set {name!r} asks for step {step}, but {run} has checkpoints at steps "
                     f"{steps} only.")
  return run, [step] if step is not None else steps, steps[-1]


def check_supervised(name: str, run: str, method: str) -> None:
  if method != "supervised":
    raise ValueError(f"analysis label set {name!r} needs a run trained with method 'supervised', but {run} "
                     f"was trained with {method!r}.")


def _expand(sets: list[str], store) -> list:
  """Label-set names, with each predicted:RUN@STEP (or @all) as (name, RUN, STEP, RUN's newest step) tuples."""
  out = []
  for name in sets:
    if not label_sets.is_predicted(name):
      out.append(name)
      continue
    label_sets.parse_predicted(name)   # a malformed name says so before anything else
    if store is None:
      raise ValueError(f"analysis label set {name!r} needs the evaluation program's feature store.")
    run, steps, last = resolve_predicted(name)
    check_supervised(name, run, store.checkpoint_config(run, last).method)
    out += [(label_sets.predicted_name(run, s), run, s, last) for s in steps]
  return out


def _predicted(store, label_set: tuple, tr, te, ytr, yte):
  """(train labels, test labels, classes, extra protocol) of one predicted label set, on tr's and te's images."""
  name, run, step, last = label_set
  labels, num_classes = [], None
  for fs, truth in ((tr, ytr), (te, yte)):
    p = fs.protocol
    logits = store.get(run, step=step, network="student", layer="logits", split=p["split"],
                       max_examples=p["max_examples"], data_overrides=p["data"])
    if logits.labels is None or not (logits.labels.shape == truth.shape and (logits.labels == truth).all()):
      raise ValueError(f"analysis label set {name!r}: {run} reads other images than the analysed checkpoint on "
                       f"split {p['split']!r} (their true labels differ), so its predictions cannot label them.")
    labels.append(label_sets.predicted_labels(logits.feats))
    num_classes = logits.feats.shape[1]
  return labels[0], labels[1], num_classes, dict(randomness=round(label_sets.randomness(step, last), 4))
