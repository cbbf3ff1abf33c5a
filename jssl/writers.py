"""Where metrics go: JSON lines, TensorBoard event files (tensorboardX, no
TensorFlow) and a progress bar with images/s and ETA."""
import json
import os
import time

import numpy as np
import tqdm
from tensorboardX import SummaryWriter


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


class Progress:
  """A progress bar over training steps showing loss, images/s and the ETA."""

  def __init__(self, total_steps: int, start_step: int, batch_size: int, enabled: bool = True):
    self.batch_size = batch_size
    self._bar = tqdm.tqdm(total=total_steps, initial=start_step, disable=not enabled,
                          unit="step", dynamic_ncols=True, mininterval=2.0)
    self._last_time, self._last_step = time.perf_counter(), start_step

  def update(self, step: int, metrics: dict) -> float:
    """Advances to `step`; returns images/s since the previous call."""
    now = time.perf_counter()
    rate = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    self._bar.update(step - self._bar.n)
    shown = {k: f"{float(v):.4g}" for k, v in metrics.items() if k in ("loss", "probe_acc", "knn")}
    self._bar.set_postfix(**shown, img_s=f"{rate:.0f}")
    return rate

  def close(self) -> None:
    self._bar.close()
