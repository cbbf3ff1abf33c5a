"""jssl.benchmark and jssl.peaks: the numbers the harness reports, its command line, and the
MFU the trainer logs. Runs on the 8 simulated CPU devices of conftest.py."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jssl import benchmark, peaks, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.py")


def _quickstart(**overrides):
  spec = importlib.util.spec_from_file_location("quickstart_for_benchmark", QUICKSTART)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in overrides.items():
    config[key] = value
  return config


def _positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  """One run of the command line on real Fashion-MNIST batches, batch 16, with a given peak."""
  tmp = tmp_path_factory.mktemp("bench")
  out, md = tmp / "q.json", tmp / "perf.md"
  cmd = [sys.executable, "-m", "jssl.benchmark", f"--config={QUICKSTART}", "--steps=3", "--warmup=1",
         "--config.batch_size=16", "--peak_flops=1e11", f"--out={out}", f"--append_md={md}", "--machine=test box"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  return proc, json.loads(out.read_text()) if out.exists() else None, md


@pytest.mark.slow
def test_cli_writes_json_and_one_markdown_row(cli_run):
  proc, result, md = cli_run
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  for key in ("compile_s", "lower_s", "step_time_s", "images_per_s", "flops_per_step", "flops_per_step_per_device",
              "mfu", "data_s_per_batch", "data_fraction_of_step", "peak_flops_per_device"):
    assert _positive(result[key]), (key, result[key])
  assert result["input_wait_s"] >= 0
  assert result["batch_size"] == 16 and result["num_devices"] == 8 and result["synthetic"] is False
  assert len(result["step_times_s"]) == 3
  assert result["images_per_s"] == pytest.approx(16 / result["step_time_s"])
  assert result["flops_per_step"] == pytest.approx(8 * result["flops_per_step_per_device"])
  # MFU = FLOPs per step / step time / (peak x devices)
  assert result["mfu"] == pytest.approx(result["flops_per_step"] / result["step_time_s"] / (1e11 * 8))
  assert result["peak_memory_bytes"] is None   # the CPU keeps no memory statistics
  assert result["overrides"] == ["--config.batch_size=16"]
  rows = [line for line in proc.stdout.splitlines() if line.strip()]
  assert len(rows) == 1 and rows[0].startswith("| test box | quickstart.py | 16 |")
  assert "(assumed peak)" in rows[0]
  lines = md.read_text().splitlines()
  assert lines[:2] == benchmark.PERFORMANCE_HEADER.splitlines() and lines[2] == rows[0]


@pytest.mark.slow
def test_flops_scale_with_batch_and_unknown_peak_gives_null_mfu(cli_run):
  """Batch 8 in-process (synthetic) against the command line's batch 16 (real data)."""
  result16 = cli_run[1]
  result8 = benchmark.measure(_quickstart(batch_size=8), steps=2, warmup=0, synthetic=True)
  assert result8["synthetic"] is True and result8["input_wait_s"] == 0.0
  assert result8["device_kind"] == "cpu" and peaks.peak_flops("cpu") is None
  assert result8["mfu"] is None and result8["peak_flops_per_device"] is None
  assert _positive(result8["flops_per_step"]) and _positive(result8["step_time_s"])
  # Per-image work grows with the batch; the optimizer update, replicated on each of the 8
  # devices and so counted 8 times, does not (measured: 1.51).
  ratio = result16["flops_per_step"] / result8["flops_per_step"]
  assert 1.4 < ratio < 2.05, ratio


def test_compiled_flops_of_a_sharded_matmul():
  """XLA's count for one device's program, times the devices, is the matmul's 2 M N K."""
  mesh = jax.make_mesh((8,), ("data",))
  x = jax.device_put(jnp.ones((64, 128)), NamedSharding(mesh, P("data")))
  w = jax.device_put(jnp.ones((128, 32)), NamedSharding(mesh, P()))
  compiled = jax.jit(lambda x, w: x @ w).lower(x, w).compile()
  flops = peaks.compiled_flops(compiled)
  assert 8 * flops == pytest.approx(2 * 64 * 128 * 32, rel=0.1)


def test_compiled_flops_across_cost_analysis_formats():
  def fake(result):
    return types.SimpleNamespace(cost_analysis=lambda: result)

  def broken():
    raise NotImplementedError
  assert peaks.compiled_flops(fake({"flops": 12.0})) == 12.0
  assert peaks.compiled_flops(fake([{"flops": 7.0, "bytes accessed": 3.0}])) == 7.0
  assert peaks.compiled_flops(fake(None)) is None
  assert peaks.compiled_flops(fake([])) is None
  assert peaks.compiled_flops(fake({"bytes accessed": 3.0})) is None
  assert peaks.compiled_flops(fake({"flops": -1.0})) is None
  assert peaks.compiled_flops(types.SimpleNamespace(cost_analysis=broken)) is None


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H200", 989e12), ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    ("TPU v5", 459e12), ("TPU v5p", 459e12), ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
    ("cpu", None), ("NVIDIA H100 PCIe", None), ("NVIDIA H200 NVL", None), ("TPU v4 lite", None),
    ("Tesla V100-SXM2-16GB", None)])
def test_peak_table(kind, peak):
  known = peaks.peak_flops(kind)
  assert (known[0] if known else None) == peak


def test_peak_flag():
  assert benchmark.resolve_peak(None, "cpu") == (None, None)
  assert benchmark.resolve_peak(None, "TPU v5 lite")[0] == 197e12
  assert benchmark.resolve_peak("2.5e12", "TPU v5 lite") == (2.5e12, "--peak_flops (assumed peak)")
  with pytest.raises(ValueError, match="peak_flops"):
    benchmark.resolve_peak("fast", "cpu")
  measured, source = benchmark.resolve_peak("measure", "cpu")
  assert _positive(measured) and "assumed" in source


def test_help_and_bad_flags_end_in_one_line():
  proc = subprocess.run([sys.executable, "-m", "jssl.benchmark", "--help"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0 and "--peak_flops" in proc.stdout and "--synthetic" in proc.stdout, proc.stderr
  for args, code in ((["--peak_flops=fast"], 2), (["--steps=0"], 2), (["--config.batchsize=8"], 2)):
    proc = subprocess.run([sys.executable, "-m", "jssl.benchmark", f"--config={QUICKSTART}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, (args, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_trainer_mfu_per_image(monkeypatch):
  """The trainer's logged MFU: images/s x FLOPs per step per device / batch / peak, and
  nothing compiled on a device without a known peak."""
  trainer = train.Trainer(types.SimpleNamespace(batch_size=4), workdir="", verbose=False)
  trainer.state = jnp.ones((4, 16))
  batch = jnp.ones((16, 8))
  monkeypatch.setattr(peaks, "peak_flops", lambda kind: None)
  trainer.step_fn = types.SimpleNamespace(lower=lambda *args: pytest.fail("compiled on an unknown device"))
  assert trainer._mfu_per_image(batch) is None
  trainer.step_fn = jax.jit(lambda s, b: s @ b)
  monkeypatch.setattr(peaks, "peak_flops", lambda kind: (1e9, "test"))
  flops = 2 * 4 * 16 * 8
  assert trainer._mfu_per_image(batch) == pytest.approx(flops / 4 / 1e9, rel=0.1)
