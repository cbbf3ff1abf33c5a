"""SOVE step throughput and the share of the step spent in judge selection and bank updates.

  python benchmarks/sove_step.py --config=configs/sove_vits16.py --config.batch_size=16 --steps=3
  python benchmarks/sove_step.py --config=configs/sove_vitb.py --config.batch_size=64 --steps=10   # on a GPU

Inputs are synthetic images of the config's size (the input pipeline is not what is
measured here). Judge selection ([CLS] and patch tasks) and the two FIFO bank writes are
timed as separate jitted programs on banks of the configured size and compared with the
whole train step; MFU is printed when --peak_tflops is given (e.g. 989 for an H100's
dense bf16) from XLA's own FLOP count of the compiled step.
"""
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from jssl import logs   # defines --library_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "A SOVE config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Device peak TFLOP/s for MFU (0: not printed).")


def _time(fn, *args, repeats):
  import jax
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats


def main(argv):
  del argv
  logs.configure()   # library INFO logs (orbax) off the terminal; --library_logs shows them
  import jax
  import jax.numpy as jnp
  from jssl import train
  from jssl.components import memory_bank
  from jssl.data import pipeline
  from jssl.losses import sove as sove_loss

  config = _CONFIG.value
  side = config.aug.global_size
  config.data.source = "synthetic"
  config.data.synthetic_shape = (side, side, len(config.aug.mean))
  config.data.synthetic_examples = max(4 * config.batch_size, 64)
  config.data.image_size = None
  c = config.sove
  with tempfile.TemporaryDirectory() as workdir:
    trainer = train.Trainer(config, workdir, verbose=False).prepare()
    state, step_fn = trainer.state, trainer.step_fn
    batches = [pipeline.to_global(next(trainer.data), trainer.batch_sharding) for _ in range(2)]
    compiled = step_fn.lower(state, batches[0]).compile()
    flops = (compiled.cost_analysis() or {}).get("flops", 0.0)
    state, _ = step_fn(state, batches[0])
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for i in range(_STEPS.value):
      state, metrics = step_fn(state, batches[i % 2])
    jax.block_until_ready((state, metrics))
    t_step = (time.perf_counter() - t0) / _STEPS.value
    trainer.checkpointer.close()

  cls_bank = state["method_state"]["cls_bank"]
  patch_bank = state["method_state"]["patch_bank"]
  key = jax.random.PRNGKey(0)
  judges = jax.jit(lambda k, b: sove_loss.select_judges(k, b, c.num_anchors, c.num_neighbors))
  patch_judges = jax.jit(lambda k, b: sove_loss.select_judges(k, b, c.num_patch_anchors, c.patch_neighbors))
  t_cls = _time(judges, key, cls_bank["bank"], repeats=3) * c.num_tasks
  t_patch = _time(patch_judges, key, patch_bank["bank"], repeats=3)
  new = jnp.ones((config.batch_size, cls_bank["bank"].shape[1]), jnp.float32)
  update = jax.jit(lambda s, v: memory_bank.update(s, v))
  t_bank = _time(update, cls_bank, new, repeats=3) + _time(update, patch_bank, new, repeats=3)
  share = (t_cls + t_patch + t_bank) / t_step
  device = jax.devices()[0].device_kind
  print(f"{config.model.variant} SOVE on {device} x{jax.device_count()}: batch {config.batch_size}, "
        f"step {t_step * 1e3:.0f} ms, {config.batch_size / t_step:.1f} images/s; judge selection "
        f"{(t_cls + t_patch) * 1e3:.1f} ms (K={c.num_anchors}, k={c.num_neighbors}, bank "
        f"{cls_bank['bank'].shape[0]}), bank writes {t_bank * 1e3:.2f} ms: {100 * share:.1f}% of the step")
  if _PEAK.value > 0 and flops:
    print(f"MFU {100 * flops / t_step / (_PEAK.value * 1e12 * jax.device_count()):.1f}% "
          f"({flops / 1e9:.0f} GFLOP per step by XLA's count)")


if __name__ == "__main__":
  app.run(main)
