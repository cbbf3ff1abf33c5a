"""Bad input gives one clear sentence, before anything expensive is compiled."""
import glob
import os
import subprocess
import sys

import pytest

from jssl import train
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare(config, workdir):
  trainer = train.Trainer(config, str(workdir), verbose=False)
  try:
    return trainer.prepare()
  finally:
    if hasattr(trainer, "checkpointer"):
      trainer.checkpointer.close()


def _one_sentence(message: str):
  assert "\n" not in message and message.endswith("."), message


def test_missing_dataset_says_where_it_looked(tmp_path):
  config = tiny_config()
  config.data.data_dir = str(tmp_path / "no_such_dir")
  with pytest.raises(FileNotFoundError) as e:
    _prepare(config, tmp_path / "run")
  assert "no_such_dir" in str(e.value) and "dataset-fashion-mnist" in str(e.value)


@pytest.mark.parametrize("field,value,needle", [
    ("batch_size", 12, "batch_size"),          # not a multiple of the 8 devices
    ("aug.global_size", 64, "aug.global_size"),  # crop larger than the 28x28 images
    ("method", "nope", "method"),
    ("optim.name", "rmsprop", "optim.name"),
    ("optim.lr", float("nan"), "optim.lr"),
    ("optim.lr", 0.0, "optim.lr"),
    ("ema.base", 1.5, "ema.base"),
    ("on_nonfinite", "ignore", "on_nonfinite"),
])
def test_bad_values(tmp_path, field, value, needle):
  config = tiny_config()
  section, _, name = field.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError) as e:
    _prepare(config, tmp_path / "run")
  assert needle in str(e.value)
  _one_sentence(str(e.value))


def _main(*args, cwd=ROOT):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  return subprocess.run([sys.executable, "-m", "jssl.main", "--config=configs/quickstart.py", *args],
                        cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("override,needle", [
    ("--config.batch_sise=64", "batch_sise"),   # misspelt field: the config is locked
    ("--config.batch_size=abc", "batch_size"),  # wrong type
])
def test_bad_command_line_override(tmp_path, override, needle):
  result = _main(f"--workdir={tmp_path}", override)
  assert result.returncode != 0
  assert needle in result.stderr


def _train(config, workdir):
  trainer = train.Trainer(config, str(workdir), verbose=False).prepare()
  try:
    trainer.run()
  finally:
    trainer.checkpointer.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("trained")
  config = tiny_config()
  config.total_steps = 2
  _train(config, workdir)
  return config, workdir


def test_incompatible_checkpoint(trained, tmp_path):
  config, workdir = trained
  other = tiny_config()
  other.model.variant = "resnet18"
  with pytest.raises(ValueError) as e:
    _prepare(other, workdir)
  assert "incompatible" in str(e.value) and "model" in str(e.value)
  _one_sentence(str(e.value))


def test_corrupt_checkpoint(trained, tmp_path):
  config, workdir = trained
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
  files = [f for f in glob.glob(str(copy / "checkpoints" / "*" / "state" / "**"), recursive=True)
           if os.path.isfile(f)]
  assert files
  for f in files:
    with open(f, "wb") as fh:
      fh.write(b"garbage")
  with pytest.raises(ValueError) as e:
    _prepare(config, copy)
  assert "checkpoint" in str(e.value)
  _one_sentence(str(e.value))


def test_half_written_checkpoint_is_ignored(trained, tmp_path):
  config, workdir = trained
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
  # What a save killed half-way leaves behind: orbax's temporary directory.
  os.makedirs(copy / "checkpoints" / "7.orbax-checkpoint-tmp-123" / "state")
  trainer = _prepare(config, copy)
  assert int(trainer.state["step"]) == 2
