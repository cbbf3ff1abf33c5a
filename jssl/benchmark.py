"""Speed of one config's train step: compile time, step time, images/s, FLOPs, MFU, memory.

  python -m jssl.benchmark --config=configs/quickstart.py --steps=20
  python -m jssl.benchmark --config=configs/sove_vitb.py --synthetic --out=vitb.json \\
      --append_md=docs/performance.md --config.batch_size=256

Builds the trainer's own state, data iterator and jitted step (jssl.train.Trainer.build),
lowers and compiles the step once (timed), runs --warmup untimed steps, then times
--steps steps one by one, blocking on each (the median is reported). By default every
step reads its batch from the config's real input pipeline, as training does; with
--synthetic it reuses one fixed random batch of the same shape. Either way the time to
fetch --steps real batches alone (after draining the prefetch buffer) is measured too.

FLOPs per step are XLA's cost analysis of the compiled step (jssl/peaks.py says what they
count). MFU = FLOPs per step / step time / (peak FLOP/s per device x devices), with the
peak from the table in jssl/peaks.py, or --peak_flops (a number, or `measure`: a dense
matmul's rate on this device, an assumed peak; what a CPU needs). Without a known peak
MFU is null.

Writes a JSON file (--out), prints one Markdown table row (PERFORMANCE_HEADER gives the
columns) and appends it to --append_md. Bad input ends in one line on stderr (exit code 2
for the command line, 1 for a config the trainer refuses); --verbose shows tracebacks.
"""
import datetime
import json
import math
import os
import shlex
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from jssl import cli, logs

_FLAGS = {}   # defined by _define_flags when run as a program: importing this module defines no flags


def _define_flags() -> None:
  f = _FLAGS
  f["config"] = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.",
                                                lock_config=True)
  f["steps"] = flags.DEFINE_integer("steps", 20, "Timed steps (and real batches fetched alone).", lower_bound=1)
  f["warmup"] = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.", lower_bound=0)
  f["synthetic"] = flags.DEFINE_bool("synthetic", False, "Time the step on one fixed random batch instead of the "
                                     "real input pipeline.")
  f["out"] = flags.DEFINE_string("out", None, "JSON file to write (default runs/benchmark/<config>[_synthetic].json).")
  f["append_md"] = flags.DEFINE_string("append_md", None, "Markdown file to append the table row to (the header "
                                       "is written first when the file is new or empty).")
  f["machine"] = flags.DEFINE_string("machine", None, "Machine name for the table (default: device kind x count).")
  f["peak_flops"] = flags.DEFINE_string("peak_flops", None, "Peak FLOP/s of one device for MFU: a number (1.2e12), "
                                        "or 'measure' (a dense matmul's rate on this device). Default: the table "
                                        "in jssl/peaks.py.")
  f["verbose"] = flags.DEFINE_bool("verbose", False, "Show tracebacks for bad input, and library INFO logs.")
  flags.mark_flags_as_required(["config"])


PERFORMANCE_HEADER = ("| machine | config | batch | step time (ms) | img/s | GFLOP/step | MFU | compile (s) "
                      "| peak memory | date |\n|---|---|---|---|---|---|---|---|---|---|")


class _Status:
  """One progress line on stderr, rewritten in place on a terminal."""

  def __init__(self, prefix: str, enabled: bool = True):
    self.prefix, self.enabled = prefix, enabled
    self.tty = enabled and sys.stderr.isatty()
    self._printed = False

  def show(self, what: str) -> None:
    if not self.enabled:
      return
    if self.tty:
      sys.stderr.write(f"\r\033[K{self.prefix}: {what}")
      sys.stderr.flush()
    elif not self._printed:   # a log file gets the one line only
      sys.stderr.write(f"{self.prefix}: compiling, then timing steps...\n")
      sys.stderr.flush()
      self._printed = True

  def close(self) -> None:
    if self.tty and self.enabled:
      sys.stderr.write("\r\033[K")
      sys.stderr.flush()


def resolve_peak(spec: str | None, device_kind: str) -> tuple[float | None, str | None]:
  """(peak FLOP/s per device, where it came from) for `--peak_flops`; (None, None) when unknown."""
  from jssl import peaks
  if spec is None:
    known = peaks.peak_flops(device_kind)
    return (known[0], f"table: {known[1]} dense bf16") if known else (None, None)
  if spec.strip().lower() == "measure":
    return peaks.measure_matmul_peak(), "measured matmul rate (assumed peak)"
  value = _peak_number(spec)
  if value is None:
    raise ValueError(f"--peak_flops={spec!r} must be a positive number of FLOP/s per device or 'measure'.")
  return value, "--peak_flops (assumed peak)"


