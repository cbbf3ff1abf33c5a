"""The "treenet" evaluation (paper 000): per-leaf accuracy, the best subset of leaves, saliency maps.

For each per-leaf layer in `config.treenet.layers` ("leaves": the leaf outputs z_j,
"leaf_hidden", "leaf_pooled"; jssl.models.treenet names them) and each protocol in
`config.treenet.protocols`:

1. Every leaf alone is scored on a validation split carved from train: the linear
   probe's split (`config.linear.val_fraction`, 10% by default, stratified by class,
   seeded by `config.linear.seed`; `linear.split_train_val`), so k-NN and linear
   selections see the same rows. k-NN: DINO's cosine vote (k = `config.treenet.knn_k`,
   T = `config.knn.temperature`), bank = the other 90%, queries = the validation rows.
   Linear: `linear.select` (its grid, chosen on that split).
2. Leaves are ranked by validation accuracy (ties to the lower index), and for each size
   s in `config.treenet.subset_sizes` the concatenation of the s best leaves is scored on
   validation the same way (Sec. 3.1: "the best subset is selected based on individual
   classification accuracy"). The chosen s has the best validation accuracy (ties to the
   smaller s); over several layers, the chosen (layer, s) likewise.
3. Only then is test read: every leaf, every subset and the chosen one are scored once
   with the whole train split as bank (k-NN) or refitted on it (linear). `select`, which
   makes every choice, has no test argument.

Leaf features are one extraction of "<layer>_concat" [N, m x D], cut into [N, m, D]; leaf
j's slice is the model's "leaf_j" layer. The concatenation of a subset is plain (no
per-leaf normalisation), as "leaves_concat" is.

Saliency (Sec. 5.3.1, Fig. 5): for a few test images, the absolute gradient of the L2 norm
of a leaf's representation ||z_j(x)|| (in `config.treenet.saliency_layer`) with respect to
the input pixels in [0, 1] (the evaluation view before normalisation; max over colour
channels), for three leaves drawn as the red, green and blue channels over the grayscale
image. The DINO head reads only the join's output, so a leaf has no logits of its own;
the norm of its representation is what the leaf alone computes. Each map is scaled to
[0, 1] by its own 99th percentile, per image and leaf, so the picture shows where each
leaf looks, not which leaf has the largest gradients.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jssl.data import augment, multicrop, sources
from jssl.evaluators import feature_cache, knn, linear, report
from jssl.models import treenet

PROTOCOLS = ("knn", "linear")


def parse(cfg) -> dict:
  """Checks config.treenet; returns its lists (subset sizes still hold "all"). One sentence per bad field."""
  layers = [l.strip() for l in str(cfg.layers).split(",") if l.strip()]
  bad = [l for l in layers if l not in treenet.LEAF_LAYERS]
  if bad or not layers:
    raise ValueError(f"config.treenet.layers={cfg.layers!r} must name per-leaf layers among "
                     f"{', '.join(treenet.LEAF_LAYERS)}.")
  protocols = [p.strip() for p in str(cfg.protocols).split(",") if p.strip()]
  if not protocols or any(p not in PROTOCOLS for p in protocols):
    raise ValueError(f"config.treenet.protocols={cfg.protocols!r} must be a comma-separated subset of "
                     f"{', '.join(PROTOCOLS)}.")
  sizes = []
  for s in [s.strip() for s in str(cfg.subset_sizes).split(",") if s.strip()]:
    if s != "all" and not (s.isdigit() and int(s) >= 1):
      raise ValueError(f"config.treenet.subset_sizes={cfg.subset_sizes!r} must be positive integers or 'all'.")
    sizes.append(s if s == "all" else int(s))
  if not sizes:
    raise ValueError("config.treenet.subset_sizes is empty; give sizes such as '1,2,4,8,all'.")
  if cfg.knn_k < 1:
    raise ValueError(f"config.treenet.knn_k must be >= 1, got {cfg.knn_k}.")
  if cfg.saliency_images < 0:
    raise ValueError(f"config.treenet.saliency_images must be >= 0, got {cfg.saliency_images}.")
  if cfg.saliency_layer not in treenet.LEAF_LAYERS:
    raise ValueError(f"config.treenet.saliency_layer={cfg.saliency_layer!r} must be one of "
                     f"{', '.join(treenet.LEAF_LAYERS)}.")
  leaves = str(cfg.saliency_leaves).strip()
  if leaves == "best":
    if cfg.saliency_layer not in layers:
      raise ValueError(f"config.treenet.saliency_leaves='best' ranks the leaves of saliency_layer="
                       f"{cfg.saliency_layer!r}, which config.treenet.layers={cfg.layers!r} does not evaluate.")
    picked = "best"
  else:
    try:
      picked = [int(j) for j in leaves.split(",") if j.strip()]
    except ValueError:
      picked = []
    if not 1 <= len(picked) <= 3 or min(picked) < 0:
      raise ValueError(f"config.treenet.saliency_leaves={cfg.saliency_leaves!r} must be 'best' or one to three "
                       f"leaf indices, e.g. '0,5,9' (red, green, blue).")
  return dict(layers=layers, protocols=protocols, sizes=sizes, saliency_leaves=picked)


def subset_sizes(sizes, num_leaves: int) -> list[int]:
  """The sizes that fit m leaves ("all" = m), sorted and without repeats."""
  out = sorted({num_leaves if s == "all" else int(s) for s in sizes} & set(range(1, num_leaves + 1)))
  if not out:
    raise ValueError(f"config.treenet.subset_sizes={sizes!r} leaves no size between 1 and the run's "
                     f"{num_leaves} leaves.")
  return out


def concat(leaf_feats: np.ndarray, leaves) -> np.ndarray:
  """[N, m, D] and leaf indices -> their concatenation [N, len(leaves) x D], in the given order."""
  return leaf_feats[:, np.asarray(leaves)].reshape(len(leaf_feats), -1)


class KnnScorer:
  """DINO's weighted cosine k-NN vote (k, T), on the validation split or on test."""

  def __init__(self, *, k: int, temperature: float, num_classes: int, split: dict, mesh=None):
    self.k, self.temperature, self.num_classes, self.split, self.mesh = k, temperature, num_classes, split, mesh
    self.name = knn.metric_name(k, temperature, "cosine")

  def _acc(self, x, y, xq, yq) -> float:
    k = min(self.k, len(x))
    accs = knn.knn_accuracy(x, y, xq, yq, num_classes=self.num_classes, ks=(k,), temperature=self.temperature,
                            protocol="cosine", mesh=self.mesh)
    return accs[knn.metric_name(k, self.temperature, "cosine")]

  def validate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, None]:
    """(validation accuracy, nothing to keep): bank = train minus the validation rows."""
    tr, va = linear.split_train_val(y, self.split["val_fraction"], seed=self.split["seed"],
                                    stratified=self.split["stratified"])
    return self._acc(x[tr], y[tr], x[va], y[va]), None

  def test(self, x, y, x_test, y_test, state) -> float:
    del state
    return self._acc(x, y, x_test, y_test)

  def describe(self) -> dict:
    return dict(k=self.k, T=self.temperature, vote="cosine")


