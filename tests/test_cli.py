"""Both programs driven as a user would: subprocesses on real Fashion-MNIST with a tiny budget.

Each line shows once; bad input and Ctrl-C end in one sentence, never a
traceback; --help exits 0 and lists the config's fields; a finished run rerun
changes nothing; the plots evaluation links its PNGs from results.md.
"""
import collections
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/quickstart.py", "--config.batch_size=16", "--config.total_steps=4",
        "--config.eval.train_examples=256", "--config.eval.test_examples=128", "--config.log_every_steps=2",
        "--config.checkpoint_every_steps=2"]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")   # one device, as a user's CPU run


def _run(program, *args, code=0, once=True):
  result = subprocess.run([sys.executable, "-m", f"jssl.{program}", *args], cwd=ROOT, env=ENV,
                          capture_output=True, timeout=600)
  # Bytes decoded by hand: text mode would turn a progress bar's \r redraws into separate lines.
  result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
  assert result.returncode == code, result.stdout[-2000:] + result.stderr[-3000:]
  if once:
    _shown_once(result.stdout + result.stderr)
  return result


def _screen(text: str) -> list[str]:
  """The lines a terminal ends up showing: a progress bar's redraws (\\r) leave their last state."""
  lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
  return [line for line in lines if line.strip()]


def _shown_once(text: str) -> None:
  twice = [line for line, n in collections.Counter(_screen(text)).items() if n > 1]
  assert not twice, f"printed more than once: {twice}"
  assert "Traceback" not in text, text[-3000:]


def _one_error_line(result, *needles):
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  assert all(n in lines[0] for n in needles), lines[0]


def test_help_exits_0_and_lists_the_config_fields():
  main = _run("main", "--config=configs/quickstart.py", "--help", once=False)   # flags repeat "(default: ...)"
  assert "--workdir" in main.stdout and "--dry_run" in main.stdout
  assert "\n  --config.total_steps=" in main.stdout and "\n  --config.optim.lr=" in main.stdout
  evaluate = _run("evaluate", "--help", once=False)
  assert "--workdir" in evaluate.stdout and "--config=<file>" in evaluate.stdout


@pytest.mark.parametrize("program", ["main", "evaluate"])
def test_bad_input_is_one_sentence(program, tmp_path):
  config = "configs/nonexistent.py" if program == "main" else "configs/eval/nonexistent.py"
  _one_error_line(_run(program, f"--config={config}", f"--workdir={tmp_path}", code=2), config)
  config = "configs/quickstart.py" if program == "main" else "configs/eval/knn.py"
  _one_error_line(_run(program, f"--config={config}", f"--workdir={tmp_path}", "--config.seeed=1", code=2),
                  "--config.seeed", "did you mean --config.seed?")
  assert not os.listdir(tmp_path)


def test_dry_run_describes_and_writes_nothing(tmp_path):
  out = _run("main", *TINY, f"--workdir={tmp_path / 'run'}", "--dry_run").stdout
  assert "--config.batch_size=16" in out and "M student parameters" in out
  assert "Steps: 4 (3750 per epoch" in out and "60000 images" in out
  assert not os.path.exists(tmp_path / "run")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  first = _run("main", *TINY, f"--workdir={workdir}")
  return workdir, first


@pytest.mark.slow
def test_finished_run_rerun_changes_nothing(finished):
  workdir, first = finished
  assert f"(in {workdir}/summary.json)" in first.stdout
  with open(os.path.join(workdir, "log.txt")) as f:
    assert "student parameters" in f.read()   # the log file holds jssl's lines and the libraries' logs
  files = ("summary.json", "metrics.jsonl")
  before = [open(os.path.join(workdir, name), "rb").read() for name in files]
  again = _run("main", *TINY, f"--workdir={workdir}")
  assert "This run finished at step 4" in again.stdout
  assert [open(os.path.join(workdir, name), "rb").read() for name in files] == before


@pytest.mark.slow
def test_plots_are_linked_from_results(finished, tmp_path):
  workdir, _ = finished
  out = _run("evaluate", f"--config=configs/eval/knn.py:{workdir}", f"--workdir={tmp_path}",
             "--config.evals=knn,plots", "--config.data.max_train_examples=256",
             "--config.data.max_test_examples=128", "--config.plots.max_points=128").stdout
  pngs = sorted(p for p in os.listdir(tmp_path) if p.endswith(".png"))
  assert pngs
  with open(tmp_path / "results.md") as f:
    report = f.read()
  for png in pngs:
    assert f"({png})" in report and str(tmp_path / png) in out
  assert "| knn |" in report


@pytest.mark.slow
def test_ctrl_c_saves_and_says_so(tmp_path):
  args = [*TINY, "--config.total_steps=2000", "--config.eval.at_init=false", f"--workdir={tmp_path}"]
  proc = subprocess.Popen([sys.executable, "-m", "jssl.main", *args], cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    for line in proc.stdout:
      if "student parameters" in line:   # the last line before the first step
        break
    time.sleep(3)   # the loop's signal handler is installed right after that line; on a loaded machine, later
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
  assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
  assert "rerun the same command to resume" in out + err
