"""Pretraining entry point.

  python -m jssl.main --config=configs/quickstart.py --workdir=runs/quickstart \
      [--config.batch_size=128 --config.optim.lr=0.3 ...]
  python -m jssl.main --config=configs/quickstart.py --help       # every config field
  python -m jssl.main --config=configs/quickstart.py --workdir=runs/q --dry_run

Several processes train one run with --distributed (SLURM, Cloud TPU pods) or
--coordinator_address=HOST:PORT --num_processes=N --process_id=I on each; launch/
starts them (launch/local.sh: N CPU processes on this machine). Process 0 prints and
writes the logs, metrics and summary; the others log to <workdir>/log.process<I>.txt.

The config is locked, so a misspelt override fails instead of being ignored.
Rerunning the same command resumes from the newest checkpoint in --workdir; a
finished run says where its results are and changes nothing (--reevaluate runs
its final k-NN again). Library logs go to <workdir>/log.txt.

Bad input ends in one line on stderr: exit code 2 for the command line (flags,
overrides, the config file), 1 for a config or checkpoint the run refuses and
for a non-finite step; --verbose (or JSSL_TRACEBACK=1) shows the traceback.
A run stopped by SIGTERM or SIGINT saves and exits with 128 + the signal.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jssl import cli, logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run (jax.distributed.initialize) before training. SLURM and "
    "Cloud TPU pods describe the processes themselves; elsewhere give --coordinator_address, --num_processes "
    "and --process_id (or $JSSL_COORDINATOR_ADDRESS, $JSSL_NUM_PROCESSES, $JSSL_PROCESS_ID). Any of the three "
    "implies --distributed.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port where process 0 serves the other "
                                   "processes (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 to --num_processes - 1; process 0 "
                                   "writes the logs, metrics and summary.", lower_bound=0)
_ALLOW_CHANGES = flags.DEFINE_bool(
    "allow_config_changes", False, "Resume even when the config changes fields that alter the run "
    "(seed, batch size, method, model, optimiser, augmentation, data); the changes are listed.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the resolved config, the model's parameter count, the steps "
                             "and the data the run would read, then exit without training.")
_REEVALUATE = flags.DEFINE_bool("reevaluate", False, "For a finished run: run its final k-NN again and rewrite "
                                "summary.json (otherwise a finished run changes nothing).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks for bad input, and library INFO logs.")
flags.mark_flags_as_required(["config", "workdir"])


def _distributed_env() -> bool:
  """Whether the flags or the environment name the processes of a multi-process run."""
  from jssl import sharding
  given = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  return any(v is not None for v in given) or any(
      os.environ.get(v) for v in (sharding.COORDINATOR_ENV, sharding.NUM_PROCESSES_ENV, sharding.PROCESS_ID_ENV))


def _refused(e: Exception):
  if cli.traceback_wanted():
    raise e
  cli.fail(str(e))


def main(argv):
  del argv
  workdir = _WORKDIR.value
  config = cli.load_config(_CONFIG)
  if _DRY_RUN.value:
    logs.configure(show=True if _VERBOSE.value else None)
    from jssl import train
    try:
      print(train.dry_run(config))
    except (ValueError, FileNotFoundError) as e:
      _refused(e)
    return
  import jax
  logs.configure(show=True if _VERBOSE.value else None)   # quiet from the first backend call (process_index)
  from jssl import sharding
  if _DISTRIBUTED.value or _distributed_env():
    try:
      sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except (ValueError, TypeError) as e:   # processes not described, or described inconsistently
      _refused(ValueError(f"--distributed: {str(e).rstrip('.')}; give --coordinator_address, --num_processes "
                          f"and --process_id, or run under SLURM or on a Cloud TPU VM."))
  process = jax.process_index()
  # Process 0 writes <workdir>/log.txt (and every file but the checkpoints' own); the others their own log.
  logs.configure(show=True if _VERBOSE.value else None,
                 log_file=os.path.join(workdir, logs.LOG_FILE if process == 0 else f"log.process{process}.txt"))
  from jssl import guard, train, writers  # imported after flags so jax sees XLA_FLAGS from the environment
  trainer = train.Trainer(config, workdir, allow_config_changes=_ALLOW_CHANGES.value)
  try:
    trainer.prepare()
  except (ValueError, FileNotFoundError) as e:
    _refused(e)
  summary_path = os.path.join(workdir, "summary.json")
  try:
    if trainer.finished() and os.path.exists(summary_path) and not _REEVALUATE.value:
      if process == 0:
        print(f"This run finished at step {trainer.total_steps}; its results are in {summary_path} and "
              f"{os.path.join(workdir, 'metrics.jsonl')}. Nothing was changed: pass --reevaluate to run its "
              f"final k-NN again, or evaluate it with python -m jssl.evaluate "
              f"--config=configs/eval/knn.py:{workdir} --workdir={workdir}_eval.", flush=True)
      return
    summary = trainer.run()
  except guard.NonFiniteError as e:
    _refused(e)
  except train.Preempted as e:
    sys.exit(e.exit_code)   # the trainer has said where it stopped
  finally:
    trainer.checkpointer.close()
  if process != 0:
    return
  writers.write_summary(workdir, summary)
  knn = {k: v for k, v in summary.items() if "knn" in k}
  print("Results: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(knn.items())) + f" (in {summary_path})",
        flush=True)


# A Ctrl-C outside the training loop (loading, evaluation) ends in one line.
_interrupted = cli.interruptible(
  main, "interrupted (Ctrl-C); rerun the same command to resume from the newest checkpoint.")


if __name__ == "__main__":
  app.run(_interrupted, flags_parser=lambda argv: cli.parse_flags(argv, __doc__))
