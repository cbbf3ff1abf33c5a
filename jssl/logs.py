"""What the terminal shows: jssl's own lines, progress bars and warnings, each once.

Orbax, JAX and the other libraries log at INFO through absl and Python
logging; a quickstart run logs hundreds of such lines (checkpoint
bookkeeping, async-save threads) around a handful of results. `configure`,
called by the entry points once the flags are parsed, keeps them off the
terminal: absl's terminal handler shows WARNING and above. With a `log_file`
(the entry points pass <workdir>/log.txt) every INFO record of every library,
and jssl's own lines, also go to that file.

jssl's own lines are printed (stdout) and logged to the "jssl" logger; the
terminal handler drops that logger's records, so each line shows once.
`--library_logs`, an explicit `--verbosity` or JSSL_LIBRARY_LOGS=1 shows the
library INFO logs on the terminal too; warnings and errors always show.
"""
import logging
import os

from absl import flags
from absl import logging as absl_logging

ENV = "JSSL_LIBRARY_LOGS"
_LIBRARY_LOGS = flags.DEFINE_bool("library_logs", False, "Show the INFO logs of orbax, absl, JAX and other "
                                  f"libraries (also {ENV}=1); hidden by default and kept in <workdir>/log.txt.")
# Python loggers besides absl's that log at INFO during a run.
LOGGERS = ("absl", "orbax", "jax", "etils", "tensorflow", "grain")
LOG_FILE = "log.txt"
logger = logging.getLogger("jssl")   # jssl's own lines, also printed


def wanted() -> bool:
  """Whether library INFO logs were asked for: --library_logs, an explicit absl
  --verbosity / -v, or the environment variable."""
  parsed = flags.FLAGS.is_parsed()
  flag = parsed and (_LIBRARY_LOGS.value or flags.FLAGS["verbosity"].present)
  return bool(flag) or os.environ.get(ENV, "").lower() not in ("", "0", "false", "no")


# Library warnings about what jssl asked for on purpose (opening a checkpoint read-only).
EXPECTED = ("Given directory is read only",)


def _not_printed(record: logging.LogRecord) -> bool:
  """False for jssl's own INFO lines, which are printed already, and for EXPECTED warnings
  (kept in the log file)."""
  if record.name.startswith("jssl") and record.levelno < logging.WARNING:
    return False
  return not (record.levelno < logging.ERROR and str(record.msg).startswith(EXPECTED))


def configure(show: bool | None = None, log_file: str | None = None) -> None:
  """Keeps library INFO logs off the terminal unless `show` (default: `wanted()`);
  with `log_file`, writes every INFO record there (appending)."""
  show = wanted() if show is None else show
  terminal = absl_logging.get_absl_handler()
  if _not_printed not in terminal.filters:
    terminal.addFilter(_not_printed)
  if log_file:
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s] %(message)s"))
    logging.root.addHandler(handler)
    if not flags.FLAGS.is_parsed() or not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.INFO)   # INFO records reach the file
    logging.root.setLevel(min(logging.root.level, logging.INFO))
    for name in LOGGERS + ("jssl",):
      logging.getLogger(name).setLevel(logging.NOTSET)
  if not show:
    terminal.setLevel(logging.WARNING)
    if not log_file:   # nothing wants the INFO records: do not make them
      absl_logging.set_verbosity(absl_logging.WARNING)
      for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
