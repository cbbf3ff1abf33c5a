"""Fault injection on real few-step Fashion-MNIST runs: non-finite steps, damaged
checkpoints, preemption, config changes on resume and bad command lines.

Each fault is checked against what the README's "Resuming" section promises.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jssl import guard, train
from tests.helpers import tiny_config


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Every run here compiles the same step: compile it once (the cache is re-read after
  the settings change, even if an earlier module compiled without one)."""
  from jax.experimental.compilation_cache import compilation_cache
  saved = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()
  yield
  for k, v in saved.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()


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


# ---- Damaged checkpoints -------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
  """An uninterrupted 4-step run with checkpoints at steps 2 and 4: (config, workdir, final state)."""
  workdir = tmp_path_factory.mktemp("baseline")
  config = _config(log_every_steps=1)
  trainer = _train(config, workdir)
  return config, workdir, jax.device_get(trainer.state)


def _copy(workdir, tmp_path):
  shutil.copytree(workdir, tmp_path / "run")
  return tmp_path / "run"


def _largest_chunk(workdir, step):
  files = glob.glob(str(workdir / "checkpoints" / str(step) / "state" / "ocdbt.process_0" / "d" / "*"))
  return max(files, key=os.path.getsize)


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip(path):
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    word = f.read(4)
    f.seek(-4, os.SEEK_CUR)
    f.write(bytes(b ^ 0xFF for b in word))


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_damaged_newest_checkpoint_falls_back(baseline, tmp_path, capsys, damage):
  config, workdir, expected = baseline
  run = _copy(workdir, tmp_path)
  damage(_largest_chunk(run, 4))
  trainer = train.Trainer(config, str(run), verbose=True).prepare()
  out = capsys.readouterr().out
  assert "Checkpoint step 4 is damaged" in out and "Resumed from step 2" in out, out
  assert os.listdir(run / "checkpoints_damaged") == ["4"]      # kept aside, not deleted
  try:
    trainer.verbose = False
    trainer.run()
  finally:
    trainer.checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, expected, jax.device_get(trainer.state))
  assert [r["step"] for r in _rows(run) if "loss" in r] == [1, 2, 3, 4]   # one row per step


def test_fingerprint_catches_a_changed_value(baseline, tmp_path):
  config, workdir, _ = baseline
  run = _copy(workdir, tmp_path)
  path = run / "checkpoints" / "4" / "fingerprints" / "metadata"
  saved = json.loads(path.read_text())
  name = sorted(k for k in saved if k.startswith("params/"))[0]
  saved[name] = "0" * 16
  path.write_text(json.dumps(saved))
  trainer = _prepare(config, run)
  assert int(trainer.state["step"]) == 2
  assert os.listdir(run / "checkpoints_damaged") == ["4"]


def test_evaluation_refuses_a_damaged_checkpoint(baseline, tmp_path):
  from jssl import checkpoint
  _, workdir, _ = baseline
  run = _copy(workdir, tmp_path)
  _flip(_largest_chunk(run, 4))
  with pytest.raises(ValueError) as e:
    checkpoint.load_pretrained(str(run))
  assert "/4 is damaged: array " in str(e.value) and "fingerprint" in str(e.value)


def test_every_checkpoint_damaged(baseline, tmp_path):
  config, workdir, _ = baseline
  run = _copy(workdir, tmp_path)
  for step in (2, 4):
    _truncate(_largest_chunk(run, step))
  with pytest.raises(ValueError) as e:
    _prepare(config, run)
  message = str(e.value)
  assert "No checkpoint" in message and "step 4" in message and "step 2" in message
  assert "\n" not in message and message.endswith(".")
  assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"] and not os.path.exists(run / "checkpoints_damaged")


def test_keep_checkpoints_after_a_crash(baseline, tmp_path):
  config, workdir, _ = baseline
  run = _copy(workdir, tmp_path)
  shutil.copytree(run / "checkpoints" / "2", run / "checkpoints" / "1")   # one more than keep_checkpoints=2
  _prepare(config, run)
  assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]


# ---- Config changes on resume ----------------------------------------------------------


def _prepare(config, workdir, **kwargs):
  trainer = train.Trainer(config, str(workdir), verbose=False, **kwargs)
  try:
    return trainer.prepare()
  finally:
    if hasattr(trainer, "checkpointer"):
      trainer.checkpointer.close()


