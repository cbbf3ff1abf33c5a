"""Runs every notebook of colab/ top to bottom on CPU, in its small mode, so a notebook that stops working fails.

Each notebook's code cells, in order, become one Python script (`script`) that a fresh interpreter runs in a
temporary directory with:
  * JSSL_NOTEBOOK_SMOKE=1: the notebooks' small mode (a few training steps, tiny batches, small evaluation
    subsets, short probe and ensemble fits); the cells read it and shrink every budget;
  * JSSL_SOURCE=<this checkout>: where the notebooks read configs/ from; jssl is importable here, so their
    install cells skip pip;
  * JAX on CPU, XLA's CPU backend without optimisation passes (as tests/recipes.py: the steps run a few
    times, compiling dominates) and a compilation cache shared by the three notebooks (their small trainings
    compile the same steps), matplotlib's non-interactive Agg backend.
The sove_tpu notebook runs on 8 simulated CPU devices, the device count of the TPU v2-8 it is written for.

Notebook-only syntax has no meaning to Python: a line whose first non-blank character is `!` (shell) or `%`
(line magic), and a cell starting with `%%` (cell magic), are replaced by `pass` at the same indentation, so
the script still parses; the notebooks do not rely on them (their install cells call pip through
subprocess). A cell that raises stops the script with a non-zero exit and fails the test, which also checks
the files and lines each notebook must produce.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB = os.path.join(ROOT, "colab")
SMOKE_ENV = "JSSL_NOTEBOOK_SMOKE"


def script(notebook: dict) -> str:
  """The code cells of a parsed .ipynb as one script, notebook-only lines replaced by `pass`."""
  parts = []
  for i, cell in enumerate(notebook["cells"]):
    if cell["cell_type"] != "code":
      continue
    source = "".join(cell["source"])
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
      lines = ["pass  # cell magic: cell skipped"]
    out = []
    for line in lines:
      stripped = line.lstrip()
      if stripped.startswith(("!", "%")):
        out.append(line[:len(line) - len(stripped)] + "pass  # notebook-only line skipped: " + stripped)
      else:
        out.append(line)
    parts.append(f"# --- cell {i} ---\n" + "\n".join(out) + "\n")
  return "\n".join(parts)


def test_script_skips_notebook_only_lines():
  nb = {"cells": [{"cell_type": "markdown", "source": ["# title"]},
                  {"cell_type": "code", "source": ["!pip install x\n", "if True:\n", "  %time y = 1\n", "z = 2"]},
                  {"cell_type": "code", "source": ["%%bash\n", "echo hi"]}]}
  got = script(nb)
  compile(got, "nb", "exec")
  assert "title" not in got and "z = 2" in got and "echo hi" not in got
  assert "  pass  # notebook-only line skipped: %time y = 1" in got


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("jax_cache"))


def _run(name: str, cwd, jax_cache: str, devices: int = 1) -> str:
  with open(os.path.join(COLAB, f"{name}.ipynb")) as f:
    code = script(json.load(f))
  path = os.path.join(cwd, f"{name}.py")
  with open(path, "w") as f:
    f.write(code)
  env = dict(os.environ)
  env.update({
      SMOKE_ENV: "1", "JSSL_SOURCE": ROOT, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg",
      "XLA_FLAGS": f"--xla_backend_optimization_level=0 --xla_force_host_platform_device_count={devices}",
      "JAX_COMPILATION_CACHE_DIR": jax_cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
      # plt.show() under Agg warns that it cannot show; the notebooks save every figure they show.
      "PYTHONWARNINGS": "ignore:FigureCanvasAgg is non-interactive",
  })
  proc = subprocess.run([sys.executable, path], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, f"colab/{name}.ipynb failed (script {path}):\n{out[-6000:]}"
  return out


def _rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_quickstart(tmp_path, jax_cache):
  out = _run("quickstart", tmp_path, jax_cache)
  rows = _rows(tmp_path / "runs" / "quickstart" / "metrics.jsonl")
  assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
  final = rows[-1]
  assert 0 <= final["knn_k20_t0.07_cosine"] <= 1 and 0 <= final["pixels/knn_k20_t0.07_cosine"] <= 1
  assert "  encoder after 4 steps:  " in out and "  raw pixels:  " in out
  assert (tmp_path / "runs" / "quickstart" / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_sove_tpu(tmp_path, jax_cache):
  out = _run("sove_tpu", tmp_path, jax_cache, devices=8)
  assert "8 cpu device(s)" in out and "= 2 per device x 8 devices" in out
  rows = _rows(tmp_path / "runs" / "sove_tpu" / "metrics.jsonl")
  assert [r["step"] for r in rows if "knn_k20_t0.07_cosine" in r] == [1, 2]   # every_steps and the final one
  assert "k-NN accuracy of the teacher (knn_k20_t0.07_cosine): " in out
  assert (tmp_path / "runs" / "sove_tpu" / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_evaluate(tmp_path, jax_cache):
  _run("evaluate", tmp_path, jax_cache)
  runs = tmp_path / "runs"

  def results(name):
    with open(runs / name / "results.json") as f:
      return json.load(f)

  knn = results("eval_knn")["results"]
  assert {r["protocol"]["network"] for r in knn} == {"student", "pixels"}
  assert [r["evaluation"] for r in results("eval_linear")["results"]].count("linear") == 1
  ensemble = [r["metric"] for r in results("eval_ensemble")["results"]]
  assert ensemble == ["member seed0:student:pre_logits", "member seed1:student:pre_logits", "average",
                      "concatenation", "learned (paper 001)"]
  tsne = results("eval_tsne")["plots"]
  assert len(tsne) == 1 and os.path.getsize(tsne[0] if os.path.isabs(tsne[0]) else runs.parent / tsne[0]) > 0
  assert (runs / "summary.png").stat().st_size > 0
