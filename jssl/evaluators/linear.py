"""Linear probes on frozen features, with hyperparameters and layers chosen on validation.

Protocol (`probe`): a validation split (10% by default, stratified by class,
seeded) is carved from train; every (learning rate, weight decay) pair of the
grid is trained on the remaining 90% and scored on the validation split; the
best pair is retrained on all of train and scored once on test. Standardisation
statistics come from the rows a classifier is trained on. The selection step
(`select`) never receives test data: its signature has no test argument, and
`probe` calls it before test features are first read.

The optax probes train the whole grid at once: the (lr, wd) pairs are a vmapped
axis of one jitted lax.scan over epochs x minibatches.
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jssl.writers import phase

BACKENDS = ("adam", "sgd", "sklearn_logreg", "sklearn_svc")


def split_train_val(labels: np.ndarray, val_fraction: float = 0.1, *, seed: int = 0,
                    stratified: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Indices (train_part, val) of a seeded, optionally class-stratified split of [N] labels."""
  if not 0 < val_fraction < 1:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
  rng = np.random.default_rng(seed)
  groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [np.arange(len(labels))]
  val = []
  for g in groups:
    g = rng.permutation(g)
    val.append(g[:int(round(len(g) * val_fraction))])
  val = np.sort(np.concatenate(val))
  return np.setdiff1d(np.arange(len(labels)), val), val


def _standardizer(x: np.ndarray):
  mean, std = x.mean(0), x.std(0) + 1e-6
  return lambda a: (a - mean) / std


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size", "optimizer"))
def _train_grid(x, y, lrs, wds, key, *, num_classes, epochs, batch_size, optimizer):
  """Trains one softmax classifier per (lr, wd) pair; returns (W [G, D, C], b [G, C]).

  Args:
    x: [N, D] float32 features; y: [N] int32 labels.
    lrs, wds: [G] peak learning rates (cosine-decayed to 0) and decoupled weight decays.
  """
  n, d = x.shape
  batch = min(batch_size, n)
  steps_per_epoch = n // batch
  total = epochs * steps_per_epoch
  base = optax.scale_by_adam() if optimizer == "adam" else optax.trace(decay=0.9)

  def train_one(lr, wd):
    params = (jnp.zeros((d, num_classes)), jnp.zeros((num_classes,)))
    opt = base.init(params)

    def loss_fn(p, xb, yb):
      return optax.softmax_cross_entropy_with_integer_labels(xb @ p[0] + p[1], yb).mean()

    def step(carry, idx):
      p, o, t = carry
      g = jax.grad(loss_fn)(p, x[idx], y[idx])
      u, o = base.update(g, o, p)
      scale = lr * 0.5 * (1 + jnp.cos(jnp.pi * t / total))
      p = jax.tree.map(lambda w, du: w - scale * (du + wd * w), p, u)
      return (p, o, t + 1), None

    def epoch(carry, k):
      perm = jax.random.permutation(k, n)[:steps_per_epoch * batch].reshape(steps_per_epoch, batch)
      return jax.lax.scan(step, carry, perm)[0], None

    (p, _, _), _ = jax.lax.scan(epoch, (params, opt, 0), jax.random.split(key, epochs))
    return p

  return jax.vmap(train_one)(lrs, wds)


