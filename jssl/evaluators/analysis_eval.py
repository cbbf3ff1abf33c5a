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
"""
from jssl.evaluators import analysis, feature_cache, label_sets, linear, mine, report

_METRICS = ("ncc_train", "ncc_test", "cdnv", "class_variance", "class_distance")


def rows(config, path: str, network: str, layer: str, features, protocol: dict) -> list[dict]:
  """Result rows for one checkpoint; `features(path, network, layer, "train" | "test")` gives FeatureSets."""
  cfg = config.analysis
  layers = [name.strip() for name in cfg.layers.split(",") if name.strip()] or [layer]
  sets = [name.strip() for name in cfg.labels.split(",") if name.strip()]
  unknown = sorted(set(sets) - set(label_sets.LABEL_SETS))
  if unknown or not sets:
    raise ValueError(f"config.analysis.labels={cfg.labels!r} must name some of {', '.join(label_sets.LABEL_SETS)}.")
  out = []
  for name in layers:
    if cfg.mine:
      out.append(_mine_row(cfg, path, network, name, features, protocol))
    tr, te = features(path, network, name, "train"), features(path, network, name, "test")
    ytr, yte = feature_cache.require_labels(tr, "analysis"), feature_cache.require_labels(te, "analysis")
    for label_set in sets:
      a, num_classes = label_sets.relabel(ytr, tr.num_classes, label_set, tr.protocol.get("data", {}))
      b, _ = label_sets.relabel(yte, te.num_classes, label_set, te.protocol.get("data", {}))
      where = dict(protocol, layer=name, labels=label_set, classes=num_classes)
      values = analysis.analyse(tr.feats, a, te.feats, b, num_classes=num_classes, block_size=cfg.block_size)
      out += [report.row("analysis", metric, values[metric], **where) for metric in _METRICS]
      if cfg.linear:
        probe_cfg = {k: v for k, v in config.linear.to_dict().items() if k != "layers"}
        acc = linear.probe(tr.feats, a, te.feats, b, num_classes=num_classes, cfg=probe_cfg)["test_acc"]
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
