"""The evaluation program: k-NN, linear probes, paper-001 ensembling and plots of frozen features.

  python -m jssl.evaluate --config=configs/eval/knn.py:runs/quickstart --workdir=runs/quickstart_eval
  python -m jssl.evaluate --config=configs/eval/ensemble.py:runs/a,runs/b,runs/c --workdir=runs/ens \
      [--config.layer=pre_logits --config.data.max_train_examples=10000 ...]

Writes results.json and results.md (one row per number, with its protocol) in --workdir.
Features are cached under each checkpoint (or --config.cache_dir) and reused by later runs.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jssl import logs
from jssl.evaluators.program import run  # also the entry point for scripts

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config in configs/eval/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json, results.md and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logs.configure()
  try:
    rows = run(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("JSSL_TRACEBACK"):
      raise
    sys.exit(f"error: {e}")
  for r in rows:
    print(f"{r['evaluation']:9s} {r['metric']:24s} {r['value']:.4f}  {r['protocol'].get('checkpoint')}")
  print(f"Wrote {os.path.join(_WORKDIR.value, 'results.md')}", flush=True)


if __name__ == "__main__":
  app.run(main)
