"""Run any recipe in configs/ for real, shrunk: one helper for every config file.

`shrink` overrides sizes only: network depth and width (ResNets: narrow, one
block per stage), head widths, memory banks, batch, image and crop sides,
steps. The method, the backbone (name,
patch size, block type, number of stages), the dtype, the number of crops and
every switch that picks a code path stay as the recipe sets them, so a step
here runs the recipe's own code. `train_steps` then runs the jitted trainer
step on random uint8 images; `evaluate_recipe` runs an evaluation recipe of
configs/eval/ on a finished run.
"""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from jssl import state as state_lib
from jssl import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
EVAL_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "eval", "*.py")))

BATCH = 8
# XLA's CPU backend spends most of a step's compile time optimising; these
# steps run once, so compiling without optimisation halves the test time.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_HEADS = {   # method -> head widths that replace the recipe's
    "byol": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
    "simclr": dict(proj_hidden=32, proj_dim=16),
    "mocov3": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
    "dino": dict(out_dim=64, hidden_dim=32, bottleneck_dim=16),
    "ibot": dict(out_dim=64, patch_out_dim=64, hidden_dim=32, bottleneck_dim=16),
    "sove": dict(hidden_dim=32, out_dim=16, cls_bank_size=4 * BATCH, patch_bank_size=4 * BATCH, num_anchors=8,
                 num_patch_anchors=8, topk_block_size=16),
    # CO-SSL methods: their local heads; the base method's block (config.byol, ...) shrinks by its own entry.
    "co_byol": dict(local_proj_hidden=32, local_pred_hidden=32),
    "co_mocov3": dict(local_proj_hidden=32, local_pred_hidden=32),
    "vicreg": dict(expander_hidden=32, expander_dim=16),
}


def load(path, arg=None):
  """The ConfigDict of a config file (`arg` as after `path:` on the command line)."""
  return config_flags.config_flags._ConfigFileParser(name="config").parse(path if arg is None else f"{path}:{arg}")


def _sides(config) -> tuple[int, int]:
  """(global, local) crop sides: the recipe's when already small, else a few tokens per view."""
  aug, model = config.aug, config.model
  if aug.global_size <= 32:
    return aug.global_size, aug.local_size
  if model.name == "vit":
    p = int(model.variant.split("/")[1])
    return 2 * p, p if aug.local_size else 0
  if model.name == "swin":
    return 64, 32 if aug.local_size else 0
  return 32, 16 if aug.local_size else 0


def shrink(config):
  """A copy of `config` with tiny sizes and the same method, backbone and code paths."""
  c = config.copy_and_resolve_references()
  c.unlock()
  for method, widths in _HEADS.items():   # the method's block and, for CO-SSL, its base method's block
    if method not in c:
      continue
    for key, value in widths.items():
      if key in c[method]:
        c[method][key] = min(value, c[method][key]) if key.startswith("num_") else value
  if c.method == "sove":
    c.sove.num_neighbors = min(c.sove.num_neighbors, 2)
    c.sove.patch_neighbors = min(c.sove.patch_neighbors, 2)
  m = c.model
  if m.name == "vit":
    m.depth, m.width, m.num_heads = 1, 32, 2
  elif m.name == "swin":
    # Two blocks in stage 1 keep a shifted-window block; window 4 on the 16 x 16
    # first stage keeps padding and shifting as the full-size recipe has them.
    m.embed_dim, m.depths, m.num_heads, m.window_size = 8, (2, 1, 1, 1), (1, 1, 2, 2), 4
  elif m.name == "treenet":   # its DINO head shrinks by the "dino" entry of _HEADS
    m.num_leaves, m.join_hidden_dim, m.join_dim = min(m.num_leaves, 2), 32, 16
  elif m.name == "res_lh":
    m.depth, m.width = min(m.depth, 2), min(m.width, 8)
  elif m.name == "resnet":   # block kind and stem stay; one narrow block per stage
    m.stage_sizes, m.widths = (1, 1, 1, 1), (8, 8, 16, 16)
  elif m.name == "rf_resnet":
    # Three blocks in stage 1 keep a 1x1-only block (blocks 0 and 1 keep their 3x3);
    # stem, strides, max-pool, extra block and MLP stay as the recipe sets them.
    m.stage_sizes, m.widths = (3, 1, 1, 1), (8, 8, 16, 16)
  global_size, local_size = _sides(c)
  if global_size != c.aug.global_size:
    c.aug.global_size, c.aug.local_size = global_size, local_size
    c.aug.eval_resize = global_size
    c.data.image_size = global_size
    if "image_size" in m:
      m.image_size = global_size
  c.batch_size = BATCH
  c.total_steps = 2
  return c


def image_shape(config) -> tuple[int, int, int]:
  side = config.data.image_size or config.aug.global_size
  return side, side, len(config.aug.mean)


def train_steps(config, num_steps: int = 2):
  """Runs `num_steps` jitted train steps of `config` on random images: (first state, last state, metrics)."""
  shape = image_shape(config)
  setup, init_fn = state_lib.build(config, in_channels=shape[-1], num_classes=10, total_steps=config.total_steps,
                                   steps_per_epoch=1)
  key = jax.random.PRNGKey(config.seed)
  state = jax.jit(init_fn).lower(key).compile(_FAST_COMPILE)(key)
  first = jax.device_get(state)
  rng = np.random.default_rng(0)
  step, history = None, []
  for _ in range(num_steps):
    batch = {"image": jnp.asarray(rng.integers(0, 256, (config.batch_size,) + shape, dtype=np.uint8)),
             "label": jnp.asarray(rng.integers(0, 10, config.batch_size, dtype=np.int32))}
    if step is None:
      step = jax.jit(train.make_train_step(config, setup)).lower(state, batch).compile(_FAST_COMPILE)
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return first, jax.device_get(state), history


def shrink_eval(config):
  """An evaluation recipe on a few hundred examples, with short fits."""
  c = config.copy_and_resolve_references()
  c.unlock()
  c.data.max_train_examples, c.data.max_test_examples, c.batch_size = 200, 100, 100
  c.knn.ks = tuple(k for k in c.knn.ks if k <= 20) or (20,)
  c.linear.lrs, c.linear.wds, c.linear.epochs, c.linear.batch_size = (1e-2,), (0.0,), 2, 64
  c.ensemble.epochs, c.ensemble.batch_size = 2, 64
  return c


def train_tiny_run(workdir: str, config) -> str:
  """Trains `config` to its end in `workdir` (a finished run for evaluation tests); returns workdir."""
  trainer = train.Trainer(config, workdir, verbose=False).prepare()
  try:
    trainer.run()
  finally:
    trainer.checkpointer.close()
  return workdir
