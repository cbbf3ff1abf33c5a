"""Several processes on localhost train like one process with the same devices.

`python -m jssl.main` runs as N CPU processes of one device each, joined by
jax.distributed (coordinator 127.0.0.1 on a free port, collectives over TCP with
gloo). Each run of `CASES` trains once for all the tests that read it:

- byol: tiny BYOL Fashion-MNIST as 2 processes. Both get SIGTERM after the
  first checkpoint, stop at the same step, save and exit 143; the same command
  then resumes to the end.
- sove: tiny SOVE (one-block ViT-Ti/4, 64- and 32-row memory banks, 8 and 4
  anchors, 2 neighbours) as 2 processes, preempted and resumed the same way. The
  banks' rows are split over the devices, so each process holds, searches and
  writes only its own rows (jssl.losses.sove.sharded_neighbours); the checkpoint
  holds each whole bank once, each process writing its rows.
- sove_4: the SOVE run as 4 processes, uninterrupted, with a checkpoint midway.

Each run's final train state (parameters, teacher, optimiser state, memory banks)
is compared with that of one uninterrupted process with as many simulated
devices: the same mesh, the same global batches (the data stream does not depend
on the process count), the same programs. With 2 processes it is equal bit for
bit: a 2-way all-reduce adds the same two numbers whichever process holds them,
and SOVE's other collectives (all-gathers of top-k candidates, psums of a bank
row and zeros) are exact. With 4 it is equal to float32 rounding only: gloo
adds 4 numbers in another order than XLA's in-process all-reduce (measured: x2
+ x3 + x0 + x1 against x0 + x1 + x2 + x3), so gradients and BatchNorm statistics
may differ in the last bit, and Adam turns the rounding noise of gradients that
are exactly zero in theory (a ViT's key bias) into updates of up to a few 1e-6.
Only process 0 writes metrics, TensorBoard events, log.txt and summary.json;
each checkpoint is written once, with one iterator state per process.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jssl.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600   # seconds for one run; far more than an idle machine needs
_COMMON = ("--config.eval.pixels_baseline=False", "--config.eval.train_examples=64", "--config.eval.test_examples=32",
           "--config.eval.batch_size=32", "--config.log_every_steps=2", "--config.data.read_threads=1",
           "--config.data.prefetch_batches=2", "--config.batch_size=16")
_BYOL = ("--config=configs/byol_resnet_tiny_fmnist.py", "--config.byol.proj_hidden=32", "--config.byol.proj_dim=16",
         "--config.byol.pred_hidden=32")
# One ViT-Ti/4 block and no local crops (a third less to compile; the crops add nothing across
# processes); banks of 4 and 2 global batches, so 12 steps wrap each several times, and 16-row
# search blocks, so each of 2 devices searches its 32 [CLS] rows in two blocks.
_SOVE = ("--config=configs/sove_vit_tiny_fmnist.py", "--config.model.depth=1", "--config.aug.num_local=0",
         "--config.sove.hidden_dim=32", "--config.sove.out_dim=16", "--config.sove.cls_bank_size=64",
         "--config.sove.patch_bank_size=32", "--config.sove.num_anchors=8", "--config.sove.num_neighbors=2",
         "--config.sove.num_patch_anchors=4", "--config.sove.topk_block_size=16")


class Case(NamedTuple):
  """One multi-process run and its 1-process reference."""
  method: str
  processes: int
  steps: int
  checkpoint_every: int
  preempt: bool        # SIGTERM after the first checkpoint, then resume
  overrides: tuple[str, ...]

  def args(self) -> tuple[str, ...]:
    return (*self.overrides, *_COMMON, f"--config.total_steps={self.steps}",
            f"--config.checkpoint_every_steps={self.checkpoint_every}")


CASES = {"byol": Case("byol", 2, 12, 4, True, _BYOL),
         "sove": Case("sove", 2, 12, 4, True, _SOVE),
         "sove_4": Case("sove", 4, 4, 2, False, _SOVE)}
PREEMPTED = [name for name, case in CASES.items() if case.preempt]
SOVE = [name for name, case in CASES.items() if case.method == "sove"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(cache, devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JSSL_", "JAX_", "XLA_"))}
  # XLA:CPU without LLVM optimisation compiles 2-4x faster; every run here compiles alike, so
  # their results still compare bit for bit. A resumed process 0 reads its programs from the
  # persistent cache; the others compile again (JAX writes the cache from process 0 only, and
  # on CPU each process's programs have keys of their own, so jax_share_binary_between_hosts
  # would wait forever).
  env.update(JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0",
             JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
  return env


def _popen(args, env) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "jssl.main", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _start(case: Case, workdir, cache) -> list[subprocess.Popen]:
  """The processes of one run: process 0 told by flags, the others by environment variables."""
  address = f"127.0.0.1:{_free_port()}"
  args = (*case.args(), f"--workdir={workdir}")
  first = _popen([*args, f"--coordinator_address={address}", f"--num_processes={case.processes}", "--process_id=0"],
                 _env(cache, 1))
  return [first] + [_popen(args, _env(cache, 1, JSSL_COORDINATOR_ADDRESS=address,
                                      JSSL_NUM_PROCESSES=str(case.processes), JSSL_PROCESS_ID=str(i)))
                    for i in range(1, case.processes)]


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


def _stopped_after_first_checkpoint(case: Case, workdir, cache) -> list[tuple[int, str, str]]:
  """Starts the run's processes and SIGTERMs every one once the first checkpoint exists."""
  t0 = time.perf_counter()
  procs = _start(case, workdir, cache)
  first_checkpoint = workdir / "checkpoints" / str(case.checkpoint_every)
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
  return stopped


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  """One persistent compilation cache for every run of the module."""
  return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory, cache):
  """The case `request.param` of CASES: its multi-process run (SIGTERM'd after the first
  checkpoint and resumed, if the case says so) and one uninterrupted process with as many
  devices. Returns the case, both workdirs and the processes' outputs, one list per start."""
  case = CASES[request.param]
  tmp = tmp_path_factory.mktemp(request.param)
  single, multi = tmp / "single", tmp / "multi"
  parts, times = [], []
  t0 = time.perf_counter()
  if case.preempt:
    parts.append(_stopped_after_first_checkpoint(case, multi, cache))
    times.append(time.perf_counter() - t0)
  # The reference runs next to the (resumed) processes, which spend much of their time waiting
  # for each other.
  reference = _popen((*case.args(), f"--workdir={single}"), _env(cache, case.processes))
  *last, reference = _finish([*_start(case, multi, cache), reference])
  parts.append(last)
  times.append(time.perf_counter() - t0 - sum(times))
  assert reference[0] == 0, reference[2][-3000:]
  print(f"{request.param} seconds: " + ", ".join(f"{t:.1f}" for t in times))
  return dict(case=case, single=single, multi=multi, parts=parts)


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