class LinearScorer:
  """The linear probe of config.linear: its grid chosen on the validation split, refitted on all of train."""

  def __init__(self, *, cfg: dict, num_classes: int):
    self.cfg, self.num_classes, self.name = cfg, num_classes, "linear"

  def validate(self, x, y) -> tuple[float, tuple]:
    chosen = linear.select(x, y, num_classes=self.num_classes, cfg=self.cfg)
    return chosen["val_acc"], chosen["best"]

  def test(self, x, y, x_test, y_test, state) -> float:
    w, b = linear.fit(x, y, state, num_classes=self.num_classes, cfg=self.cfg)
    return float(np.mean(np.argmax(x_test @ w + b, axis=-1) == y_test))

  def describe(self) -> dict:
    return dict(backend=self.cfg["backend"], standardize=self.cfg["standardize"])


def select(leaf_feats: np.ndarray, labels: np.ndarray, sizes, scorer) -> dict:
  """Ranks the leaves and picks the subset size, on validation rows of train only.

  Args:
    leaf_feats: [N, m, D] train features of every leaf; labels: [N].
    sizes: subset sizes, each in 1..m.
    scorer: `KnnScorer` or `LinearScorer`.

  Returns:
    {"val_by_leaf": [m], "leaf_state": [m] (what `scorer.test` needs), "ranking": [m] leaf
     indices best first, "subsets": {s: {"leaves", "val_acc", "state"}}, "chosen": s}.
  """
  m = leaf_feats.shape[1]
  per_leaf = [scorer.validate(leaf_feats[:, j], labels) for j in range(m)]
  val = np.asarray([v for v, _ in per_leaf], np.float64)
  ranking = [int(j) for j in np.argsort(-val, kind="stable")]
  subsets = {}
  for s in sizes:
    leaves = ranking[:s]
    v, state = per_leaf[leaves[0]] if s == 1 else scorer.validate(concat(leaf_feats, leaves), labels)
    subsets[s] = dict(leaves=leaves, val_acc=float(v), state=state)
  chosen = max(sizes, key=lambda s: (subsets[s]["val_acc"], -s))
  return dict(val_by_leaf=val, leaf_state=[st for _, st in per_leaf], ranking=ranking, subsets=subsets,
              chosen=chosen)


