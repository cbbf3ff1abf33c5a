"""What both programs (jssl.main, jssl.evaluate) share on the command line.

Bad input is one sentence on stderr, never a traceback: exit code 2 for the
command line (flags, overrides, the config file), 1 for input the run refuses,
130 for Ctrl-C. `--help` prints the program's usage, its flags and, given
`--config=...`, every field of that config with its value, then exits 0.
--verbose or JSSL_TRACEBACK=1 shows the tracebacks instead.
"""
import importlib.util
import os
import re
import sys

from absl import flags
from ml_collections import config_dict

HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def traceback_wanted() -> bool:
  verbose = flags.FLAGS.is_parsed() and "verbose" in flags.FLAGS and flags.FLAGS.verbose
  return bool(verbose or os.environ.get("JSSL_TRACEBACK"))


def fail(message: str, code: int = 1):
  """Ends the program with `error: message` on stderr."""
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


def interruptible(main, message: str):
  """`main` for absl's app.run, with a Ctrl-C outside a training loop ending in one line."""
  def run(argv):
    try:
      main(argv)
    except KeyboardInterrupt:
      if traceback_wanted():
        raise
      fail(message, 130)
  return run


def flag_error(e: Exception, argv: list[str]) -> str:
  """One sentence for an exception raised while parsing the command line or loading the config."""
  if isinstance(e, (AttributeError, KeyError)):   # a config field that does not exist
    text = str(e)
    wrong = re.search(r"'(\w+)", text)
    wrong = wrong.group(1) if wrong else "?"
    arg = next((a for a in argv if a.startswith("--config.") and re.search(rf"\.{wrong}(=|$)", a)), f"--config...{wrong}")
    guess = re.search(r'Did you mean "(\w+)"', text)
    name = arg.split("=", 1)[0]
    hint = f"; did you mean {name[:-len(wrong)]}{guess.group(1)}?" if guess else "."
    return f"{name} names no field of the config{hint}"
  if "config file" in str(e) or isinstance(e, OSError):
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
    return f"could not load the config file {path} ({str(e).strip().splitlines()[-1].strip()})."
  lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
  message = " ".join(lines) or type(e).__name__
  return message if message.endswith((".", "?")) else message + "."


def config_fields(config, prefix: str = "--config.") -> list[str]:
  """`--config.a.b=value` for every leaf of a ConfigDict, in its order."""
  lines = []
  for key, value in config.items():
    if isinstance(value, config_dict.ConfigDict):
      lines += config_fields(value, f"{prefix}{key}.")
    else:
      lines.append(f"  {prefix}{key}={value!r}")
  return lines


def _load_config(spec: str):
  """The ConfigDict of `path[:arg]`, as --config loads it."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("jssl_config_for_help", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _help(argv: list[str], doc: str) -> None:
  print(doc.strip() + "\n")
  print(flags.FLAGS.main_module_help().strip())
  print(flags.FLAGS.module_help("jssl.logs").strip())
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    print("\nAdd --config=<file> to --help to list that config's fields.")
    return
  try:
    config = _load_config(spec)
  except Exception as e:  # the config file's own errors can be of any type
    fail(flag_error(e, argv), 2)
  print(f"\nFields of {spec} (override any with --config.<field>=<value>):")
  print("\n".join(config_fields(config)))


def parse_flags(argv: list[str], doc: str) -> list[str]:
  """absl's flags_parser with --help exiting 0 and every error one line (exit code 2)."""
  if any(a in HELP for a in argv[1:]):
    _help(argv, doc)
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # flags, config files and overrides raise many types
    if "--verbose" in argv or os.environ.get("JSSL_TRACEBACK"):
      raise
    fail(flag_error(e, argv), 2)


def load_config(config_flag):
  """The parsed config; a config file that fails to load ends the program in one line."""
  try:
    config = config_flag.value
    _ = config.keys()   # a config file that failed to load reports it on first use
    return config
  except Exception as e:  # the config file's own errors can be of any type
    if traceback_wanted():
      raise
    fail(flag_error(e, sys.argv), 2)
