"""The evaluation program's work: features of each run, then k-NN, linear probes, ensembles, plots, analysis,
robustness and TreeNet's per-leaf evaluation.

`python -m jssl.evaluate` parses the flags and calls `run`; scripts call `run` directly.
"""
import os


def _per_checkpoint(value: str, n: int, name: str) -> list[str]:
  parts = [p.strip() for p in str(value).split(",")]
  if len(parts) == 1:
    return parts * n
  if len(parts) != n:
    raise ValueError(f"config.{name}={value!r} gives {len(parts)} values for {n} checkpoints; give one or {n}.")
  return parts


def _knn_rows(train, test, cfg, protocol, mesh):
  from jssl.evaluators import feature_cache, knn, report
  ytr, yte = feature_cache.require_labels(train, "k-NN"), feature_cache.require_labels(test, "k-NN")
  runs = [("cosine", tuple(cfg.ks), cfg.temperature)]
  if cfg.lightly:
    runs.append(("cosine", (200,), 0.1))
  if cfg.euclidean:
    runs.append(("euclidean", tuple(cfg.ks), 0.0))
  rows = []
  for proto, ks, t in runs:
    ks = tuple(k for k in ks if k <= len(ytr))
    accs = knn.knn_accuracy(train.feats, ytr, test.feats, yte, num_classes=train.num_classes, ks=ks,
                            temperature=t if t > 0 else 1.0, protocol=proto, mesh=mesh)
    for k in ks:
      name = knn.metric_name(k, t, proto)
      rows.append(report.row("knn", name, accs[name], **protocol, k=k,
                             T=t if proto == "cosine" else None, vote=proto))
  return rows