def evaluate(train_leaves, train_y, test_leaves, test_y, sizes, scorer) -> dict:
  """`select` on train, then test accuracy of every leaf and every subset: `select`'s dict plus
  "test_by_leaf" [m] and "test_acc" in each subset."""
  chosen = select(train_leaves, train_y, sizes, scorer)   # test is not read before this returns
  chosen["test_by_leaf"] = np.asarray([scorer.test(train_leaves[:, j], train_y, test_leaves[:, j], test_y, st)
                                       for j, st in enumerate(chosen["leaf_state"])])
  for sub in chosen["subsets"].values():
    if len(sub["leaves"]) == 1:
      sub["test_acc"] = float(chosen["test_by_leaf"][sub["leaves"][0]])
    else:
      sub["test_acc"] = scorer.test(concat(train_leaves, sub["leaves"]), train_y, concat(test_leaves, sub["leaves"]),
                                    test_y, sub["state"])
  return chosen


def subset_layer(layer: str, leaves, num_leaves: int) -> str:
  """The layer spec of a subset: "leaf_3+leaf_0", or "<layer>_concat" for all the leaves."""
  if len(leaves) == num_leaves:
    return f"{layer}_concat"
  return "+".join(treenet.leaf_layer_name(layer, j) for j in leaves)


def _scorers(config, num_classes: int, protocols, mesh) -> list:
  probe_cfg = {k: v for k, v in config.linear.to_dict().items() if k != "layers"}
  probe_cfg = dict(linear.default_config(), **probe_cfg)
  split = {k: probe_cfg[k] for k in ("val_fraction", "seed", "stratified")}
  out = []
  for p in protocols:
    if p == "knn":
      out.append(KnnScorer(k=int(config.treenet.knn_k), temperature=float(config.knn.temperature),
                           num_classes=num_classes, split=split, mesh=mesh))
    else:
      out.append(LinearScorer(cfg=probe_cfg, num_classes=num_classes))
  return out


