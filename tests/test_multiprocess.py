"""Two processes on localhost train exactly like one process with the same devices.

`python -m jssl.main` runs as 2 CPU processes of one device each, joined by
jax.distributed (coordinator 127.0.0.1 on a free port, collectives over TCP with
gloo), on a tiny BYOL Fashion-MNIST run. Both processes get SIGTERM after the
first checkpoint, stop at the same step, save and exit 143; the same command
then resumes to the end. The final train state must equal, bit for bit, that
of one uninterrupted process with 2 simulated devices: the same mesh, the same
global batches (the data stream does not depend on the process count), the same
programs; a 2-way all-reduce adds the same two numbers whichever process holds
them. Only process 0 writes metrics, TensorBoard events, log.txt and
summary.json; each checkpoint is written once, with one iterator state per
process.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jssl.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, CHECKPOINT_EVERY = 12, 4
TIMEOUT = 600   # seconds for one run; far more than an idle machine needs
OVERRIDES = ("--config=configs/byol_resnet_tiny_fmnist.py", "--config.batch_size=16", f"--config.total_steps={STEPS}",
             "--config.byol.proj_hidden=32", "--config.byol.proj_dim=16", "--config.byol.pred_hidden=32",
             "--config.eval.pixels_baseline=False", "--config.eval.train_examples=64", "--config.eval.test_examples=32",
             "--config.eval.batch_size=32", "--config.log_every_steps=2",
             f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}", "--config.data.read_threads=1",
             "--config.data.prefetch_batches=2")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(cache, devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JSSL_", "JAX_", "XLA_"))}
  # XLA:CPU without LLVM optimisation compiles 2-4x faster; every run here compiles alike, so
  # their results still compare bit for bit. The resumed process 0 reads its programs from
  # the persistent cache.
  env.update(JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0",
             JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
  return env


def _start_pair(workdir, cache) -> list[subprocess.Popen]:
  """Two processes of one run: process 0 told by flags, process 1 by environment variables."""
  address = f"127.0.0.1:{_free_port()}"
  args = [sys.executable, "-m", "jssl.main", *OVERRIDES, f"--workdir={workdir}"]
  first = subprocess.Popen([*args, f"--coordinator_address={address}", "--num_processes=2", "--process_id=0"],
                           cwd=ROOT, env=_env(cache, 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  second = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(cache, 1, JSSL_COORDINATOR_ADDRESS=address, JSSL_NUM_PROCESSES="2",
                                     JSSL_PROCESS_ID="1"))
  return [first, second]


def _finish(procs) -> list[tuple[int, str, str]]:
  """(exit code, stdout, stderr) of each process; kills them all if one hangs."""
  try:
    out = [p.communicate(timeout=TIMEOUT) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return [(p.returncode, o, e) for p, (o, e) in zip(procs, out)]


def _state(workdir, step: int) -> dict[str, np.ndarray]:
  """The saved train state of `step` as host arrays, keyed by path."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  state = checkpointer.restore(path, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree))
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(state)}