def run(config, workdir: str, mesh=None) -> list[dict]:
  """Runs every evaluation the config names; writes the reports; returns the result rows."""
  from jssl import sharding
  from jssl.evaluators import eval_config, feature_cache, linear, report

  evals = [e.strip() for e in config.evals.split(",") if e.strip()]
  unknown = sorted(set(evals) - set(eval_config.EVALS))
  if unknown:
    raise ValueError(f"config.evals names {unknown}; valid evaluations are {', '.join(eval_config.EVALS)}.")
  if "robustness" in evals:
    from jssl.evaluators import robustness
    robustness.parse(config.robustness)   # a bad field fails before any feature is extracted
  if "treenet" in evals:
    from jssl.evaluators import treenet_eval
    treenet_eval.parse(config.treenet)
  paths = [p.strip() for p in config.checkpoints.split(",") if p.strip()]
  if not paths:
    raise ValueError("config.checkpoints is empty; pass --config=configs/eval/<recipe>.py:RUN_DIR[,RUN_DIR...].")
  networks = _per_checkpoint(config.network, len(paths), "network")
  layers = _per_checkpoint(config.layer, len(paths), "layer")
  layers = ["pixels" if n == "pixels" else l for n, l in zip(networks, layers)]   # the images themselves
  mesh = mesh or sharding.make_mesh()
  store = feature_cache.FeatureStore(cache_dir=config.cache_dir or None, mesh=mesh, batch_size=config.batch_size)
  step = None if config.step < 0 else config.step
  overrides = {k: config.data[k] for k in feature_cache.DATA_FIELDS if k in config.data}

  def features(path, network, layer, which, data=None, max_n=None):
    """Features of the "train" or "test" split of the configured (or the checkpoint's) dataset."""
    split = config.data.train_split if which == "train" else config.data.test_split
    if split is None or data:  # the checkpoint's own split names
      ckpt_data = store.checkpoint_config(path, step).data
      split = ckpt_data.train_split if which == "train" else ckpt_data.eval_split
    if max_n is None:
      max_n = config.data.max_train_examples if which == "train" else config.data.max_test_examples
    return store.get(path, step=step, network=network, layer=layer, split=split,
                     max_examples=None if max_n < 0 else max_n, data_overrides=data or overrides)

  rows, plotted = [], []
  for path, network, layer in zip(paths, networks, layers):
    tr, te = features(path, network, layer, "train"), features(path, network, layer, "test")
    protocol = dict(checkpoint=path, step=tr.protocol["step"], network=network, layer=layer,
                    train=f"{tr.protocol['split']} ({len(tr.feats)})", test=f"{te.protocol['split']} ({len(te.feats)})")
    if "knn" in evals:
      rows += _knn_rows(tr, te, config.knn, protocol, mesh)
    if "linear" in evals:
      cand = [c for c in config.linear.layers.split(",") if c] or [layer]
      sets = {}
      for c in cand:
        a, b = (tr, te) if c == layer else (features(path, network, c, "train"), features(path, network, c, "test"))
        sets[c] = (a.feats, feature_cache.require_labels(a, "the linear probe"), b.feats,
                   feature_cache.require_labels(b, "the linear probe"))
      cfg = {k: v for k, v in config.linear.to_dict().items() if k != "layers"}
      res = linear.probe_layers(sets, num_classes=tr.num_classes, cfg=cfg, order=cand)
      hp = "C" if cfg["backend"].startswith("sklearn") else "lr, wd"
      rows.append(report.row("linear", "linear_test_acc", res["test_acc"], **dict(protocol, layer=res["layer"]),
                             backend=res["backend"], selected=f"{hp}={res['best']}",
                             val=f"{res['val_fraction']:.0%} of train, acc {res['val_acc']:.4f}",
                             layers_tried=",".join(cand), standardize=res["standardize"]))
    if "plots" in evals:
      trained = store.checkpoint_config(path, step).method
      plotted.append(_plot(config, workdir, tr, te, path, network, layer, len(plotted), trained))
    if "analysis" in evals:
      from jssl.evaluators import analysis_eval
      rows += analysis_eval.rows(config, path, network, layer, features, protocol, store=store)
    if "robustness" in evals:
      got, pngs = robustness.rows(config, store, path, network, layer, tr, te, protocol, mesh, workdir, len(plotted))
      rows, plotted = rows + got, plotted + pngs
    if "treenet" in evals:
      got, pngs = treenet_eval.rows(config, store, path, network, features, protocol, mesh, workdir, len(plotted))
      rows, plotted = rows + got, plotted + pngs
  if "ensemble" in evals:
    from jssl.evaluators import ensemble_eval
    rows += ensemble_eval.rows(config, paths, networks, layers, features, mesh)
  header = dict(checkpoints=", ".join(paths), evals=",".join(evals), devices=f"{mesh.devices.size} x "
                f"{mesh.devices.flat[0].platform}")
  tables = robustness.tables(rows) if "robustness" in evals else []
  if "treenet" in evals:
    tables += treenet_eval.tables(rows)
  report.write(workdir, rows, header, plots=plotted, tables=tables)
  return rows


def _plot(config, workdir, tr, te, path, network, layer, index, trained) -> str:
  """A 2-D embedding of one run's features, coloured by class; returns the PNG's path."""
  from jssl.evaluators import feature_cache, plots
  fs = te if config.plots.split == "test" else tr
  labels = feature_cache.require_labels(fs, "plots")
  run_name = os.path.basename(os.path.normpath(path))
  name = f"{config.plots.method}_{index}_{run_name}_{network}_{layer}.png".replace(":", "-").replace("/", "-")
  data = fs.protocol.get("data") or {}
  dataset = data.get("name") or data.get("source")
  print(f"Embedding {min(len(labels), config.plots.max_points)} {fs.protocol['split']} features of {run_name} "
        f"with {config.plots.method} (about half a minute on a CPU)", flush=True)
  out = plots.scatter_png(fs.feats, labels, os.path.join(workdir, name), method=config.plots.method,
                          max_points=config.plots.max_points, seed=config.seed, names=plots.class_names(data),
                          title=f"{run_name} ({trained}, step {fs.protocol['step']}): {network} {layer} "
                                f"features, {dataset} {fs.protocol['split']}")
  print(f"Plot: {out}", flush=True)
  return out