def rows(config, store, path: str, network: str, features, protocol: dict, mesh, workdir: str,
         index: int = 0) -> tuple[list[dict], list[str]]:
  """Result rows and the saliency PNG (if any) of one TreeNet run.

  `features(path, network, layer, "train" | "test")` returns a FeatureSet (the program's
  cached extraction); `protocol` holds the run's common row fields."""
  spec = parse(config.treenet)
  if network == "pixels":
    raise ValueError("the treenet evaluation reads a TreeNet's leaves; network='pixels' has none "
                     "(use student or teacher).")
  ckpt_config, setup, state = store.checkpoint(path, config.step if config.step >= 0 else None)
  if ckpt_config.model.name != "treenet":
    raise ValueError(f"the treenet evaluation needs a TreeNet run (model.name='treenet'); {path} has "
                     f"model.name={ckpt_config.model.name!r}.")
  m = int(ckpt_config.model.num_leaves)
  sizes = subset_sizes(spec["sizes"], m)
  val_split = (f"{config.linear.val_fraction:.0%} of train ({'stratified, ' if config.linear.stratified else ''}"
               f"seed {config.linear.seed})")
  out, results, test_protocol = [], {}, None
  for layer in spec["layers"]:
    tr, te = features(path, network, f"{layer}_concat", "train"), features(path, network, f"{layer}_concat", "test")
    ytr = feature_cache.require_labels(tr, "the treenet evaluation")
    yte = feature_cache.require_labels(te, "the treenet evaluation")
    train_leaves, test_leaves = tr.feats.reshape(len(tr.feats), m, -1), te.feats.reshape(len(te.feats), m, -1)
    test_protocol = te.protocol
    base = dict(protocol, train=f"{tr.protocol['split']} ({len(ytr)})", test=f"{te.protocol['split']} ({len(yte)})")
    for scorer in _scorers(config, tr.num_classes, spec["protocols"], mesh):
      print(f"TreeNet: {m} leaves of {layer}, {scorer.name}: scoring each leaf and {len(sizes)} subsets on "
            f"validation, then on test", flush=True)
      res = evaluate(train_leaves, ytr, test_leaves, yte, sizes, scorer)
      results[layer, scorer.name] = res
      common = dict(base, **scorer.describe(), leaf_layer=layer, val=val_split)
      rank = {j: r + 1 for r, j in enumerate(res["ranking"])}
      for j in range(m):
        out.append(report.row("treenet", f"leaf {j}: {scorer.name}", res["test_by_leaf"][j],
                              **dict(common, layer=treenet.leaf_layer_name(layer, j)), leaf=j, rank=rank[j],
                              val_acc=round(float(res["val_by_leaf"][j]), 4)))
      for s, sub in res["subsets"].items():
        out.append(report.row("treenet", f"best {s} leaves: {scorer.name}", sub["test_acc"],
                              **dict(common, layer=subset_layer(layer, sub["leaves"], m)), subset_size=s,
                              leaves=",".join(map(str, sub["leaves"])), val_acc=round(sub["val_acc"], 4),
                              chosen=s == res["chosen"]))
  for name in dict.fromkeys(n for _, n in results):   # the (layer, s) chosen on validation, per protocol
    layer = max((l for l, n in results if n == name),
                key=lambda l: results[l, name]["subsets"][results[l, name]["chosen"]]["val_acc"])
    res = results[layer, name]
    sub = res["subsets"][res["chosen"]]
    out.append(report.row("treenet", f"chosen subset: {name}", sub["test_acc"],
                          **dict(protocol, layer=subset_layer(layer, sub["leaves"], m)), leaf_layer=layer,
                          subset_size=res["chosen"], leaves=",".join(map(str, sub["leaves"])),
                          val_acc=round(sub["val_acc"], 4),
                          selected=f"layer and subset size on validation ({val_split}) among "
                                   f"{','.join(spec['layers'])} x sizes {','.join(map(str, sizes))}"))
  pngs = []
  if config.treenet.saliency_images > 0:
    layer = config.treenet.saliency_layer
    if spec["saliency_leaves"] == "best":
      leaves = results[layer, next(n for l, n in results if l == layer)]["ranking"][:3]
    else:
      leaves = spec["saliency_leaves"]
    if max(leaves) >= m:
      raise ValueError(f"config.treenet.saliency_leaves={config.treenet.saliency_leaves!r} names a leaf >= the "
                       f"run's {m} leaves.")
    pngs.append(_saliency(config, ckpt_config, setup, state, path, network, layer, leaves, test_protocol, workdir,
                          index))
  return out, pngs


def saliency_maps(encoder_def, params, stats, aug, images: np.ndarray, leaves, layer: str = "leaves"):
  """Per-leaf saliency of uint8 images [B, H, W, C]: (the [0, 1] evaluation view [B, S, S, C],
  maps [B, S, S, len(leaves)] = |d ||z_j|| / d pixel|, max over colour channels), float32."""
  geometry = ml_collections.ConfigDict(dict(aug.to_dict(), mean=(0.0,) * len(aug.mean), std=(1.0,) * len(aug.std)))
  mean, std = tuple(aug.mean), tuple(aug.std)
  leaves = [int(j) for j in leaves]

  @jax.jit
  def run(params, stats, images):
    x = multicrop.eval_preprocess(images, geometry)

    def norms(x):   # [B, L]: images do not interact in a TreeNet, so one backward pass serves the batch
      _, inter = nnx.merge(encoder_def, params, stats)(augment.normalize(x, mean, std), train=False)
      z = inter[layer][:, jnp.asarray(leaves)].astype(jnp.float32)
      return jnp.sqrt(jnp.sum(z * z, axis=-1) + 1e-12)

    value, pullback = jax.vjp(norms, x)
    maps = [jnp.abs(pullback(jax.nn.one_hot(jnp.full(value.shape[:1], i), len(leaves)))[0]).max(axis=-1)
            for i in range(len(leaves))]
    return x, jnp.stack(maps, axis=-1)

  x, maps = run(params, stats, jnp.asarray(images))
  return np.asarray(x), np.asarray(maps)


