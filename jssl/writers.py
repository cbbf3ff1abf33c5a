"""Where metrics go: JSON lines, TensorBoard event files (tensorboardX, no
TensorFlow) and a progress bar with images/s and ETA."""
import json
import os
import time

import numpy as np
import tqdm
from tensorboardX import SummaryWriter


def write_summary(workdir: str, summary: dict) -> str:
  """Writes a finished run's summary.json (what marks it finished) atomically; returns its path.

  A kill mid-write leaves the previous file or none, never a partial one.
  """
  path = os.path.join(workdir, "summary.json")
  with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)
  return path


def _scalar(v):
  v = np.asarray(v)
  return float(v) if v.size == 1 else None


def truncate_metrics(workdir: str, step: int) -> None:
  """Drops the rows after `step` from workdir/metrics.jsonl (a resumed run writes them again).

  The file is replaced atomically, so a crash here leaves either version.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if line.strip() and _row_step(line) <= step]
  if len(kept) == len(lines):
    return
  with open(path + ".tmp", "w") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


def _row_step(line: str) -> float:
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return float("inf")   # a row cut short by a crash: drop it


class MetricWriter:
  """Appends {"step": s, name: value, ...} lines to workdir/metrics.jsonl and writes
  the same scalars to TensorBoard event files in workdir/tb."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self.path = os.path.join(workdir, "metrics.jsonl")
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {k: _scalar(v) for k, v in metrics.items()}
    row = {k: v for k, v in row.items() if v is not None}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), "time": time.time(), **row}) + "\n")
    for k, v in row.items():
      self._tb.add_scalar(k, v, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()


def drop_eval_rows(workdir: str, step: int) -> None:
  """Drops the evaluation rows (no "loss") logged at `step`: a finished run evaluated again rewrites them."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if not _is_eval_row(line, step)]
  if len(kept) < len(lines):
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def _is_eval_row(line: str, step: int) -> bool:
  try:
    row = json.loads(line)
  except ValueError:
    return False
  return row.get("step") == step and "loss" not in row


def read_rows(workdir: str) -> list[dict]:
  """The rows of workdir/metrics.jsonl (none when it does not exist)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def phase(iterable, desc: str, *, total: int | None = None, unit: str = "it", enabled: bool = True):
  """`iterable` with a transient progress bar (cleared when done) for a phase that can run
  for minutes: feature extraction, ensemble fitting. Only process 0 shows it."""
  import jax
  return tqdm.tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, mininterval=2.0, position=0,
                   disable=not enabled or jax.process_index() != 0)


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
  """A progress bar over training steps showing loss, images/s and the ETA.

  Images/s and the ETA are measured from the steady-state steps: the clock
  starts when `compiled` reports the first step done, so compilation counts in
  neither. `tick` moves the bar between logged steps (the trainer calls it every
  few seconds), so a long logging interval does not leave it at 0.
  """

  TICK_SECONDS = 5.0

  def __init__(self, total_steps: int, start_step: int, batch_size: int, enabled: bool = True):
    self.batch_size, self.total = batch_size, total_steps
    self._bar = tqdm.tqdm(total=total_steps, initial=start_step, disable=not enabled, unit="step", position=0,
                          dynamic_ncols=True, mininterval=2.0,
                          bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    now = time.perf_counter()
    self._mark = None                  # (time, step) after the first, compiling step
    self._prev = (now, start_step)     # the previous rate measurement
    self._last_tick, self._shown = now, {}

  def compiled(self, step: int) -> None:
    """The first step is done (compiled and run): steady-state timing starts here."""
    now = time.perf_counter()
    self._mark = self._prev = (now, step)
    self._last_tick = now

  def due(self) -> bool:
    """Whether the bar has not moved for TICK_SECONDS."""
    return time.perf_counter() - self._last_tick >= self.TICK_SECONDS

  def tick(self, step: int) -> None:
    """Moves the bar to `step` (done on the device) and refreshes the ETA."""
    self._last_tick = time.perf_counter()
    self._bar.update(step - self._bar.n)
    self._refresh(step)

  def update(self, step: int, metrics: dict) -> float | None:
    """Advances to `step` with new metrics; returns images/s since the previous call
    (None when no steady-state step ran since)."""
    now = time.perf_counter()
    t0, s0 = self._prev
    rate = (step - s0) * self.batch_size / max(now - t0, 1e-9) if self._mark and step > s0 else None
    self._prev = (now, step)
    self._shown = {k: f"{float(v):.4g}" for k, v in metrics.items() if k in ("loss", "probe_acc", "knn")}
    if rate is not None:
      self._shown["img_s"] = f"{rate:.0f}"
    self.tick(step)
    return rate

  def _refresh(self, step: int) -> None:
    shown = dict(self._shown)
    if self._mark and step > self._mark[1]:
      per_step = (time.perf_counter() - self._mark[0]) / (step - self._mark[1])
      shown["eta"] = _clock(per_step * (self.total - step))
    self._bar.set_postfix(shown, refresh=True)

  def close(self) -> None:
    self._bar.close()
