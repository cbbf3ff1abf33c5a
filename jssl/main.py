"""Pretraining entry point.

  python -m jssl.main --config=configs/quickstart.py --workdir=runs/quickstart \
      [--config.batch_size=128 --config.optim.lr=0.3 ...]

The config is locked, so a misspelt override fails instead of being ignored.
Rerunning the same command resumes from the newest checkpoint in --workdir.
"""
import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host: TPU pods, SLURM, "
    "or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set by the launcher).")
_ALLOW_CHANGES = flags.DEFINE_bool(
    "allow_config_changes", False, "Resume even when the config changes fields that alter the run "
    "(seed, batch size, method, model, optimiser, augmentation, data); the changes are listed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import jax
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  from jssl import guard, train  # imported after flags so jax sees XLA_FLAGS from the environment
  config = _CONFIG.value
  trainer = train.Trainer(config, _WORKDIR.value, allow_config_changes=_ALLOW_CHANGES.value)
  try:
    trainer.prepare()
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("JSSL_TRACEBACK"):
      raise
    sys.exit(f"error: {e}")
  try:
    summary = trainer.run()
  except guard.NonFiniteError as e:
    if os.environ.get("JSSL_TRACEBACK"):
      raise
    sys.exit(f"error: {e}")
  except train.Preempted as e:
    sys.exit(e.exit_code)   # the trainer has said where it stopped
  finally:
    trainer.checkpointer.close()
  with open(os.path.join(_WORKDIR.value, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  knn = {k: v for k, v in summary.items() if "knn" in k}
  print("Results: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(knn.items())), flush=True)


if __name__ == "__main__":
  app.run(main)
