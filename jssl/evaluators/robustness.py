"""The "robustness" evaluation (paper 003, CO-SSL, section 4.2, Tables 3 and 4).

One linear probe per run, trained on clean features of the configured layer
(config.linear's protocol: hyperparameters chosen on a validation split of train,
then refitted on all of train), classifies test images under three kinds of damage:

* ImageNet-C corruptions (jssl/data/corruptions.py: Gaussian, shot and impulse
  noise; defocus, glass, motion and zoom blur) at severities 1..5, applied in
  [0, 1] pixel space to the image the encoder sees (after the evaluation resize and
  centre crop, before normalisation); one key per test image and corruption, so the
  numbers depend only on config.seed. Table 3 reports the mean over severities.
* Internal masking: a random fraction (50..90%) of the local representations
  ("local", [B, h, w, C]) is dropped before global average pooling; the pooled
  vector is the mean of the kept positions, then the probe. Averaged over
  `mask_draws` draws per fraction, and over fractions for Table 3. It needs a
  layer that is the mean of "local" (ResNet, RES-L-H, Swin, mean-pooled ViT, and
  RF-ResNet's "pooled") or the model's `mlp` of that mean (RF-ResNet's
  "pre_logits"); both are checked on real images. Otherwise (a [CLS] ViT, joined
  layers, raw pixels) masking is left out with a printed note.
* PGD L-inf attacks (Madry et al.; Foolbox's LinfPGD as the paper used it) on
  encoder + probe end to end: a uniform random start in the eps ball (Foolbox's
  default), then `iterations` steps of size eps / divisor along the sign of the
  input gradient of the cross-entropy, each projected onto the eps ball around the
  clean image and onto [0, 1]. Default attacks are Table 4's eight.

Writes result rows (accuracies in [0, 1]), paper-shaped tables and one PNG per
run: accuracy against corruption severity, dropped fraction and eps.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jssl import sharding
from jssl.data import augment, corruptions, multicrop, sources
from jssl.evaluators import feature_cache, linear, report

TABLE4_ATTACKS = "0.003:40:1,0.01:40:1,0.03:40:1,0.1:40:1,0.003:40:5,0.01:40:5,0.003:10:1,0.01:10:1"
_SHORT = dict(gaussian_noise="Gauss.", shot_noise="Shot", impulse_noise="Imp.", defocus_blur="Defoc.",
              glass_blur="Glass", motion_blur="Motion", zoom_blur="Zoom")


def _floats(text: str, field: str) -> list[float]:
  try:
    return [float(v) for v in str(text).split(",") if v.strip()]
  except ValueError:
    raise ValueError(f"config.robustness.{field}={text!r} must be comma-separated numbers.") from None


def parse(cfg) -> dict:
  """Checks config.robustness and returns its lists; one sentence per bad field."""
  names = [n.strip() for n in cfg.corruptions.split(",") if n.strip()]
  bad = [n for n in names if n not in corruptions.NAMES]
  if bad:
    raise ValueError(f"config.robustness.corruptions names {bad}; valid corruptions are {', '.join(corruptions.NAMES)}.")
  severities = [int(s) for s in _floats(cfg.severities, "severities")]
  if any(s not in corruptions.SEVERITIES for s in severities):
    raise ValueError(f"config.robustness.severities={cfg.severities!r} must be among 1,2,3,4,5.")
  drops = _floats(cfg.mask_drops, "mask_drops")
  if any(not 0 <= d < 1 for d in drops):
    raise ValueError(f"config.robustness.mask_drops={cfg.mask_drops!r} must be fractions in [0, 1).")
  if cfg.mask_draws < 1:
    raise ValueError(f"config.robustness.mask_draws must be >= 1, got {cfg.mask_draws}.")
  attacks = []
  for spec in [a.strip() for a in cfg.attacks.split(",") if a.strip()]:
    try:
      eps, div, its = spec.split(":")
      attacks.append((float(eps), float(div), int(its)))
    except ValueError:
      raise ValueError(f"config.robustness.attacks entry {spec!r} must be eps:divisor:iterations, "
                       f"e.g. 0.01:40:5 (step eps/40, 5 iterations).") from None
    if not (attacks[-1][0] > 0 and attacks[-1][1] > 0 and attacks[-1][2] >= 1):
      raise ValueError(f"config.robustness.attacks entry {spec!r} needs eps > 0, divisor > 0, iterations >= 1.")
  return dict(corruptions=names, severities=severities if names else [], drops=drops, attacks=attacks)


def masked_mean(local: jax.Array, keys: jax.Array, drop: float) -> jax.Array:
  """Mean over the kept positions of local [B, h, w, C]: round((1 - drop) h w) >= 1 positions
  per image, drawn uniformly with its key ([B] keys); float32 [B, C]. drop = 0 is the plain mean."""
  b, h, w, c = local.shape
  local = local.astype(jnp.float32).reshape(b, h * w, c)
  keep = max(1, int(round((1.0 - drop) * h * w)))
  if keep == h * w:
    return jnp.mean(local, axis=1)
  scores = jax.vmap(lambda k: jax.random.uniform(k, (h * w,)))(keys)
  kept = jnp.argsort(jnp.argsort(scores, axis=1), axis=1) < keep
  return jnp.sum(local * kept[..., None], axis=1) / keep


def pgd(logits_fn, x: jax.Array, labels: jax.Array, keys: jax.Array, *, eps, step, iterations: int,
        random_start: bool = True) -> jax.Array:
  """L-inf projected gradient ascent of the cross-entropy on images x [B, H, W, C] in [0, 1].

  logits_fn: [B, H, W, C] -> [B, K]; keys: [B], one per image (the random start).
  Returns adversarial images with |x_adv - x| <= eps and 0 <= x_adv <= 1.
  """
  def loss(z):
    return optax.softmax_cross_entropy_with_integer_labels(logits_fn(z), labels).sum()

  def project(z):
    return jnp.clip(jnp.clip(z, x - eps, x + eps), 0.0, 1.0)

  z = x
  if random_start:
    z = project(x + jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], minval=-1.0, maxval=1.0))(keys) * eps)

  def body(_, z):
    return project(z + step * jnp.sign(jax.grad(loss)(z)))

  return jax.lax.fori_loop(0, iterations, body, z)


class _Net:
  """Encoder + probe as pure functions of [0, 1] images at the encoder's input size."""

  def __init__(self, encoder_def, aug, names, network):
    self.encoder_def, self.names, self.network = encoder_def, names, network
    self.mean, self.std = tuple(aug.mean), tuple(aug.std)
    self.geometry = aug.to_dict()
    self.geometry.update(mean=(0.0,) * len(self.mean), std=(1.0,) * len(self.mean))

  def to_unit(self, images):
    """uint8 [B, H, W, C] -> the evaluation view in [0, 1], float32 [B, S, S, C]."""
    return multicrop.eval_preprocess(images, ml_collections.ConfigDict(self.geometry))

  def features(self, params, stats, x):
    """(features [B, D] of the probe's layer, "local" or None, the model or None)."""
    x = augment.normalize(x, self.mean, self.std)
    if self.network == "pixels":
      return x.reshape(x.shape[0], -1).astype(jnp.float32), None, None
    model = nnx.merge(self.encoder_def, params, stats)
    out, inter = model(x, train=False)
    inter = dict(inter, output=out)
    pooled = [inter[n].astype(jnp.float32) for n in self.names]
    pooled = [p if p.ndim == 2 else jnp.mean(p, axis=tuple(range(1, p.ndim - 1))) for p in pooled]
    return jnp.concatenate(pooled, axis=-1), inter.get("local"), model

  def logits(self, params, stats, w, b, x):
    return self.features(params, stats, x)[0] @ w + b


