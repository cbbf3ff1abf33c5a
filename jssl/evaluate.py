"""The evaluation program: k-NN, linear probes, paper-001 ensembling and plots of frozen features.

  python -m jssl.evaluate --config=configs/eval/knn.py:runs/quickstart --workdir=runs/quickstart_eval
  python -m jssl.evaluate --config=configs/eval/ensemble.py:runs/a,runs/b,runs/c --workdir=runs/ens \
      [--config.layer=pre_logits --config.data.max_train_examples=10000 ...]
  python -m jssl.evaluate --config=configs/eval/knn.py --help     # every config field

Writes results.json and results.md (one row per number, with its protocol, and
links to the plots) in --workdir; library logs go to <workdir>/log.txt.
Features are cached under each checkpoint (or --config.cache_dir) and reused by later runs.
Bad input ends in one line on stderr (exit code 2 for the command line, 1 for
a run or checkpoint it refuses); JSSL_TRACEBACK=1 shows the traceback.
"""
import os

from absl import app, flags
from ml_collections import config_flags

from jssl import cli, logs
from jssl.evaluators.program import run  # also the entry point for scripts

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config in configs/eval/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json, results.md and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config = cli.load_config(_CONFIG)
  logs.configure(log_file=os.path.join(_WORKDIR.value, logs.LOG_FILE))
  try:
    rows = run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    if cli.traceback_wanted():
      raise
    cli.fail(str(e))
  except KeyboardInterrupt:
    if cli.traceback_wanted():
      raise
    cli.fail("interrupted (Ctrl-C); cached features are kept, rerun the same command to go on.", 130)
  for r in rows:
    print(f"{r['evaluation']:9s} {r['metric']:24s} {r['value']:.4f}  {r['protocol'].get('checkpoint')}")
  print(f"Wrote {os.path.join(_WORKDIR.value, 'results.md')}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, __doc__))
