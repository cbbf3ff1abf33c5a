"""Paper 004's sample-level label set, "samples": each of a few train images is a class of its own.

Built from `config.analysis.samples` (images, train_augs, test_augs, seed) and the analysed
checkpoint, reproducibly:

* images: numpy's `default_rng(seed).permutation` of the analysed train split (the split and
  example cap the other label sets read) gives the first `images` indices; the image at
  position i of that list has label i (0 .. images - 1).
* views: `train_augs` augmented views of every image form the train set, `test_augs` other
  views the test set. View v of image i is drawn with the key
  fold_in(fold_in(PRNGKey(seed), i), v); the train set takes v = 0 .. train_augs - 1, the
  test set v = train_augs .. train_augs + test_augs - 1, so no test view shares a train
  view's key, and a different test_augs leaves the train views unchanged.
* augmentation: the checkpoint's own training recipe (its saved `aug` config) through
  `multicrop.make_views`, with the settings of its first global view (`blur_p[0]`,
  `solarize_p[0]`: for BYOL's asymmetric pair, view 1) and no multi-crop local views. A
  view comes out at aug.global_size and normalised, as the encoder read it in training, so
  no evaluation preprocessing is applied on top.

The views are not stored: `features` hands int32 (label, view) rows to `features.extract`,
whose jitted function draws each view and runs the encoder on it, one batch at a time, for
every analysed layer in one pass (a progress bar counts the batches). The features, [images
x (train_augs + test_augs), D] per layer, are cached on disk like other features, keyed by
the checkpoint, network, layers, split, sizes, seed and view settings. `views` returns the
augmented images themselves (tests, inspection).
"""
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jssl import sharding
from jssl.data import multicrop, sources
from jssl.evaluators import feature_cache
from jssl.evaluators import features as features_lib


@dataclasses.dataclass
class SampleFeatures:
  """Features of the sample-level sets: feats[layer] = (train [N, D], test [M, D]); labels int32 [N], [M]."""
  feats: dict
  train_labels: np.ndarray
  test_labels: np.ndarray
  protocol: dict   # what the result rows report about the sets


def check(cfg) -> None:
  """One sentence for a bad `config.analysis.samples` field."""
  for name in ("images", "train_augs", "test_augs"):
    value = cfg[name]
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"config.analysis.samples.{name}={value!r} must be a positive integer.")
  if not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2 ** 31:
    raise ValueError(f"config.analysis.samples.seed={cfg.seed!r} must be an integer in [0, 2**31).")


def choose(num_train: int, images: int, seed: int, split: str = "train") -> np.ndarray:
  """Indices into the train split of the `images` images, in label order."""
  if images > num_train:
    raise ValueError(f"config.analysis.samples.images={images} is larger than the train split {split!r}, which "
                     f"has {num_train} images here; lower it or analyse a larger split.")
  return np.random.default_rng(seed).permutation(num_train)[:images]


def view_rows(images: int, first_view: int, num_views: int) -> np.ndarray:
  """int32 [images * num_views, 2] rows (label, view number), image-major."""
  labels = np.repeat(np.arange(images, dtype=np.int32), num_views)
  views = np.tile(np.arange(first_view, first_view + num_views, dtype=np.int32), images)
  return np.stack([labels, views], axis=1)