def _peak_number(spec: str) -> float | None:
  try:
    value = float(spec)
  except ValueError:
    return None
  return value if math.isfinite(value) and value > 0 else None


def peak_memory_bytes() -> int | None:
  """The largest peak_bytes_in_use over this process's devices; None where the backend
  keeps no memory statistics (CPU)."""
  import jax
  values = []
  for device in jax.local_devices():
    try:
      stats = device.memory_stats()
    except Exception:  # not every backend implements it
      stats = None
    if stats and stats.get("peak_bytes_in_use") is not None:
      values.append(int(stats["peak_bytes_in_use"]))
  return max(values) if values else None


def _median(xs: list[float]) -> float:
  xs = sorted(xs)
  mid = len(xs) // 2
  return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def measure(config, *, steps: int = 20, warmup: int = 3, synthetic: bool = False, peak_flops: str | None = None,
            status: _Status | None = None) -> dict:
  """Benchmarks the train step of `config`; returns the numbers (see the module docstring)."""
  import jax
  import numpy as np

  from jssl import peaks, train
  from jssl.data import pipeline
  status = status or _Status("", enabled=False)
  trainer = train.Trainer(config, workdir="", verbose=False)   # build() writes nothing
  trainer.build()
  device = jax.devices()[0]
  num_devices = trainer.mesh.devices.size
  peak, peak_source = resolve_peak(peak_flops, device.device_kind)
  state = trainer.init_state()
  host_batch = next(trainer.data)
  if synthetic:
    rng = np.random.default_rng(0)
    host_batch = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if k == "image"
                      else rng.integers(0, max(2, trainer.setup.num_classes), v.shape).astype(v.dtype))
                  for k, v in host_batch.items()}
  batch = pipeline.to_global(host_batch, trainer.batch_sharding)
  jax.block_until_ready((state, batch))

  status.show("compiling the step")
  t0 = time.perf_counter()
  lowered = trainer.step_fn.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  flops_device = peaks.compiled_flops(compiled)

  def next_batch():
    if synthetic:
      return batch
    return pipeline.to_global(next(trainer.data), trainer.batch_sharding)

  times, waits = [], []
  for i in range(warmup + steps):
    status.show(f"warm-up step {i + 1}/{warmup}" if i < warmup else f"step {i - warmup + 1}/{steps}")
    t_start = time.perf_counter()
    b = next_batch()
    jax.block_until_ready(b)
    t_batch = time.perf_counter()
    state, metrics = compiled(state, b)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - t_start)
      waits.append(t_batch - t_start)
  if not np.isfinite(float(jax.device_get(metrics["loss"]))):
    raise ValueError("the step gave a non-finite loss, so its timing means little; check the config.")

  # The real pipeline alone: drain what it prefetched while the steps ran, then time.
  status.show("input pipeline alone")
  for _ in range(int(config.data.get("prefetch_batches", 0) or 0)):
    next(trainer.data)
  fetch = []
  for _ in range(steps):
    t_start = time.perf_counter()
    jax.block_until_ready(pipeline.to_global(next(trainer.data), trainer.batch_sharding))
    fetch.append(time.perf_counter() - t_start)

  step_time = _median(times)
  flops = flops_device * num_devices if flops_device else None
  mfu = flops_device / step_time / peak if (flops_device and peak) else None
  data_s = _median(fetch)
  return {
      "platform": device.platform,
      "device_kind": device.device_kind,
      "num_devices": int(num_devices),
      "batch_size": int(config.batch_size),
      "synthetic": bool(synthetic),
      "steps": int(steps),
      "warmup": int(warmup),
      "lower_s": t1 - t0,
      "compile_s": t2 - t0,   # lower + compile
      "step_time_s": step_time,
      "step_time_mean_s": float(np.mean(times)),
      "step_time_min_s": float(np.min(times)),
      "step_times_s": times,
      "images_per_s": config.batch_size / step_time,
      "input_wait_s": _median(waits) if not synthetic else 0.0,   # inside the timed steps
      "data_s_per_batch": data_s,   # the real pipeline alone, per batch
      "data_images_per_s": config.batch_size / data_s if data_s > 0 else None,
      "data_fraction_of_step": data_s / step_time,
      "flops_per_step": flops,
      "flops_per_step_per_device": flops_device,
      "gflops_per_image": flops / config.batch_size / 1e9 if flops else None,
      "peak_flops_per_device": peak,
      "peak_flops_source": peak_source,
      "mfu": mfu,
      "peak_memory_bytes": peak_memory_bytes(),
      "jax_version": jax.__version__,
  }