def _fit_predict_optax(x, y, xs_eval, grid, *, num_classes, epochs, batch_size, optimizer, seed, desc):
  """Trains the grid points on (x, y) one after the other (one compiled program serves all,
  and a progress bar can count them); returns [G] lists of predictions for each array in xs_eval."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  out = [[] for _ in xs_eval]
  for lr, wd in phase(grid, desc or "", unit="setting", enabled=desc is not None):
    w, b = _train_grid(x, y, jnp.asarray([lr], jnp.float32), jnp.asarray([wd], jnp.float32),
                       jax.random.PRNGKey(seed), num_classes=num_classes, epochs=epochs, batch_size=batch_size,
                       optimizer=optimizer)
    for o, xe in zip(out, xs_eval):
      o.append(np.asarray(jnp.argmax(jnp.asarray(xe) @ w[0] + b[0], -1)))
  return [np.stack(o) for o in out]


def _sklearn_model(backend: str, c: float, seed: int):
  from sklearn.linear_model import LogisticRegression
  from sklearn.svm import LinearSVC
  return (LogisticRegression(C=c, max_iter=1000, random_state=seed) if backend == "sklearn_logreg"
          else LinearSVC(C=c, max_iter=5000, random_state=seed))


def _fit_predict_sklearn(x, y, xs_eval, grid, *, backend, seed, desc):
  out = [[] for _ in xs_eval]
  for c, _ in phase(grid, desc or "", unit="setting", enabled=desc is not None):  # sklearn grids sweep C = 1 / regularisation strength
    clf = _sklearn_model(backend, c, seed)
    clf.fit(x, y)
    for o, xe in zip(out, xs_eval):
      o.append(clf.predict(xe))
  return [np.stack(o) for o in out]


def _grid(cfg) -> list[tuple[float, float]]:
  if cfg["backend"].startswith("sklearn"):
    return [(float(c), 0.0) for c in cfg["cs"]]
  return [(float(lr), float(wd)) for lr in cfg["lrs"] for wd in cfg["wds"]]


def default_config() -> dict:
  return dict(backend="adam", lrs=(1e-3, 3e-3, 1e-2, 3e-2), wds=(0.0, 1e-4, 1e-3), cs=(0.01, 0.1, 1.0, 10.0),
              epochs=30, batch_size=256, standardize=True, val_fraction=0.1, stratified=True, seed=0)


def _fit_predict(x, y, xs_eval, grid, num_classes, cfg, desc=None):
  if cfg["standardize"]:
    f = _standardizer(x)
    x, xs_eval = f(x), [f(xe) for xe in xs_eval]
  if cfg["backend"].startswith("sklearn"):
    return _fit_predict_sklearn(x, y, xs_eval, grid, backend=cfg["backend"], seed=cfg["seed"], desc=desc)
  return _fit_predict_optax(x, y, xs_eval, grid, num_classes=num_classes, epochs=cfg["epochs"],
                            batch_size=cfg["batch_size"], optimizer=cfg["backend"], seed=cfg["seed"], desc=desc)


def select(train_x: np.ndarray, train_y: np.ndarray, *, num_classes: int, cfg: dict | None = None,
           desc: str | None = None) -> dict:
  """Chooses hyperparameters on a validation split of train only.

  Returns:
    {"best": (lr or C, wd), "val_acc": best validation accuracy,
     "grid": [{"hparams", "val_acc"}], "val_size": int}.
  """
  cfg = dict(default_config(), **(cfg or {}))
  if cfg["backend"] not in BACKENDS:
    raise ValueError(f"linear backend must be one of {BACKENDS}, got {cfg['backend']!r}.")
  tr, va = split_train_val(train_y, cfg["val_fraction"], seed=cfg["seed"], stratified=cfg["stratified"])
  grid = _grid(cfg)
  (preds,) = _fit_predict(train_x[tr], train_y[tr], [train_x[va]], grid, num_classes, cfg, desc=desc)
  accs = [float(np.mean(p == train_y[va])) for p in preds]
  best = int(np.argmax(accs))  # first maximum: ties go to the earlier grid point
  return dict(best=grid[best], val_acc=accs[best], val_size=int(len(va)),
              grid=[dict(hparams=g, val_acc=a) for g, a in zip(grid, accs)])


def probe(train_x, train_y, test_x, test_y, *, num_classes: int, cfg: dict | None = None) -> dict:
  """`select` on train, retrain the best on all of train, report test accuracy once."""
  cfg = dict(default_config(), **(cfg or {}))
  chosen = select(train_x, train_y, num_classes=num_classes, cfg=cfg)
  return _retrain_and_test(train_x, train_y, test_x, test_y, chosen, num_classes, cfg)


def _retrain_and_test(train_x, train_y, test_x, test_y, chosen, num_classes, cfg) -> dict:
  """The only place test data is read: after selection, one fit on all of train."""
  (preds,) = _fit_predict(train_x, train_y, [test_x], [chosen["best"]], num_classes, cfg,
                          desc="linear probe: refitting the chosen setting on all of train")
  return dict(chosen, test_acc=float(np.mean(preds[0] == test_y)), backend=cfg["backend"],
              standardize=cfg["standardize"], val_fraction=cfg["val_fraction"], epochs=cfg["epochs"])


def fit(train_x: np.ndarray, train_y: np.ndarray, hparams: tuple[float, float], *, num_classes: int,
        cfg: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The probe of one setting (`select`'s "best") trained on all of train, as an affine map.

  Returns:
    (w [D, num_classes], b [num_classes]), float32, with the standardisation folded in:
    logits = x @ w + b on raw features x [N, D]; the argmax is the prediction `probe` makes.
  """
  cfg = dict(default_config(), **(cfg or {}))
  x, y = np.asarray(train_x, np.float32), np.asarray(train_y)
  mean, std = (x.mean(0), x.std(0) + 1e-6) if cfg["standardize"] else (0.0 * x[0], 1.0 + 0.0 * x[0])
  z = (x - mean) / std
  if cfg["backend"].startswith("sklearn"):
    clf = _sklearn_model(cfg["backend"], hparams[0], cfg["seed"]).fit(z, y)
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes: one score for classes_[1]
      coef, icpt = np.concatenate([-coef, coef]) / 2, np.concatenate([-icpt, icpt]) / 2
    w, b = np.zeros((x.shape[1], num_classes)), np.full(num_classes, -1e9)   # absent classes never win
    w[:, clf.classes_], b[clf.classes_] = coef.T, icpt
  else:
    ws, bs = _train_grid(jnp.asarray(z), jnp.asarray(y), jnp.asarray([hparams[0]], jnp.float32),
                         jnp.asarray([hparams[1]], jnp.float32), jax.random.PRNGKey(cfg["seed"]),
                         num_classes=num_classes, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                         optimizer=cfg["backend"])
    w, b = np.asarray(ws[0], np.float64), np.asarray(bs[0], np.float64)
  return (w / std[:, None]).astype(np.float32), (b - (mean / std) @ w).astype(np.float32)