def view_aug(aug: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training aug config reduced to one view with the first global view's settings, no local views."""
  def first(value):
    return float(value if isinstance(value, (int, float)) else tuple(value)[0])
  out = ml_collections.ConfigDict(aug.to_dict())
  out.num_global, out.num_local = 1, 0
  out.blur_p, out.solarize_p = (first(aug.blur_p),), (first(aug.solarize_p),)
  return out


def augment(images: jax.Array, rows: jax.Array, seed, aug: ml_collections.ConfigDict) -> jax.Array:
  """Views float32 [R, S, S, C] of uint8 images [M, H, W, C] for rows (image, view) [R, 2]; jittable.

  `aug` is a one-view config (`view_aug`); every row's key depends on (seed, image, view) only.
  `seed` is an int or an integer scalar array.
  """
  base = jax.random.PRNGKey(seed)

  def one(row):
    key = jax.random.fold_in(jax.random.fold_in(base, row[0]), row[1])
    return multicrop.make_views(key, images[row[0]][None], aug)["global"][0, 0]
  return jax.vmap(one)(rows)


def views(images: np.ndarray, *, seed: int, train_augs: int, test_augs: int,
          aug: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train views, train labels, test views, test labels) of uint8 images [M, H, W, C], on the host.

  `aug` is the training aug config; these are the images `features` runs the encoder on.
  """
  rows = np.concatenate([view_rows(len(images), 0, train_augs), view_rows(len(images), train_augs, test_augs)])
  x = np.asarray(_jitted_augment(json.dumps(view_aug(aug).to_dict()))(images, rows, np.int32(seed)))
  n = len(images) * train_augs
  return x[:n], rows[:n, 0], x[n:], rows[n:, 0]


@functools.lru_cache(maxsize=8)
def _jitted_augment(aug_json: str):
  aug = ml_collections.ConfigDict(json.loads(aug_json))
  return jax.jit(lambda x, r, s: augment(x, r, s, aug))


def layer_fns(setup, params, stats, aug, layers: Sequence[str], image_shape):
  """(fn(params, stats, views) -> all layers' pooled features concatenated, width of each layer)."""
  identity = lambda x, a: x  # noqa: E731 (the views are the encoder's input already)
  available = feature_cache.intermediate_names(setup.encoder_def, params, stats, aug, image_shape)
  names = [feature_cache.resolve_layer(layer, available) for layer in layers]
  x = jax.ShapeDtypeStruct((1, aug.global_size, aug.global_size, image_shape[-1]), jnp.float32)
  widths = [jax.eval_shape(feature_cache.make_pooled_fn(setup.encoder_def, aug, n, identity), params, stats,
                           x).shape[-1] for n in names]
  return feature_cache.make_pooled_fn(setup.encoder_def, aug, sum(names, []), identity), widths


def view_fn(encode, one_view: ml_collections.ConfigDict, seed: int):
  """fn((params, uint8 images [M, H, W, C]), stats, rows [R, 2]) -> encode(params, stats, the rows' views)."""
  def fn(bundle, stats, rows):
    params, source_images = bundle
    return encode(params, stats, augment(source_images, rows, seed, one_view))
  return fn


def extract_sets(fn, params, stats, images: np.ndarray, cfg, *, mesh, batch_size: int, desc: str):
  """(train features, train labels, test features, test labels) of the sample-level sets of `images`.

  `fn` is a `view_fn`; cfg is `config.analysis.samples`; `images` are the chosen train images.
  """
  bundle = (params, jax.device_put(np.asarray(images), sharding.replicated(mesh)))
  out = []
  for which, first, num in (("train", 0, cfg.train_augs), ("test", cfg.train_augs, cfg.test_augs)):
    rows = view_rows(cfg.images, first, num)
    what = f"{desc}, {which} ({cfg.images} images x {num} views = {len(rows)})"
    out += [features_lib.extract(fn, bundle, stats, rows, batch_size=batch_size, mesh=mesh,
                                 desc=what).astype(np.float32), rows[:, 0]]
  return tuple(out)


def features(store, cfg, fs_protocol: dict, network: str, layers: Sequence[str]) -> SampleFeatures:
  """The sample-level sets of one checkpoint, through `network` at each of `layers`.

  Args:
    store: the program's feature_cache.FeatureStore (checkpoint loading, mesh, batch size, cache).
    cfg: `config.analysis.samples`.
    fs_protocol: the protocol of the analysed train FeatureSet (checkpoint, step, split,
      max_examples, data): the images are drawn from that split.
    network: student | teacher | pixels (the views themselves, flattened).
    layers: layer specs as feature_cache.resolve_layer reads them.
  """
  check(cfg)
  path, step, split = fs_protocol["checkpoint"], fs_protocol["step"], fs_protocol["split"]
  config, setup, state = store.checkpoint(path, step)
  data = feature_cache.eval_data_config(config, fs_protocol["data"])
  one_view = view_aug(config.aug)
  requested = list(dict.fromkeys(layers))
  layers = ["pixels"] if network == "pixels" else requested   # the pixels baseline has one "layer"
  sizes = dict(images=cfg.images, train_augs=cfg.train_augs, test_augs=cfg.test_augs, seed=cfg.seed)
  key_protocol = dict(checkpoint=os.path.abspath(path), step=int(step), network=network, layers=layers, split=split,
                      max_examples=fs_protocol["max_examples"], samples=sizes,
                      data={k: data.get(k) for k in feature_cache.DATA_FIELDS},
                      aug=json.loads(json.dumps(one_view.to_dict())))
  key = hashlib.sha256(json.dumps(key_protocol, sort_keys=True).encode()).hexdigest()[:20]
  where = os.path.join(store.cache_dir or os.path.join(path, "eval_features"), f"samples_{key}")
  n_train = cfg.images * cfg.train_augs
  if os.path.exists(os.path.join(where, "meta.json")):
    meta = feature_cache._read(where, "meta.json")
    feats, labels = feature_cache._read(where, "features.npy"), feature_cache._read(where, "labels.npy")
    widths, pool = meta["widths"], meta["pool"]
  else:
    source = sources.get_source(data, split)
    cap = fs_protocol["max_examples"]
    pool = len(source) if cap is None else min(len(source), cap)
    images = np.asarray(source.get_batch(choose(pool, cfg.images, cfg.seed, split))["image"])
    if network == "pixels":
      params, stats = {}, {}
      widths = [one_view.global_size ** 2 * images.shape[-1]]
      encode = lambda p, s, x: x.reshape(x.shape[0], -1)  # noqa: E731
    else:
      params, stats = setup.encoder_params(state, network)
      encode, widths = layer_fns(setup, params, stats, one_view, layers, images.shape[1:])

    run_name = os.path.basename(os.path.normpath(path))
    parts = extract_sets(view_fn(encode, one_view, cfg.seed), params, stats, images, cfg, mesh=store.mesh,
                         batch_size=store.batch_size, desc=f"samples: {run_name} {network} {','.join(layers)}")
    feats, labels = np.concatenate([parts[0], parts[2]]), np.concatenate([parts[1], parts[3]])
    feature_cache._write(where, feats, labels, dict(key_protocol, widths=[int(w) for w in widths], pool=pool))
  bounds = np.cumsum([0] + list(widths))
  out = {layer: (feats[:n_train, lo:hi], feats[n_train:, lo:hi]) for layer, lo, hi in zip(layers, bounds, bounds[1:])}
  if network == "pixels":
    out = {layer: out["pixels"] for layer in requested}
  protocol = dict(train=f"{split} ({pool}): {cfg.images} images x {cfg.train_augs} views ({n_train})",
                  test=f"the same images x {cfg.test_augs} other views ({cfg.images * cfg.test_augs})",
                  sample_seed=cfg.seed, views=f"aug {config.aug.get('recipe', '?')}, first global view")
  return SampleFeatures(out, labels[:n_train].astype(np.int32), labels[n_train:].astype(np.int32), protocol)
