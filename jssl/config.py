"""The base configuration every recipe in `configs/` starts from, and its checks.

A recipe calls `base(method=..., ...)`, overrides fields and returns the
ConfigDict. `validate` runs before anything is compiled and raises one clear
sentence naming the bad field.
"""
import importlib
import math

import ml_collections

from jssl import fsdp, guard
from jssl.data import multicrop, sources

# (field, lowest allowed, whether the lowest is allowed, highest allowed): numbers
# that must be finite and in range, checked before anything is built.
_NUMBERS = (
    ("optim.lr", 0.0, False, None), ("optim.min_lr", 0.0, True, None), ("optim.warmup_epochs", 0.0, True, None),
    ("optim.weight_decay", 0.0, True, None), ("optim.momentum", 0.0, True, 1.0), ("optim.b2", 0.0, True, 1.0),
    ("optim.clip_grad", 0.0, True, None), ("optim.freeze_epochs", 0.0, True, None),
    ("ema.base", 0.0, True, 1.0), ("ema.end", 0.0, True, 1.0), ("probe.lr", 0.0, False, None),
    ("eval.knn_temperature", 0.0, False, None), ("num_epochs", 0.0, True, None),
    ("log_every_steps", 0, False, None), ("checkpoint_every_steps", 0, False, None),
    ("keep_checkpoints", 0, False, None), ("analysis.every_epochs", 0.0, True, None),
)


