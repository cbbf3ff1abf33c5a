"""Pretraining entry point.

  python -m jssl.main --config=configs/quickstart.py --workdir=runs/quickstart \
      [--config.batch_size=128 --config.optim.lr=0.3 ...]

The config is locked, so a misspelt override fails instead of being ignored.
Rerunning the same command resumes from the newest checkpoint in --workdir.

Bad input ends in one line on stderr: exit code 2 for the command line (flags,
overrides, the config file), 1 for a config or checkpoint the run refuses and
for a non-finite step; --verbose (or JSSL_TRACEBACK=1) shows the traceback.
A run stopped by SIGTERM or SIGINT saves and exits with 128 + the signal.
"""
import json
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from jssl import logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host: TPU pods, SLURM, "
    "or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set by the launcher).")
_ALLOW_CHANGES = flags.DEFINE_bool(
    "allow_config_changes", False, "Resume even when the config changes fields that alter the run "
    "(seed, batch size, method, model, optimiser, augmentation, data); the changes are listed.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks for bad input, and library INFO logs.")
flags.mark_flags_as_required(["config", "workdir"])


def _flag_error(e: Exception, argv: list[str]) -> str:
  """One sentence for an exception raised while parsing the command line."""
  if isinstance(e, (AttributeError, KeyError)):   # a config field that does not exist
    text = str(e)
    wrong = re.search(r"'(\w+)", text)
    wrong = wrong.group(1) if wrong else "?"
    arg = next((a for a in argv if a.startswith("--config.") and re.search(rf"\.{wrong}(=|$)", a)), f"--config...{wrong}")
    guess = re.search(r'Did you mean "(\w+)"', text)
    name = arg.split("=", 1)[0]
    hint = f"; did you mean {name[:-len(wrong)]}{guess.group(1)}?" if guess else "."
    return f"{name} names no field of the config{hint}"
  if "config file" in str(e):
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
    return f"could not load the config file {path} ({str(e).strip().splitlines()[-1].strip()})."
  lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
  message = " ".join(lines) or type(e).__name__
  return message if message.endswith((".", "?")) else message + "."


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # flags, config files and overrides raise many types
    if "--verbose" in argv or os.environ.get("JSSL_TRACEBACK"):
      raise
    sys.stderr.write(f"error: {_flag_error(e, argv)}\n")
    sys.exit(2)


def _traceback_wanted() -> bool:
  return _VERBOSE.value or bool(os.environ.get("JSSL_TRACEBACK"))


def main(argv):
  del argv
  logs.configure(show=True if _VERBOSE.value else None)   # library INFO logs only when asked for
  import jax
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  from jssl import guard, train  # imported after flags so jax sees XLA_FLAGS from the environment
  try:
    config = _CONFIG.value
    _ = config.method   # a config file that failed to load reports it on first use
  except Exception as e:  # the config file's own errors can be of any type
    if _traceback_wanted():
      raise
    sys.stderr.write(f"error: {_flag_error(e, sys.argv)}\n")
    sys.exit(2)
  trainer = train.Trainer(config, _WORKDIR.value, allow_config_changes=_ALLOW_CHANGES.value)
  try:
    trainer.prepare()
  except (ValueError, FileNotFoundError) as e:
    if _traceback_wanted():
      raise
    sys.exit(f"error: {e}")
  try:
    summary = trainer.run()
  except guard.NonFiniteError as e:
    if _traceback_wanted():
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
  app.run(main, flags_parser=_parse_flags)