@pytest.mark.slow
@pytest.mark.parametrize("runs", PREEMPTED, indirect=True)
def test_preempted_processes_stop_together_and_resume(runs):
  case, (stopped, resumed) = runs["case"], runs["parts"]
  for code, out, err in stopped:
    assert code == 128 + signal.SIGTERM, f"exit code {code} instead of 143:\n{err[-3000:]}"
  stop = int(stopped[0][1].split("Stopped by SIGTERM at step ")[1].split(";")[0])
  assert case.checkpoint_every <= stop < case.steps
  for code, out, err in resumed:
    assert code == 0, err[-3000:]
  assert f"Resumed from step {stop} in" in resumed[0][1]


def _same(case: Case, a: np.ndarray, b: np.ndarray) -> bool:
  """Bit for bit with 2 processes; with more, to float32 rounding for floats (the module
  docstring says why; 1e-5 is a few times the largest difference measured) and exactly
  for the rest (step, write pointers, RNG keys)."""
  if case.processes == 2 or a.dtype.kind != "f":
    return np.array_equal(a, b)
  return np.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("runs", list(CASES), indirect=True)
def test_processes_train_like_one(runs):
  case = runs["case"]
  for code, out, err in runs["parts"][-1]:
    assert code == 0, err[-3000:]
  assert "Results: knn" in runs["parts"][-1][0][1]
  single, multi = _state(runs["single"], case.steps), _state(runs["multi"], case.steps)
  assert single.keys() == multi.keys() and len(single) > 50
  different = [k for k in single if not _same(case, single[k], multi[k])]
  assert not different, different[:5]
  losses = [[(r["step"], r["loss"]) for r in _rows(runs[w]) if "loss" in r] for w in ("multi", "single")]
  assert [s for s, _ in losses[0]] == [s for s, _ in losses[1]]   # every logged step once
  assert all(_same(case, np.float32(a), np.float32(b)) for (_, a), (_, b) in zip(*losses))
  knn = [json.load(open(runs[w] / "summary.json"))["knn_k20_t0.07_cosine"] for w in ("multi", "single")]
  # One of the 32 test images may change its vote when the features differ by rounding.
  assert abs(knn[0] - knn[1]) <= (0 if case.processes == 2 else 1 / 32 + 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("runs", SOVE, indirect=True)
def test_checkpoint_holds_whole_banks_written_by_every_process(runs):
  """Each process holds 1/N of each bank's rows and writes them; the checkpoint reads back as
  the whole bank."""
  case, path = runs["case"], runs["multi"] / "checkpoints" / str(runs["case"].steps) / "state"
  final = _state(runs["multi"], case.steps)
  banks = {"cls_bank": 64, "patch_bank": 32}
  for name, rows in banks.items():
    bank = final[f"['method_state']['{name}']['bank']"]
    assert bank.shape == (rows, 16)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=-1), 1.0, rtol=1e-5)
  for i in range(case.processes):   # orbax records the part of each array a process wrote
    with open(path / "array_metadatas" / f"process_{i}") as f:
      written = {m["array_metadata"]["param_name"]: m["array_metadata"]["write_shape"]
                 for m in json.load(f)["array_metadatas"]}
    for name, rows in banks.items():
      assert written[f"method_state.{name}.bank"] == [rows // case.processes, 16]


@pytest.mark.slow
@pytest.mark.parametrize("runs", list(CASES), indirect=True)
def test_only_process_zero_writes(runs):
  case, multi, parts = runs["case"], runs["multi"], runs["parts"]
  header = f"{case.method} on fashion_mnist"
  for (_, out0, _), *others in parts:
    assert header in out0
    for _, out, _ in others:
      assert not any(s in out for s in (header, "Stopped by", "Resumed", "Results"))
  with open(multi / "log.txt") as f:
    log = f.read()
  assert log.count(f"jssl] {header}") == len(parts) and log.count("jssl] Resumed from step") == len(parts) - 1
  assert len(os.listdir(multi / "tb")) == len(parts)   # one event file per run, none from the other processes
  rows = [(r["step"], "loss" in r) for r in _rows(multi)]
  assert len(rows) == len(set(rows))   # no row twice
  others = [f"log.process{i}.txt" for i in range(1, case.processes)]   # their library logs, kept apart
  assert sorted(os.listdir(multi)) == sorted(["checkpoints", "log.txt", "metrics.jsonl", "summary.json", "tb",
                                              *others])


@pytest.mark.slow
@pytest.mark.parametrize("runs", list(CASES), indirect=True)
def test_checkpoints_written_once_with_each_process_data_state(runs):
  case, directory = runs["case"], runs["multi"] / "checkpoints"
  steps = os.listdir(directory)
  assert all(s.isdigit() for s in steps) and max(map(int, steps)) == case.steps   # no temporary directory left
  for s in steps:
    data = sorted(f for f in os.listdir(directory / s / "data") if f.endswith(".json"))
    assert data == [f"process_{i}-of-{case.processes}.json" for i in range(case.processes)]
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
