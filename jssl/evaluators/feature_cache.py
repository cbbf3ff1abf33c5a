"""Frozen features of jssl checkpoints, pooled to vectors and cached on disk as .npy.

A feature set is named by (checkpoint directory, step, network, layer, dataset
split, example count, preprocessing). The first request extracts it (batched
and sharded over the devices by `features.extract`) and writes
`<cache_dir>/<key>/{features,labels}.npy` plus `meta.json`; later requests with
the same name, from any run, read the files instead of running the encoder.

Layer names:
  * any intermediate the model returns ("pre_logits", "cls", "tokens", "local",
    "stage3", "block_5", ...) or "output";
  * several joined by "+" ("stage3+stage4"), concatenated after pooling;
  * "last_blocks:N", the concatenation of the last N "block_i" (ViT [CLS]
    tokens, as DINO's linear evaluation with N = 4) or "stage_i" (ResNet).
Maps [B, h, w, C] and token sets [B, N, D] are average-pooled to [B, C] / [B, D].

network="pixels" is the no-learning baseline: the images after the checkpoint's
own evaluation preprocessing (resize, centre crop, normalisation), flattened to
[B, H * W * C]; the layer is ignored. Every protocol then measures raw pixels
exactly as it measures the encoder that reads them.
"""
import dataclasses
import hashlib
import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jssl.data import multicrop, sources
from jssl.evaluators import features as features_lib

# Data fields an evaluation config may override on top of the checkpoint's own.
DATA_FIELDS = ("source", "name", "data_dir", "image_size", "num_classes")


@dataclasses.dataclass
class FeatureSet:
  """Pooled features of one split. feats: float32 [N, D]; labels: int32 [N] or None."""
  feats: np.ndarray
  labels: np.ndarray | None
  num_classes: int
  protocol: dict


def require_labels(fs: FeatureSet, metric: str) -> np.ndarray:
  """Returns fs.labels, or raises one sentence when the split has none."""
  if fs.labels is None or fs.labels.size == 0 or np.any(fs.labels < 0):
    raise ValueError(f"{metric} needs labels, but the dataset split {fs.protocol.get('split')!r} "
                     f"of {fs.protocol.get('data')} has none; pick a labelled split or drop {metric}.")
  return fs.labels


def _pool(x: jax.Array) -> jax.Array:
  """[B, h, w, C] -> [B, C]; [B, N, D] -> [B, D]; [B, D] unchanged; float32."""
  x = x.astype(jnp.float32)
  return x if x.ndim == 2 else jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def _numbered(names, prefix: str) -> list[str]:
  found = [n for n in names if re.fullmatch(rf"{prefix}\d+", n)]
  return sorted(found, key=lambda n: int(n[len(prefix):]))


def resolve_layer(layer: str, available) -> list[str]:
  """Expands a layer spec into intermediate names, or raises listing the valid ones."""
  available = sorted(set(available) | {"output"})
  match = re.fullmatch(r"last_blocks:(\d+)", layer)
  if match:
    n = int(match.group(1))
    stack = _numbered(available, "block_") or _numbered(available, "stage")
    if not 1 <= n <= len(stack):
      raise ValueError(f"layer={layer!r} asks for the last {n} blocks but this model has {len(stack)} "
                       f"numbered blocks/stages ({', '.join(stack) or 'none'}).")
    return stack[-n:]
  names = layer.split("+")
  bad = [n for n in names if n not in available]
  if bad or not layer:
    raise ValueError(f"layer={layer!r} is not a layer of this model; valid names are "
                     f"{', '.join(available)}, 'a+b' joins, or 'last_blocks:N'.")
  return names


def make_pooled_fn(encoder_def, aug, names: list[str], preprocess=multicrop.eval_preprocess):
  """(params, stats, uint8 images [B, H, W, C]) -> float32 [B, D], pooled and concatenated.

  `preprocess(images, aug)` makes the encoder's input; the default is the evaluation view.
  """
  def fn(params, stats, images):
    model = nnx.merge(encoder_def, params, stats)
    out, inter = model(preprocess(images, aug), train=False)
    inter = dict(inter, output=out)
    return jnp.concatenate([_pool(inter[n]) for n in names], axis=-1)
  return fn


def make_pixels_fn(aug):
  """(uint8 images [B, H, W, C]) -> the encoder's input, flattened: float32 [B, H * W * C]."""
  def fn(params, stats, images):
    del params, stats
    x = multicrop.eval_preprocess(images, aug)
    return x.reshape(x.shape[0], -1).astype(jnp.float32)
  return fn


def intermediate_names(encoder_def, params, stats, aug, image_shape) -> list[str]:
  """Names of the model's intermediates, found by shape evaluation (nothing runs)."""
  def fn(p, s, x):
    return nnx.merge(encoder_def, p, s)(multicrop.eval_preprocess(x, aug), train=False)[1]
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.uint8)
  return sorted(jax.eval_shape(fn, params, stats, x))