def overlay(unit_images: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """([B, S, S, C] in [0, 1], [B, S, S, L <= 3]) -> (the maps as R, G, B [B, S, S, 3], each scaled by its
  99th percentile per image and clipped to [0, 1]; the overlay on the grayscale image [B, S, S, 3])."""
  scale = np.percentile(maps, 99, axis=(1, 2), keepdims=True)
  rgb = np.clip(maps / np.maximum(scale, 1e-12), 0.0, 1.0)
  rgb = np.concatenate([rgb, np.zeros(rgb.shape[:3] + (3 - rgb.shape[-1],), rgb.dtype)], axis=-1)
  gray = unit_images.mean(axis=-1, keepdims=True)
  return rgb, np.clip(0.35 * gray + 0.8 * rgb, 0.0, 1.0)


def saliency_png(unit_images: np.ndarray, maps: np.ndarray, path: str, *, leaves, title: str) -> str:
  """A grid, one column per image: the image, the three leaves as R, G, B over it, then each leaf alone."""
  from jssl.evaluators import plots  # noqa: F401  (selects matplotlib's file-only backend)
  import matplotlib.pyplot as plt
  rgb, over = overlay(unit_images, maps)
  colours = ("red", "green", "blue")
  rows = [("image", np.repeat(unit_images.mean(-1, keepdims=True), 3, -1)), ("R, G, B over image", over)]
  for i, j in enumerate(leaves):
    alone = np.zeros_like(rgb)
    alone[..., i] = rgb[..., i]
    rows.append((f"leaf {j} ({colours[i]})", alone))
  n, height = len(unit_images), 1.3 * len(rows) + 0.5
  fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 0.4, height), dpi=100, squeeze=False)
  fig.subplots_adjust(left=0.05, right=0.99, bottom=0.01, top=1 - 0.45 / height, wspace=0.05, hspace=0.05)
  for r, (name, pics) in enumerate(rows):
    for c in range(n):
      ax = axes[r, c]
      ax.imshow(pics[c], interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
  fig.suptitle(title, fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return path


def _saliency(config, ckpt_config, setup, state, path, network, layer, leaves, test_protocol, workdir, index) -> str:
  data = feature_cache.eval_data_config(ckpt_config, test_protocol["data"])
  n = int(config.treenet.saliency_images)
  images, _ = sources.load_arrays(data, test_protocol["split"], n)   # the first n test images; labels unused
  params, stats = setup.encoder_params(state, network)
  unit, maps = saliency_maps(setup.encoder_def, params, stats, ckpt_config.aug, np.asarray(images)[:n], leaves, layer)
  run = os.path.basename(os.path.normpath(path))
  name = f"treenet_saliency_{index}_{run}_{network}_{layer}.png".replace(":", "-").replace("/", "-")
  title = (f"{run} ({ckpt_config.method}, step {test_protocol['step']}): {network} {layer}, |d ||z_j|| / d pixel| "
           f"of leaves {', '.join(map(str, leaves))} as R, G, B; {data.get('name') or data.get('source')} "
           f"{test_protocol['split']}")
  out = saliency_png(unit, maps, os.path.join(workdir, name), leaves=leaves, title=title)
  print(f"Plot: {out}", flush=True)
  return out


def tables(rows_: list[dict]) -> list[dict]:
  """Per-leaf and per-subset accuracy (%), one table each, from the "treenet" rows."""
  mine = [r for r in rows_ if r["evaluation"] == "treenet"]
  several = len({r["protocol"].get("checkpoint") for r in mine}) > 1
  label = lambda p: (os.path.basename(os.path.normpath(str(p.get("checkpoint", "")))) + " " + str(p.get("network"))
                     if several else str(p.get("network")))
  proto = lambda r: r["metric"].split(": ", 1)[1]
  pct = lambda v: f"{100 * v:.1f}"
  leaves = [r for r in mine if "rank" in r["protocol"]]
  subsets = [r for r in mine if "subset_size" in r["protocol"] and "selected" not in r["protocol"]]
  out = []
  if leaves:
    leaves = sorted(leaves, key=lambda r: (label(r["protocol"]), r["protocol"]["leaf_layer"], proto(r),
                                           r["protocol"]["rank"]))
    out.append(dict(title="TreeNet: each leaf alone, accuracy (%), ranked by validation accuracy",
                    columns=["run", "layer", "protocol", "leaf", "rank", "val", "test"],
                    rows=[[label(r["protocol"]), r["protocol"]["leaf_layer"], proto(r), r["protocol"]["leaf"],
                           r["protocol"]["rank"], pct(r["protocol"]["val_acc"]), pct(r["value"])] for r in leaves]))
  if subsets:
    out.append(dict(title="TreeNet: the s best leaves concatenated, accuracy (%); s chosen on validation",
                    columns=["run", "layer", "protocol", "s", "leaves", "val", "test", "chosen"],
                    rows=[[label(r["protocol"]), r["protocol"]["leaf_layer"], proto(r), r["protocol"]["subset_size"],
                           r["protocol"]["leaves"], pct(r["protocol"]["val_acc"]), pct(r["value"]),
                           "yes" if r["protocol"]["chosen"] else ""] for r in subsets]))
  return out