def _masking_mode(net: _Net, params, stats, x) -> tuple[str | None, str]:
  """("mean" or "mlp" when the probe's layer is (the model's mlp of) the mean of "local", else None;
  the h x w of "local")."""
  if net.network == "pixels" or len(net.names) != 1:
    return None, ""

  def diffs(params, stats, x):
    feats, local, model = net.features(params, stats, x)
    if local is None or local.ndim != 4:
      return jnp.inf, jnp.inf, 1.0
    mean = jnp.mean(local.astype(jnp.float32), axis=(1, 2))
    mlp = getattr(model, "mlp", None)
    d_mlp = jnp.max(jnp.abs(mlp(mean, train=False) - feats)) if callable(mlp) and mean.shape == feats.shape else jnp.inf
    d_mean = jnp.max(jnp.abs(mean - feats)) if mean.shape == feats.shape else jnp.inf
    return d_mean, d_mlp, jnp.max(jnp.abs(feats)) + 1e-6

  d_mean, d_mlp, scale = (float(v) for v in jax.jit(diffs)(params, stats, x))
  local = jax.eval_shape(lambda p, s, z: net.features(p, s, z)[1], params, stats, x)
  positions = f"{local.shape[1]}x{local.shape[2]}" if local is not None and len(local.shape) == 4 else ""
  if d_mean <= 1e-4 * scale:
    return "mean", positions
  return ("mlp" if d_mlp <= 1e-4 * scale else None), positions