def checkpoint_steps(path: str) -> list[int]:
  """The saved steps of a jssl run, sorted, or one sentence when it has no checkpoint directory."""
  directory = os.path.abspath(os.path.join(path, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No jssl checkpoint in {path}: {directory} does not exist.")
  from jssl.checkpoint import READ_ONLY
  manager = ocp.CheckpointManager(directory, options=READ_ONLY)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def checkpoint_step(path: str, step: int | None) -> int:
  """The newest (or the given) step of a jssl run, or one sentence saying why there is none."""
  steps = checkpoint_steps(path)
  chosen = max(steps, default=None) if step is None else step
  if chosen is None or chosen not in steps:
    directory = os.path.abspath(os.path.join(path, "checkpoints"))
    raise FileNotFoundError(f"No checkpoint step {step if step is not None else ''} in {directory} "
                            f"(it has steps {steps}).")
  return chosen


def eval_data_config(ckpt_config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """The checkpoint's data config with the non-empty fields of `overrides` replaced."""
  data = ml_collections.ConfigDict(ckpt_config.data.to_dict())
  for k, v in overrides.items():
    if v not in (None, "") and k in DATA_FIELDS:
      data[k] = v
  return data


class FeatureStore:
  """Extracts and caches features; loads each checkpoint at most once per process."""

  def __init__(self, *, cache_dir: str | None, mesh, batch_size: int = 512):
    """cache_dir: where entries live; None or "" keeps them in `<checkpoint>/eval_features`."""
    self.cache_dir, self.mesh, self.batch_size = cache_dir, mesh, batch_size
    self._loaded = {}

  def _load(self, path: str, step: int):
    from jssl import checkpoint
    if (path, step) not in self._loaded:
      self._loaded[(path, step)] = checkpoint.load_pretrained(path, step=step, mesh=self.mesh)
    return self._loaded[(path, step)]

  def checkpoint_config(self, path: str, step: int | None = None) -> ml_collections.ConfigDict:
    """The training config of a run (loading the checkpoint, which later requests reuse)."""
    return self.checkpoint(path, step)[0]

  def checkpoint(self, path: str, step: int | None = None):
    """(config, setup, state) of a run, as `checkpoint.load_pretrained`; loaded once per process."""
    return self._load(path, checkpoint_step(path, step))

  def get(self, path: str, *, step: int | None = None, network: str = "student", layer: str = "pre_logits",
          split: str = "train", max_examples: int | None = None, data_overrides: dict | None = None) -> FeatureSet:
    """Pooled features of `split` for one checkpoint; see the module docstring for `layer`."""
    if network not in ("student", "teacher", "pixels"):
      raise ValueError(f"network={network!r} must be student, teacher or pixels.")
    step = checkpoint_step(path, step)
    config, setup, state = self._load(path, step)
    if network == "teacher" and "teacher_params" not in state:
      raise ValueError(f"The checkpoint in {path} has no teacher network; use network='student'.")
    data = eval_data_config(config, data_overrides or {})
    pre = {k: config.aug[k] for k in ("global_size", "eval_resize", "mean", "std")}
    if network == "pixels":
      layer = "pixels"
    protocol = dict(checkpoint=os.path.abspath(path), step=int(step), network=network, layer=layer,
                    split=split, max_examples=max_examples,
                    data={k: data.get(k) for k in DATA_FIELDS}, preprocessing=json.loads(json.dumps(pre)))
    key = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:20]
    where = os.path.join(self.cache_dir or os.path.join(path, "eval_features"), key)
    if os.path.exists(os.path.join(where, "meta.json")):
      meta = _read(where, "meta.json")
      labels = _read(where, "labels.npy") if meta["has_labels"] else None
      return FeatureSet(_read(where, "features.npy"), labels, meta["num_classes"], protocol)

    info = sources.dataset_info(data)
    if network == "pixels":
      params, stats, fn = {}, {}, make_pixels_fn(config.aug)
    else:
      params, stats = setup.encoder_params(state, network)
      names = resolve_layer(layer, intermediate_names(setup.encoder_def, params, stats, config.aug,
                                                      info["image_shape"]))
      fn = make_pooled_fn(setup.encoder_def, config.aug, names)
    images, labels = sources.load_arrays(data, split, max_examples)
    desc = f"features: {os.path.basename(os.path.normpath(path))} {network} {layer}, {split} ({len(images)})"
    feats = features_lib.extract(fn, params, stats, np.asarray(images), batch_size=self.batch_size,
                                 mesh=self.mesh, desc=desc).astype(np.float32)
    labels = None if labels is None else np.asarray(labels, np.int32)
    _write(where, feats, labels, dict(protocol, num_classes=info["num_classes"],
                                      has_labels=labels is not None))
    return FeatureSet(feats, labels, info["num_classes"], protocol)


def _read(where: str, name: str):
  """One file of a cache entry, or one sentence naming the file when it does not read."""
  path = os.path.join(where, name)
  try:
    if name.endswith(".json"):
      with open(path) as f:
        return json.load(f)
    return np.load(path)
  except Exception as e:  # numpy and json raise many types for damaged files
    text = str(e).strip().splitlines()
    raise ValueError(f"The feature cache file {path} does not read ({type(e).__name__}: "
                     f"{text[0][:200] if text else ''}); delete {where} to extract these features again.") from e


def _write(where: str, feats: np.ndarray, labels, meta: dict) -> None:
  """Writes the arrays first and meta.json last, so a half-written entry is never read."""
  os.makedirs(where, exist_ok=True)
  np.save(os.path.join(where, "features.npy"), feats)
  if labels is not None:
    np.save(os.path.join(where, "labels.npy"), labels)
  tmp = os.path.join(where, "meta.json.tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(where, "meta.json"))