def _rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two processes of 1 device, SIGTERM'd after the first checkpoint and resumed, and one
  process with 2 devices, uninterrupted; returns their workdirs and outputs."""
  tmp = tmp_path_factory.mktemp("multiprocess")
  cache, single, multi = tmp / "xla_cache", tmp / "single", tmp / "multi"
  t0 = time.perf_counter()
  procs = _start_pair(multi, cache)
  first_checkpoint = multi / "checkpoints" / str(CHECKPOINT_EVERY)
  try:
    while not first_checkpoint.exists():
      if any(p.poll() is not None for p in procs) or time.perf_counter() - t0 > TIMEOUT:
        break
      time.sleep(0.02)
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGTERM)   # a preemption: every process is told, as SLURM and TPU VMs do
  finally:
    stopped = _finish(procs)
  t1 = time.perf_counter()
  # The reference runs next to the resumed pair: process 1 compiles afresh (JAX's persistent
  # cache keeps process 0's programs only), process 0 mostly waits for it.
  reference = subprocess.Popen([sys.executable, "-m", "jssl.main", *OVERRIDES, f"--workdir={single}"], cwd=ROOT,
                               env=_env(cache, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  *resumed, reference = _finish([*_start_pair(multi, cache), reference])
  assert reference[0] == 0, reference[2][-3000:]
  print(f"seconds: stopped pair {t1 - t0:.1f}, resumed pair and reference {time.perf_counter() - t1:.1f}")
  return dict(single=single, multi=multi, stopped=stopped, resumed=resumed)


@pytest.mark.slow
def test_preempted_processes_stop_together_and_resume(runs):
  for code, out, err in runs["stopped"]:
    assert code == 128 + signal.SIGTERM, f"exit code {code} instead of 143:\n{err[-3000:]}"
  out0 = runs["stopped"][0][1]
  stop = int(out0.split("Stopped by SIGTERM at step ")[1].split(";")[0])
  assert CHECKPOINT_EVERY <= stop < STEPS
  for code, out, err in runs["resumed"]:
    assert code == 0, err[-3000:]
  assert f"Resumed from step {stop} in" in runs["resumed"][0][1]
  assert "Results: knn" in runs["resumed"][0][1]


@pytest.mark.slow
def test_two_processes_train_like_one(runs):
  single, multi = _state(runs["single"], STEPS), _state(runs["multi"], STEPS)
  assert single.keys() == multi.keys() and len(single) > 100
  different = [k for k in single if not np.array_equal(single[k], multi[k])]
  assert not different, different[:5]
  rows, reference = _rows(runs["multi"]), _rows(runs["single"])
  loss = lambda rs: [(r["step"], r["loss"]) for r in rs if "loss" in r]
  assert loss(rows) == loss(reference)   # every logged step once, the same losses
  summaries = [json.load(open(d / "summary.json")) for d in (runs["single"], runs["multi"])]
  assert summaries[0]["knn_k20_t0.07_cosine"] == summaries[1]["knn_k20_t0.07_cosine"]


@pytest.mark.slow
def test_only_process_zero_writes(runs):
  multi = runs["multi"]
  for (_, out0, _), (_, out1, _) in (runs["stopped"], runs["resumed"]):
    assert "byol on fashion_mnist" in out0
    assert not any(s in out1 for s in ("byol on fashion_mnist", "Stopped by", "Resumed", "Results"))
  with open(multi / "log.txt") as f:
    log = f.read()
  assert log.count("jssl] byol on fashion_mnist") == 2 and log.count("jssl] Resumed from step") == 1
  assert os.path.exists(multi / "log.process1.txt")   # process 1 keeps its library logs apart
  assert len(os.listdir(multi / "tb")) == 2           # one event file per run, none from process 1
  rows = [(r["step"], "loss" in r) for r in _rows(multi)]
  assert len(rows) == len(set(rows))   # no row twice
  assert sorted(os.listdir(multi)) == ["checkpoints", "log.process1.txt", "log.txt", "metrics.jsonl",
                                       "summary.json", "tb"]


@pytest.mark.slow
def test_checkpoints_written_once_with_each_process_data_state(runs):
  directory = runs["multi"] / "checkpoints"
  steps = os.listdir(directory)
  assert all(s.isdigit() for s in steps) and max(map(int, steps)) == STEPS   # no temporary directory left
  for s in steps:
    data = sorted(f for f in os.listdir(directory / s / "data") if f.endswith(".json"))
    assert data == ["process_0-of-2.json", "process_1-of-2.json"]
    for name in data:
      assert json.load(open(directory / s / "data" / name)) == {"next_index": int(s)}


class _Indices:
  """A source whose examples are their own indices."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def get_batch(self, indices):
    return {"index": np.asarray(indices)}


@pytest.mark.parametrize("processes", [2, 4])
def test_each_process_reads_its_part_of_the_global_batch(processes):
  """Process p reads the p-th part of every global batch: the parts are disjoint, together they
  are the batch one process reads, and an epoch still visits every example once."""
  n, batch = 103, 16
  one = pipeline._ShuffledBatch(_Indices(n), n, batch, 7, 0, 1)
  parts = [pipeline._ShuffledBatch(_Indices(n), n, batch, 7, p, processes) for p in range(processes)]
  seen = []
  for step in range(3 * n // batch):
    local = [part(step)["index"] for part in parts]
    assert all(len(x) == batch // processes for x in local)
    np.testing.assert_array_equal(np.concatenate(local), one(step)["index"])
    seen.extend(np.concatenate(local))
  np.testing.assert_array_equal(np.sort(seen[:n]), np.arange(n))