def base(method: str, *, data_source: str = "fashion_mnist", data_name: str | None = None, aug_recipe: str | None = None,
         global_size: int = 28, local_size: int = 0, num_local: int = 0, channels: int = 1,
         small_images: bool = True) -> ml_collections.ConfigDict:
  """Defaults shared by all recipes; `config.<method>` holds the method's own fields."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = method
  c[method] = importlib.import_module(f"jssl.methods.{method}").default_config()

  c.data = sources.data_config(data_source, **({"name": data_name} if data_name else {}))
  c.aug = multicrop.aug_config(aug_recipe or method, global_size=global_size, local_size=local_size,
                               num_local=num_local, channels=channels, small_images=small_images)

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet"
  c.model.variant = "resnet18"
  c.model.small_stem = small_images
  c.model.stem_pool = True    # ResNet: max-pool after the 7x7 stride-2 stem (ignored with small_stem)
  c.model.dtype = "float32"   # compute dtype; parameters and optimizer state stay float32
  c.model.remat = "none"      # ViT/Swin: "block" recomputes each block's activations in the backward pass
  c.model.stem_channels = ()  # ViT: widths of 3x3 conv (BatchNorm, ReLU) layers before the patch embedding

  c.batch_size = 256          # global batch, split over all devices
  c.num_epochs = 100
  c.total_steps = -1          # > 0 overrides num_epochs

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "lars"       # lars | adamw | sgd
  c.optim.lr = 0.2            # base learning rate for a batch of 256 (scaled linearly)
  c.optim.min_lr = 0.0
  c.optim.warmup_epochs = 10.0
  c.optim.weight_decay = 1.5e-6
  c.optim.weight_decay_end = -1.0   # >= 0: cosine schedule from weight_decay to this value
  c.optim.momentum = 0.9
  c.optim.b2 = 0.999
  c.optim.clip_grad = 0.0     # > 0: clip gradients to this norm
  c.optim.clip_mode = "global"  # global: their joint norm | per_tensor: each tensor's (DINO/iBOT/SOVE code)
  c.optim.frozen = ""         # regex over parameter paths frozen for freeze_epochs
  c.optim.freeze_epochs = 0.0
  c.optim.frozen_adam = "held"  # AdamW: frozen params' moments and step count start at unfreezing (PyTorch) | running

  c.ema = ml_collections.ConfigDict()
  c.ema.base = 0.99           # teacher momentum at step 0, cosine to `end`
  c.ema.end = 1.0

  c.probe = ml_collections.ConfigDict()
  c.probe.enabled = True      # online linear probe on stop-gradient features
  c.probe.lr = 1e-3

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0      # 0: only at the end of training
  c.eval.network = "student"  # which encoder the k-NN monitor reads: student | teacher
  c.eval.knn_k = 20
  c.eval.knn_temperature = 0.07
  c.eval.train_examples = -1  # -1: whole train split as the k-NN bank
  c.eval.test_examples = -1
  c.eval.batch_size = 512
  c.eval.at_init = False      # also report the k-NN accuracy of the untrained encoder
  c.eval.pixels_baseline = False  # also report the same k-NN on the raw (preprocessed) images

  c.analysis = ml_collections.ConfigDict()   # clustering metrics during training (jssl/evaluators/analysis_monitor.py)
  c.analysis.every_epochs = 0.0   # 0: off; > 0: at step 0, every this many epochs and at the end
  c.analysis.layers = ""          # comma-separated intermediates ("stem,block_1,..."); "": pre_logits
  c.analysis.labels = "classes,superclasses"   # label sets (jssl/evaluators/label_sets.py)
  c.analysis.max_train_examples = 5000   # fixed random subsets (-1: the whole split)
  c.analysis.max_test_examples = 2000
  c.analysis.block_size = 4096
  c.analysis.samples = ml_collections.ConfigDict()   # label set "samples" (jssl/evaluators/sample_level.py)
  c.analysis.samples.images = 500   # train images, each its own class (paper 004: 500)
  c.analysis.samples.train_augs = 100   # augmented views of each: the train set (paper: 100)
  c.analysis.samples.test_augs = 20     # other views of each: the test set (paper: 20)
  c.analysis.samples.seed = 0
  c.analysis.mine = False         # also MINE's I(input; layer) in nats (jssl/evaluators/mine.py) per layer
  c.analysis.mine_examples = 2000   # the first N images of the train subset
  c.analysis.mine_seeds = 5         # critics averaged, as paper 004
  c.analysis.mine_steps = 2000
  c.analysis.mine_hidden = 128
  c.analysis.mine_pca_dim = 64      # > 0: each side projected on its top principal components first

  c.on_nonfinite = "stop"     # a NaN/Inf loss, gradient or parameter: stop the run | skip the update
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.checkpoint_steps = ""     # comma-separated extra steps to save ("0,10,100"; 0: the untrained state)
  c.keep_checkpoints = 2      # the newest N are kept; with checkpoint_steps, enough to keep them all
  c.num_devices = -1          # -1: all devices
  c.mesh = ml_collections.ConfigDict()   # how the devices split the work (jssl/sharding.py, jssl/fsdp.py)
  c.mesh.fsdp = 1             # devices along the `fsdp` axis (-1: all): > 1 splits params, teacher, optimiser state
  c.mesh.fsdp_rules = ""      # comma-separated regexes over parameter paths that FSDP may split ("": all)
  c.mesh.fsdp_min_size = fsdp.DEFAULT_MIN_SIZE   # parameters with fewer elements stay replicated
  module = importlib.import_module(f"jssl.methods.{method}")
  if hasattr(module, "training_defaults"):   # the method's own recipe (optimiser, EMA, ...)
    module.training_defaults(c)
  return c



def fmnist_vit_mini(method: str) -> ml_collections.ConfigDict:
  """The shared part of the mini-ViT Fashion-MNIST recipes (configs/*_vit_mini_fmnist.py), so
  that DINO, iBOT-style and SOVE differ only in their method fields and step counts: a patch-7
  ViT (width 64, 2 heads, 4 blocks) read on its [CLS] token, two 28 px crops
  with the quickstart's intensity augmentation, batch 64, DINO's optimiser with warm-ups
  shortened to the budget, lr 6e-3 x batch/256 and EMA 0.97 -> 1 (docs/fmnist.md rows 58-70)."""
  c = base(method, aug_recipe="dino", data_source="fashion_mnist", global_size=28, channels=1,
           small_images=True)
  c.model.update(name="vit", variant="Ti/7", width=64, num_heads=2, depth=4, image_size=28,
                 pool="cls", drop_path=0.0)   # patch 7 from the variant; width, heads, depth overridden
  c.aug.update(global_scale=(0.5, 1.0), jitter_p=1.0, gray_p=0.0,
               jitter=(0.8, 0.8, 0.0, 0.0),   # brightness, contrast (saturation, hue: no-ops on grayscale)
               solarize_p=(0.2, 0.2))
  c.batch_size = 64               # budget choice: 4x the updates of batch 256 for the same images
  c.optim.update(lr=6e-3, warmup_epochs=0.5)   # x batch/256 = 1.5e-3; DINO's AdamW value is 5e-4
  if c.optim.frozen:              # the prototypes' last layer (DINO, iBOT-style)
    c.optim.freeze_epochs = 0.2
  c.ema.base = 0.97               # budget choice (paper 0.996)
  c.eval.pixels_baseline = True
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  return c

def validate(config: ml_collections.ConfigDict, *, num_devices: int) -> dict:
  """Checks values that would otherwise fail late or silently; returns dataset info."""
  try:
    importlib.import_module(f"jssl.methods.{config.method}")
  except ModuleNotFoundError:
    raise ValueError(f"method={config.method!r} is not a jssl method (no module jssl.methods.{config.method}).") from None
  try:
    importlib.import_module(f"jssl.models.{config.model.name}")
  except ModuleNotFoundError:
    raise ValueError(f"model.name={config.model.name!r} is not a jssl model (no module jssl.models.{config.model.name}).") from None
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise ValueError(f"batch_size={config.batch_size} must be a positive multiple of the {num_devices} devices.")
  if config.optim.name not in ("lars", "adamw", "sgd"):
    raise ValueError(f"optim.name={config.optim.name!r} must be one of lars, adamw, sgd.")
  if config.model.dtype not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype={config.model.dtype!r} must be float32 or bfloat16.")
  if config.eval.network not in ("student", "teacher"):
    raise ValueError(f"eval.network={config.eval.network!r} must be student or teacher.")
  if config.on_nonfinite not in guard.MODES:
    raise ValueError(f"on_nonfinite={config.on_nonfinite!r} must be one of {', '.join(guard.MODES)}.")
  fsdp.validate(config, num_devices=num_devices)
  _check_numbers(config)
  info = sources.dataset_info(config.data)
  multicrop.validate(config.aug, tuple(info["image_shape"]))
  method = importlib.import_module(f"jssl.methods.{config.method}")
  if hasattr(method, "validate_data"):   # a method whose networks depend on the data (a classifier's width)
    method.validate_data(config, info)
  total = total_steps(config, info["num_train"])
  if total <= 0:
    raise ValueError("total_steps and num_epochs give no training steps; set one of them > 0.")
  _check_saves(config, total)
  return info


def checkpoint_steps(config) -> list[int]:
  """The extra steps of `config.checkpoint_steps`, sorted; one sentence for a bad entry."""
  text = str(config.get("checkpoint_steps", "") or "")
  try:
    steps = sorted({int(s) for s in text.split(",") if s.strip()})
  except ValueError:
    steps = [-1]
  if steps and steps[0] < 0:
    raise ValueError(f"checkpoint_steps={text!r} must be comma-separated steps >= 0, e.g. '0,10,100'.")
  return steps


def _check_saves(config, total: int) -> None:
  """With checkpoint_steps, keep_checkpoints must keep every checkpoint the run saves."""
  extra = [s for s in checkpoint_steps(config) if s <= total]
  if not extra:
    return
  saves = set(extra) | set(range(config.checkpoint_every_steps, total + 1, config.checkpoint_every_steps)) | {total}
  if config.keep_checkpoints < len(saves):
    raise ValueError(f"keep_checkpoints={config.keep_checkpoints} would delete some of checkpoint_steps: the run "
                     f"saves {len(saves)} checkpoints; set keep_checkpoints >= {len(saves)}.")


def _check_numbers(config) -> None:
  for field, low, low_ok, high in _NUMBERS:
    section, _, name = field.rpartition(".")
    value = (config[section] if section else config)[name]
    bad = not math.isfinite(value) or value < low or (value == low and not low_ok) or (high is not None and value > high)
    if bad:
      above = f"{'>=' if low_ok else '>'} {low:g}" + (f" and <= {high:g}" if high is not None else "")
      raise ValueError(f"{field}={value!r} must be a finite number {above}.")


def steps_per_epoch(config, num_train: int) -> int:
  return max(1, num_train // config.batch_size)


def total_steps(config, num_train: int) -> int:
  if config.total_steps > 0:
    return int(config.total_steps)
  return int(config.num_epochs * steps_per_epoch(config, num_train))