def _functions(net: _Net, spec: dict, mode: str | None, seed: int):
  """The jitted programs of one run: clean + masking, plain accuracy, one per PGD iteration count."""
  base = jax.random.PRNGKey(seed)

  def correct(logits, labels, valid):
    return jnp.sum((jnp.argmax(logits, -1) == labels) & valid)

  @jax.jit
  def prepare(images):
    return net.to_unit(images)

  @jax.jit
  def clean(params, stats, w, b, x, labels, valid, index):
    feats, local, model = net.features(params, stats, x)
    counts = [correct(feats @ w + b, labels, valid)]
    for drop in spec["drops"] if mode else []:
      total = 0
      for draw in range(spec["draws"]):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, 1), int(round(drop * 1e4))), draw)
        keys = corruptions.example_keys(key, index)
        pooled = masked_mean(local, keys, drop)
        if mode == "mlp":
          pooled = model.mlp(pooled, train=False)
        total = total + correct(pooled @ w + b, labels, valid)
      counts.append(total / spec["draws"])
    return jnp.stack([jnp.asarray(c, jnp.float32) for c in counts])

  @jax.jit
  def accuracy(params, stats, w, b, x, labels, valid):
    return correct(net.logits(params, stats, w, b, x), labels, valid)

  @jax.jit
  def keys_for(key, index):
    return corruptions.example_keys(key, index)

  attack_fns = {}
  for its in sorted({a[2] for a in spec["attacks"]}):
    def attack(params, stats, w, b, x, labels, valid, keys, eps, step, its=its):
      adv = pgd(lambda z: net.logits(params, stats, w, b, z), x, labels, keys, eps=eps, step=step,
                iterations=its, random_start=spec["random_start"])
      return correct(net.logits(params, stats, w, b, adv), labels, valid)
    attack_fns[its] = jax.jit(attack)
  return dict(prepare=prepare, clean=clean, accuracy=accuracy, keys_for=keys_for, attacks=attack_fns,
              corruption_key=lambda name, sev: jax.random.fold_in(jax.random.fold_in(
                  jax.random.fold_in(base, 0), corruptions.NAMES.index(name)), sev),
              attack_key=lambda eps, div, its: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
                  jax.random.fold_in(base, 2), int(round(eps * 1e6))), int(round(div * 1e3))), its))


