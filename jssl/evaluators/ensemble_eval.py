"""The ensembling evaluation of `jssl.evaluate`: paper 001 against its baselines, all by k-NN.

Every number is the k-NN accuracy (cosine, exp(s/T) vote; k and T from
config.ensemble) of test representations against train representations of the
same kind: each member alone, the average (Psi's initialisation), the
concatenation, the learned representation (bank learned with the MLPs on train,
test representations learned with the MLPs frozen) and, with a transfer source,
the learned representation whose MLPs were trained on another dataset.
"""
import os

import numpy as np

from jssl.evaluators import ensemble, feature_cache, knn, report


def _acc(train, ytr, test, yte, num_classes, k, t, mesh) -> float:
  name = knn.metric_name(k, t, "cosine")
  return knn.knn_accuracy(np.asarray(train), ytr, np.asarray(test), yte, num_classes=num_classes, ks=(k,),
                          temperature=t, mesh=mesh)[name]


def rows(config, paths, networks, layers, features, mesh) -> list[dict]:
  """Result rows; `features(path, network, layer, "train" | "test", data=None)` -> FeatureSet."""
  cfg = config.ensemble
  tr = [features(p, n, l, "train") for p, n, l in zip(paths, networks, layers)]
  te = [features(p, n, l, "test") for p, n, l in zip(paths, networks, layers)]
  ytr, yte = feature_cache.require_labels(tr[0], "ensembling"), feature_cache.require_labels(te[0], "ensembling")
  if any(len(f.feats) != len(ytr) for f in tr) or any(len(f.feats) != len(yte) for f in te):
    raise ValueError("ensemble members must be evaluated on the same images; they have different split sizes.")
  num_classes, k, t = tr[0].num_classes, min(cfg.k, len(ytr)), cfg.temperature
  ztr, zte = [f.feats for f in tr], [f.feats for f in te]
  members = [f"{os.path.basename(os.path.normpath(p))}:{n}:{l}" for p, n, l in zip(paths, networks, layers)]
  base = dict(checkpoint=list(paths), step=tr[0].protocol["step"], network=",".join(networks), layer=",".join(layers),
              train=f"{tr[0].protocol['split']} ({len(ytr)})", test=f"{te[0].protocol['split']} ({len(yte)})",
              k=k, T=t, vote="cosine")
  acts = ",".join(ensemble.output_activations(ztr, cfg.get("output_activation", "auto")))
  fit_kw = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=config.seed, mesh=mesh,
                output_activation=acts)
  out = []

  def add(metric, train_rep, test_rep, **extra):
    acc = _acc(train_rep, ytr, test_rep, yte, num_classes, k, t, mesh)
    out.append(report.row("ensemble", metric, acc, **base, **extra))

  if cfg.members_alone:
    for name, a, b in zip(members, ztr, zte):
      add(f"member {name}", a, b)
  add("average", ensemble.mean_init(ztr), ensemble.mean_init(zte))
  add("concatenation", ensemble.concat(ztr), ensemble.concat(zte))
  learned = ensemble.representations(ztr, zte, warmup_fraction=cfg.warmup_fraction, **fit_kw)
  add("learned (paper 001)", learned["train"], learned["test"], epochs=cfg.epochs, lr=cfg.lr,
      batch=cfg.batch_size, warmup=cfg.warmup_fraction, output_activation=acts,
      loss=f"train {learned['train_losses'][-1]:.4f}, test {learned['test_losses'][-1]:.4f}")

  if cfg.transfer_source:
    data = {"source": cfg.transfer_source, "name": cfg.transfer_name or None}
    max_n = cfg.transfer_max_examples
    src = [features(p, n, l, "train", data=data, max_n=max_n).feats for p, n, l in zip(paths, networks, layers)]
    _, mlps, _ = ensemble.fit(src, warmup_fraction=cfg.warmup_fraction, **fit_kw)
    bank, _, _ = ensemble.fit(ztr, mlps=mlps, **fit_kw)
    queries, _, _ = ensemble.fit(zte, mlps=mlps, **fit_kw)
    add("learned, transferred MLPs", bank, queries, mlps_from=f"{cfg.transfer_source} train ({len(src[0])})",
        epochs=cfg.epochs, lr=cfg.lr)
  return out
