"""End to end on real Fashion-MNIST: pretrain -> checkpoint -> resume -> k-NN, through the CLI."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, *overrides):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  args = [sys.executable, "-m", "jssl.main", "--config=configs/quickstart.py", f"--workdir={workdir}",
          "--config.eval.train_examples=1000", "--config.eval.test_examples=500", "--config.batch_size=32",
          "--config.log_every_steps=2", "--config.checkpoint_every_steps=3", "--config.eval.at_init=True", *overrides]
  result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_pretrain_checkpoint_resume_knn(tmp_path):
  out = _main(tmp_path, "--config.total_steps=3")
  assert "k-NN (random init)" in out and "Results:" in out
  assert "k-NN (raw pixels, same protocol)" in out   # the quickstart prints the no-learning baseline
  assert os.path.isdir(tmp_path / "checkpoints" / "3")
  out = _main(tmp_path, "--config.total_steps=6")
  assert "Resumed from step 3" in out
  summary = json.load(open(tmp_path / "summary.json"))
  assert 0.0 <= summary["knn_k20_t0.07_cosine"] <= 1.0
  assert "init/knn_k20_t0.07_cosine" in summary   # the whole run's numbers survive the resume
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  steps = [r["step"] for r in rows if "loss" in r]
  assert steps == [2, 3, 4, 6]
  assert all("feature_std" in r and "probe_acc" in r for r in rows if "loss" in r)
  # images/s from steady-state steps only: step 4, the resumed run's first (compiling) step, has none
  assert [r["step"] for r in rows if "images_per_s" in r] == [2, 3, 6]
  seconds = {r["step"]: r["train_seconds"] for r in rows if "loss" in r}   # counted on across the resume
  assert summary["train_seconds"] >= seconds[6] > seconds[4] > seconds[3] > seconds[2] > 0
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