def select_layer(train_by_layer: dict[str, tuple[np.ndarray, np.ndarray]], *, num_classes: int,
                 cfg: dict | None = None) -> tuple[str, dict]:
  """Best layer by validation accuracy: {layer: (train_x, train_y)} -> (layer, its `select` result)."""
  results = {name: select(x, y, num_classes=num_classes, cfg=cfg, desc=f"linear probe {name}: selecting on validation")
             for name, (x, y) in train_by_layer.items()}
  best = max(results, key=lambda name: results[name]["val_acc"])
  return best, results


def probe_layers(layers: dict[str, tuple], *, num_classes: int, cfg: dict | None = None,
                 order: Sequence[str] | None = None) -> dict:
  """Layer selection on validation, then one test number for the chosen layer.

  Args:
    layers: {name: (train_x, train_y, test_x, test_y)}.

  Returns:
    the chosen layer's `probe` result plus "layer" and "val_acc_by_layer".
  """
  cfg = dict(default_config(), **(cfg or {}))
  order = list(order or layers)
  best, results = select_layer({n: layers[n][:2] for n in order}, num_classes=num_classes, cfg=cfg)
  result = _retrain_and_test(*layers[best], results[best], num_classes, cfg)
  return dict(result, layer=best, val_acc_by_layer={n: results[n]["val_acc"] for n in order})