def _bytes(n: int | None) -> str:
  if n is None:
    return "n/a"
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def markdown_row(r: dict) -> str:
  gflop = f"{r['flops_per_step'] / 1e9:.1f}" if r.get("flops_per_step") else "n/a"
  mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
  if r.get("mfu") is not None and "assumed" in (r.get("peak_flops_source") or ""):
    mfu += " (assumed peak)"
  return (f"| {r['machine']} | {r['config']} | {r['batch_size']} | {1e3 * r['step_time_s']:.1f} | "
          f"{r['images_per_s']:.0f} | {gflop} | {mfu} | {r['compile_s']:.1f} | {_bytes(r['peak_memory_bytes'])} | "
          f"{r['date']} |")


def _config_label(path: str, argv: list[str], synthetic: bool) -> str:
  """The config file's name and its overrides other than the batch size (a column of its own)."""
  parts = [os.path.basename(path)]
  parts += [a[len("--config."):] for a in argv if a.startswith("--config.") and not a.startswith("--config.batch_size")]
  if synthetic:
    parts.append("(synthetic)")
  return " ".join(parts)


def main(argv):
  del argv
  opt = {name: flag.value for name, flag in _FLAGS.items() if name != "config"}
  logs.configure(show=True if opt["verbose"] else None)
  config = cli.load_config(_FLAGS["config"])
  if config.get("data") is None:
    cli.fail("the config has no data section; jssl.benchmark benchmarks pretraining configs.", 2)
  peak = opt["peak_flops"]
  if peak is not None and peak.strip().lower() != "measure" and _peak_number(peak) is None:
    cli.fail(f"--peak_flops={peak!r} must be a positive number of FLOP/s per device or 'measure'.", 2)
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  stem = os.path.splitext(os.path.basename(path))[0] + ("_synthetic" if opt["synthetic"] else "")
  out = opt["out"] or os.path.join("runs", "benchmark", f"{stem}.json")
  import jax
  status = _Status(f"benchmark {os.path.basename(path)}, batch {config.batch_size}")
  try:
    result = measure(config, steps=opt["steps"], warmup=opt["warmup"], synthetic=opt["synthetic"], peak_flops=peak,
                     status=status)
  except (ValueError, FileNotFoundError) as e:
    status.close()
    if cli.traceback_wanted():
      raise
    cli.fail(str(e))
  status.close()
  result.update(
      machine=opt["machine"] or f"{jax.devices()[0].device_kind} x{result['num_devices']}",
      config=_config_label(path, sys.argv[1:], opt["synthetic"]),
      config_file=path,
      overrides=[a for a in sys.argv[1:] if a.startswith("--config.")],
      command="python -m jssl.benchmark " + shlex.join(sys.argv[1:]),
      date=datetime.date.today().isoformat(),
  )
  if result["peak_flops_per_device"] is None:
    sys.stderr.write(f"note: no peak FLOP/s is known for device kind {result['device_kind']!r}, so MFU is null; "
                     f"pass --peak_flops=<FLOP/s per device> or --peak_flops=measure.\n")
  elif result["flops_per_step"] is None:
    sys.stderr.write("note: XLA gave no FLOP count for this step on this backend, so MFU is null.\n")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
  os.replace(out + ".tmp", out)
  row = markdown_row(result)
  if opt["append_md"]:
    md = opt["append_md"]
    new = not os.path.exists(md) or os.path.getsize(md) == 0
    with open(md, "a") as f:
      f.write((PERFORMANCE_HEADER + "\n" if new else "") + row + "\n")
  print(row, flush=True)
  sys.stderr.write(f"(JSON in {out})\n")


_interrupted = cli.interruptible(main, "interrupted (Ctrl-C).")


if __name__ == "__main__":
  _define_flags()
  app.run(_interrupted, flags_parser=lambda argv: cli.parse_flags(argv, __doc__))
