"""What the terminal shows: jssl's own lines, the progress bar and warnings.

Orbax, JAX and the other libraries log at INFO through absl and Python
logging; a quickstart run prints hundreds of such lines (checkpoint
bookkeeping, async-save threads) around a handful of results. `configure`,
called by the entry points once the flags are parsed, raises those loggers to
WARNING. `--library_logs`, an explicit `--verbosity` or JSSL_LIBRARY_LOGS=1 keeps
them at INFO. jssl's own
lines are printed, not logged, so they are never hidden; warnings and errors of
every library still show.
"""
import logging
import os

from absl import flags
from absl import logging as absl_logging

ENV = "JSSL_LIBRARY_LOGS"
_LIBRARY_LOGS = flags.DEFINE_bool("library_logs", False, "Show the INFO logs of orbax, absl, JAX and other "
                                  f"libraries (also {ENV}=1); hidden by default.")
# Python loggers besides absl's that log at INFO during a run.
LOGGERS = ("absl", "orbax", "jax", "etils", "tensorflow", "grain")


def wanted() -> bool:
  """Whether library INFO logs were asked for: --library_logs, an explicit absl
  --verbosity / -v, or the environment variable."""
  parsed = flags.FLAGS.is_parsed()
  flag = parsed and (_LIBRARY_LOGS.value or flags.FLAGS["verbosity"].present)
  return bool(flag) or os.environ.get(ENV, "").lower() not in ("", "0", "false", "no")


def configure(show: bool | None = None) -> None:
  """Hides library INFO logs unless `show` (default: `wanted()`) is true."""
  if wanted() if show is None else show:
    return
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)
