"""Fault injection on real few-step Fashion-MNIST runs: non-finite steps, damaged
checkpoints, preemption, config changes on resume and bad command lines.

Each fault is checked against what the README's "Resuming" section promises.
"""
import json
import os

import jax
import numpy as np
import pytest

from jssl import guard, train
from tests.helpers import tiny_config


def _config(**overrides):
  c = tiny_config()
  c.num_devices = 1          # one device compiles fastest; device invariance is tested elsewhere
  c.eval.at_init = False
  c.eval.train_examples = 64
  c.eval.test_examples = 32
  for k, v in overrides.items():
    section, _, name = k.rpartition(".")
    (c[section] if section else c)[name] = v
  return c


def _train(config, workdir, until=None):
  trainer = train.Trainer(config, str(workdir), verbose=False).prepare()
  try:
    trainer.run(until=until)
    return trainer
  finally:
    trainer.checkpointer.close()


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture
def nan_at_step(monkeypatch):
  """Makes the images of the given (1-based) training step NaN."""
  def inject(step):
    seen = [0]
    to_global = train.pipeline.to_global

    def poisoned(batch, sharding):
      seen[0] += 1
      if seen[0] == step:
        batch = dict(batch, image=np.full(batch["image"].shape, np.nan, np.float32))
      return to_global(batch, sharding)
    monkeypatch.setattr(train.pipeline, "to_global", poisoned)
  return inject


def test_nonfinite_step_stops_before_saving(tmp_path, nan_at_step):
  nan_at_step(3)
  config = _config(checkpoint_every_steps=2, log_every_steps=4)
  with pytest.raises(guard.NonFiniteError) as e:
    _train(config, tmp_path)
  message = str(e.value)
  assert message.startswith("Step 3 ") and "loss" in message and "\n" not in message
  # The checkpoint of step 2 is there; nothing from step 3 on was saved.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]


def test_nonfinite_step_skipped(tmp_path, nan_at_step):
  nan_at_step(3)
  trainer = _train(_config(on_nonfinite="skip", checkpoint_every_steps=100), tmp_path)
  state = jax.device_get(trainer.state)
  assert int(state["step"]) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
  assert sum(r.get("skipped_steps", 0) for r in _rows(tmp_path)) == 1
