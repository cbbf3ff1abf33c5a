"""Train-step throughput of a config: images/s after compilation, real input pipeline.

  python benchmarks/train_throughput.py --config=configs/quickstart.py --steps=30
  python benchmarks/train_throughput.py --config=configs/dino_vit_tiny_fmnist.py --config.batch_size=64

Times `--steps` steps after `--warmup` steps (compilation), blocking on the
result, with batches from the config's own grain pipeline (pass
--config.data.source=synthetic to take the input pipeline out of the picture).
Prints one line: config, device, batch, ms/step, images/s.
"""
import os
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from jssl import logs   # defines --library_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (compilation).")


def main(argv):
  del argv
  logs.configure()   # library INFO logs (orbax) off the terminal; --library_logs shows them
  import jax
  from jssl import train
  from jssl.data import pipeline
  config = _CONFIG.value
  with tempfile.TemporaryDirectory() as workdir:
    trainer = train.Trainer(config, workdir, verbose=False).prepare()
    state = trainer.state
    for i in range(_WARMUP.value + _STEPS.value):
      if i == _WARMUP.value:
        jax.block_until_ready(state)
        t0 = time.perf_counter()
      state, metrics = trainer.step_fn(state, pipeline.to_global(next(trainer.data), trainer.batch_sharding))
    jax.block_until_ready((state, metrics))
    dt = (time.perf_counter() - t0) / _STEPS.value
    trainer.checkpointer.close()
  device = jax.devices()[0].device_kind
  name = os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"]))
  print(f"{name} "
        f"device={device} x{jax.device_count()} batch={config.batch_size} "
        f"step={dt * 1e3:.1f} ms images/s={config.batch_size / dt:.1f}")


if __name__ == "__main__":
  app.run(main)