@pytest.mark.parametrize("field,value,shown", [
    ("seed", 1, "seed: 0 -> 1"),
    ("batch_size", 32, "batch_size: 16 -> 32"),
    ("optim.name", "adamw", "optim.name: 'lars' -> 'adamw'"),
    ("model.variant", "resnet18", "model.variant: 'resnet_tiny' -> 'resnet18'"),
    ("aug.global_size", 24, "aug.global_size: 28 -> 24"),
    ("byol.proj_dim", 8, "byol.proj_dim: 16 -> 8"),
])
def test_resume_refuses_a_changed_run(baseline, field, value, shown):
  config, workdir, _ = baseline
  with pytest.raises(ValueError) as e:
    _prepare(_config(log_every_steps=1, **{field: value}), workdir)
  message = str(e.value)
  assert shown in message and "--allow_config_changes" in message, message
  assert "\n" not in message and message.endswith(".")


def test_resume_override_still_refuses_other_arrays(baseline):
  config, workdir, _ = baseline
  with pytest.raises(ValueError) as e:
    _prepare(_config(log_every_steps=1, **{"optim.name": "adamw"}), workdir, allow_config_changes=True)
  assert "holds other arrays" in str(e.value) and "opt_state" in str(e.value)


def test_resume_accepts_and_lists_harmless_changes(baseline, tmp_path, capsys):
  config, workdir, _ = baseline
  run = _copy(workdir, tmp_path)
  changed = _config(log_every_steps=2, total_steps=6, **{"eval.knn_k": 5})
  trainer = train.Trainer(changed, str(run), verbose=True).prepare()
  trainer.checkpointer.close()
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Config changes")]
  assert lines == ["Config changes since the checkpoint: eval.knn_k: 20 -> 5, log_every_steps: 1 -> 2, "
                   "total_steps: 4 -> 6."]


def test_resume_override_accepts_seed(baseline, tmp_path):
  config, workdir, _ = baseline
  trainer = _prepare(_config(log_every_steps=1, seed=3), _copy(workdir, tmp_path), allow_config_changes=True)
  assert int(trainer.state["step"]) == 4


# ---- Preemption -------------------------------------------------------------------------


def test_sigterm_saves_and_resumes_bit_identical(baseline, tmp_path):
  config, _, expected = baseline
  trainer = train.Trainer(config, str(tmp_path), verbose=False).prepare()
  step_fn, calls = trainer.step_fn, [0]

  def step_then_signal(state, batch):
    calls[0] += 1
    if calls[0] == 3:   # arrives while step 3 runs: the loop stops after it
      signal.raise_signal(signal.SIGTERM)
    return step_fn(state, batch)
  trainer.step_fn = step_then_signal
  try:
    with pytest.raises(train.Preempted) as e:
      trainer.run()
  finally:
    trainer.checkpointer.close()
  assert "SIGTERM at step 3" in str(e.value) and e.value.exit_code == 143
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL      # handlers restored
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]
  resumed = _train(config, tmp_path)
  jax.tree.map(np.testing.assert_array_equal, expected, jax.device_get(resumed.state))
  assert [r["step"] for r in _rows(tmp_path) if "loss" in r] == [1, 2, 3, 4]


# ---- Bad command lines ------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args,expected", [
    (["--config.batchsize=32"], "error: --config.batchsize names no field of the config; "
                                "did you mean --config.batch_size?"),
    (["--config.optim.lrr=1"], "error: --config.optim.lrr names no field of the config; did you mean --config.optim.lr?"),
    (["--config.batch_size=abc"], "error: flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'."),
])
def test_bad_command_line_is_one_line(tmp_path, args, expected):
  result = subprocess.run([sys.executable, "-m", "jssl.main", "--config=configs/quickstart.py",
                           f"--workdir={tmp_path}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [expected]


def test_missing_config_file_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "jssl.main", "--config=configs/no_such.py", f"--workdir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "configs/no_such.py" in lines[0] and "Traceback" not in result.stderr


# ---- Feature cache -------------------------------------------------------------------------


def test_damaged_feature_cache_names_the_file(tmp_path):
  from jssl.evaluators import feature_cache
  np.save(tmp_path / "features.npy", np.array([{"not": "numbers"}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError) as e:
    feature_cache._read(str(tmp_path), "features.npy")
  message = str(e.value)
  assert str(tmp_path / "features.npy") in message and "\n" not in message and message.endswith(".")