def rows(config, store, path: str, network: str, layer: str, train, test, protocol: dict, mesh,
         workdir: str, index: int = 0) -> tuple[list[dict], list[str]]:
  """Result rows and the PNG of one run; train / test are its clean FeatureSets of `layer`."""
  cfg = config.robustness
  spec = dict(parse(cfg), draws=int(cfg.mask_draws), random_start=bool(cfg.random_start))
  ckpt_config, setup, state = store.checkpoint(path, train.protocol["step"])
  ytr = feature_cache.require_labels(train, "the robustness evaluation")
  num_classes = train.num_classes
  probe_cfg = {k: v for k, v in config.linear.to_dict().items() if k != "layers"}
  chosen = linear.select(train.feats, ytr, num_classes=num_classes, cfg=probe_cfg,
                         desc="robustness: linear probe, selecting on validation")
  w, b = linear.fit(train.feats, ytr, chosen["best"], num_classes=num_classes, cfg=probe_cfg)

  # The test images behind the test features, in the same order.
  data = feature_cache.eval_data_config(ckpt_config, test.protocol["data"])
  images, labels = sources.load_arrays(data, test.protocol["split"], test.protocol["max_examples"])
  n = len(images) if cfg.max_examples < 0 else min(len(images), int(cfg.max_examples))
  images, labels = np.asarray(images[:n]), np.asarray(labels[:n], np.int32)
  if n == 0 or labels.min() < 0:
    raise ValueError("the robustness evaluation needs labelled test images; the test split has none.")
  from_features = float(np.mean(np.argmax(test.feats[:n] @ w + b, -1) == labels))

  if network == "pixels":
    params, stats, names = {}, {}, ["pixels"]
  else:
    params, stats = setup.encoder_params(state, network)
    names = feature_cache.resolve_layer(layer, feature_cache.intermediate_names(
        setup.encoder_def, params, stats, ckpt_config.aug, images.shape[1:]))
  net = _Net(setup.encoder_def, ckpt_config.aug, names, network)
  run = os.path.basename(os.path.normpath(path))
  n_dev = mesh.devices.size
  batch = max(n_dev, config.batch_size // n_dev * n_dev)
  data_sharding = sharding.batch_sharded(mesh)
  w, b = (jax.device_put(jnp.asarray(a, jnp.float32), sharding.replicated(mesh)) for a in (w, b))

  def put(a):
    return jax.make_array_from_callback(a.shape, data_sharding, lambda idx: a[idx])

  def load(start):
    chunk = slice(start, start + batch)
    valid = np.zeros(batch, bool)
    valid[:len(images[chunk])] = True
    pad = batch - int(valid.sum())
    imgs = np.concatenate([images[chunk], np.zeros((pad,) + images.shape[1:], images.dtype)])
    ys = np.concatenate([labels[chunk], np.zeros(pad, np.int32)])
    return fns["prepare"](put(imgs)), put(ys), put(valid), put(np.arange(start, start + batch, dtype=np.int32))

  probe_x = jax.jit(net.to_unit)(jnp.asarray(images[:min(n, 8)]))
  mode, positions = _masking_mode(net, params, stats, probe_x) if spec["drops"] else (None, "")
  if spec["drops"] and mode is None:
    print(f"Robustness: internal masking left out for {run}: its layer {layer!r} is not the mean of the "
          f"model's \"local\" map (nor the model's mlp of it), so it cannot be re-pooled.", flush=True)
  fns = _functions(net, spec, mode, config.seed)
  side = int(probe_x.shape[1])
  length_scale = float(cfg.length_scale) or None

  work = [("clean", None)] + [("corruption", (c, s)) for c in spec["corruptions"] for s in spec["severities"]]
  work += [("attack", a) for a in spec["attacks"]]
  starts = list(range(0, n, batch))
  counts, current = {}, None
  from jssl.writers import phase
  units = [(start, kind, item) for start in starts for kind, item in work]
  for start, kind, item in phase(units, f"robustness: {run} {network} {layer}, {n} test images", unit="pass"):
    if start != current:
      x, ys, valid, where = load(start)
      current = start
    if kind == "clean":
      got = np.asarray(fns["clean"](params, stats, w, b, x, ys, valid, where))
    elif kind == "corruption":
      keys = fns["keys_for"](fns["corruption_key"](*item), where)
      xc = corruptions.corrupt(item[0], x, keys, item[1], length_scale=length_scale)
      got = np.asarray(fns["accuracy"](params, stats, w, b, xc, ys, valid), np.float64)
    else:
      eps, div, its = item
      keys = fns["keys_for"](fns["attack_key"](eps, div, its), where)
      got = np.asarray(fns["attacks"][its](params, stats, w, b, x, ys, valid, keys, jnp.float32(eps),
                                           jnp.float32(eps / div)), np.float64)
    counts[kind, item] = counts.get((kind, item), 0) + got

  hp = "C" if probe_cfg["backend"].startswith("sklearn") else "lr, wd"
  base = dict(protocol, examples=n, seed=config.seed, probe=f"{probe_cfg['backend']} {hp}={chosen['best']} "
              f"(val acc {chosen['val_acc']:.4f}), trained on clean {train.protocol['split']}")
  clean = counts["clean", None] / n
  out = [report.row("robustness", "clean", clean[0], **base, clean_from_cached_features=round(from_features, 4))]
  for name in spec["corruptions"]:
    accs = [float(counts["corruption", (name, s)]) / n for s in spec["severities"]]
    for s, a in zip(spec["severities"], accs):
      out.append(report.row("robustness", f"{name} s{s}", a, **base, corruption=name, severity=s,
                            parameters=corruptions.describe(name, s, side, length_scale)))
    out.append(report.row("robustness", name, float(np.mean(accs)), **base, corruption=name,
                          severity="mean of " + ",".join(map(str, spec["severities"]))))
  if mode:
    for drop, a in zip(spec["drops"], clean[1:]):
      out.append(report.row("robustness", f"mask {drop:.0%}", a, **base, dropped=drop, draws=spec["draws"],
                            pooling=mode, positions=positions))
    out.append(report.row("robustness", "mask", float(np.mean(clean[1:])), **base, pooling=mode, positions=positions,
                          dropped="mean of " + ",".join(f"{d:.0%}" for d in spec["drops"]), draws=spec["draws"]))
  for eps, div, its in spec["attacks"]:
    out.append(report.row("robustness", f"pgd eps={eps:g} step=eps/{div:g} it={its}",
                          float(counts["attack", (eps, div, its)]) / n, **base, eps=eps, pgd_step=f"eps/{div:g}",
                          iterations=its, random_start=spec["random_start"]))
  png = plot(out, os.path.join(workdir, f"robustness_{index}_{run}_{network}_{layer}.png".replace(":", "-")
                               .replace("/", "-")), title=f"{run} ({ckpt_config.method}, step {train.protocol['step']}): "
             f"{network} {layer}, {data.get('name') or data.get('source')} {test.protocol['split']} ({n})")
  print(f"Plot: {png}", flush=True)
  return out, [png]


def _run_label(p: dict, several: bool) -> str:
  name = os.path.basename(os.path.normpath(str(p.get("checkpoint", ""))))
  return f"{name} {p.get('network')} {p.get('layer')}" if several else name


def _pct(v) -> str:
  return "" if v is None else f"{100 * v:.1f}"


def tables(rows: list[dict]) -> list[dict]:
  """Tables 3 and 4 of the paper (accuracy %, one row per run) and accuracy per severity."""
  mine = [r for r in rows if r["evaluation"] == "robustness"]
  runs = list(dict.fromkeys((r["protocol"].get("checkpoint"), r["protocol"].get("network"), r["protocol"].get("layer"))
                            for r in mine))
  if not runs:
    return []
  several = len({r[0] for r in runs}) < len(runs)
  by = {}
  for r in mine:
    p = r["protocol"]
    by.setdefault((p.get("checkpoint"), p.get("network"), p.get("layer")), {})[r["metric"]] = r
  label = {k: _run_label(dict(checkpoint=k[0], network=k[1], layer=k[2]), several) for k in runs}
  names = [n for n in corruptions.NAMES if any(n in by[k] for k in runs)]
  has_mask = any("mask" in by[k] for k in runs)
  t3 = dict(title="Table 3: accuracy (%) under ImageNet-C corruptions (mean over severities) and internal masking "
                  "(mean over dropped fractions)",
            columns=["run", "clean"] + [("Noise: " if "noise" in n else "Blur: ") + _SHORT[n] for n in names]
            + (["Intern.: Mask"] if has_mask else []),
            rows=[[label[k], _pct(by[k]["clean"]["value"])]
                  + [_pct(by[k][n]["value"]) if n in by[k] else "" for n in names]
                  + ([_pct(by[k]["mask"]["value"]) if "mask" in by[k] else "n/a"] if has_mask else [])
                  for k in runs])
  out = [t3]
  attacks = list(dict.fromkeys((r["protocol"]["eps"], r["protocol"]["pgd_step"], r["protocol"]["iterations"])
                               for r in mine if "eps" in r["protocol"]))
  if attacks:
    lookup = {k: {(r["protocol"]["eps"], r["protocol"]["pgd_step"], r["protocol"]["iterations"]): r["value"]
                  for r in by[k].values() if "eps" in r["protocol"]} for k in runs}
    out.append(dict(
        title="Table 4: accuracy (%) under PGD L-inf attacks on encoder + linear probe",
        columns=["eps"] + [f"{a[0]:g}" for a in attacks],
        rows=[["step"] + [a[1] for a in attacks], ["iterations"] + [str(a[2]) for a in attacks]]
        + [[label[k]] + [_pct(lookup[k].get(a)) for a in attacks] for k in runs]))
  sev = sorted({r["protocol"]["severity"] for r in mine if isinstance(r["protocol"].get("severity"), int)})
  if sev:
    out.append(dict(title="Accuracy (%) per corruption severity",
                    columns=["run", "corruption"] + [str(s) for s in sev] + ["mean"],
                    rows=[[label[k], n] + [_pct(by[k][f"{n} s{s}"]["value"]) if f"{n} s{s}" in by[k] else ""
                                           for s in sev] + [_pct(by[k][n]["value"])]
                          for k in runs for n in names if n in by[k]]))
  return out


def plot(rows: list[dict], path: str, *, title: str) -> str:
  """One run's accuracy against corruption severity, dropped fraction of "local" and PGD eps; a PNG."""
  from jssl.evaluators import plots  # noqa: F401  (selects matplotlib's file-only backend)
  import matplotlib.pyplot as plt
  by = {r["metric"]: r for r in rows}
  clean = by["clean"]["value"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=100)
  ax = axes[0]
  for i, name in enumerate(n for n in corruptions.NAMES if n in by):
    sev = [r["protocol"]["severity"] for r in rows if r["protocol"].get("corruption") == name
           and isinstance(r["protocol"].get("severity"), int)]
    acc = [by[f"{name} s{s}"]["value"] for s in sev]
    ax.plot([0] + sev, [clean] + acc, marker="o", ms=3, ls="-" if "noise" in name else "--",
            color=plt.get_cmap("tab10")(i), label=name.replace("_", " "))
  ax.set(xlabel="severity (0 = clean)", ylabel="accuracy", title="ImageNet-C corruptions", ylim=(0, 1.02),
         xticks=range(6))
  ax.legend(fontsize=7)
  ax = axes[1]
  masks = [r for r in rows if isinstance(r["protocol"].get("dropped"), float)]
  if masks:
    ax.plot([0] + [r["protocol"]["dropped"] * 100 for r in masks], [clean] + [r["value"] for r in masks],
            marker="o", ms=3, color="black", label=f"mean of {masks[0]['protocol']['draws']} draws, "
            f"{masks[0]['protocol']['positions']} local positions")
    ax.legend(fontsize=7)
  else:
    ax.text(0.5, 0.5, "not applicable to this layer", ha="center", va="center", transform=ax.transAxes)
  ax.set(xlabel="local representations dropped (%)", ylabel="accuracy", title="internal masking", ylim=(0, 1.02))
  ax = axes[2]
  attacks = [r for r in rows if "eps" in r["protocol"]]
  for i, fam in enumerate(dict.fromkeys((r["protocol"]["pgd_step"], r["protocol"]["iterations"]) for r in attacks)):
    pts = sorted((r["protocol"]["eps"], r["value"]) for r in attacks
                 if (r["protocol"]["pgd_step"], r["protocol"]["iterations"]) == fam)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, color=plt.get_cmap("tab10")(i),
            label=f"step {fam[0]}, {fam[1]} it.")
  ax.axhline(clean, color="gray", ls=":", lw=1, label="clean")
  if attacks:
    ax.set_xscale("log")
  ax.set(xlabel="eps (L-inf, [0, 1] pixels)", ylabel="accuracy", title="PGD on encoder + linear probe",
         ylim=(0, 1.02))
  ax.legend(fontsize=7)
  fig.suptitle(f"{title}\nclean accuracy {clean:.3f}", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return path
