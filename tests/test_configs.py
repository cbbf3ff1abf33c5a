"""Every recipe in configs/ loads, validates its own fields and initialises under jax.eval_shape."""
import glob
import os

import jax
import pytest
from ml_collections import config_flags

from jssl import config as config_lib
from jssl import state as state_lib
from jssl.data import multicrop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def load(path):
  return config_flags.config_flags._ConfigFileParser(name="config").parse(path)


def test_configs_exist():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {"quickstart.py", "byol_resnet18_fmnist.py", "dino_vit_tiny_fmnist.py", "byol_resnet50_imagenet.py",
          "dino_vits16_imagenet.py", "byol_resnet18_cifar10.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_initialises(path):
  config = load(path)
  side = config.data.image_size or config.aug.global_size
  multicrop.validate(config.aug, (side, side, len(config.aug.mean)))
  num_classes = config.data.num_classes or (1000 if "imagenet" in str(config.data.name) else 10)
  setup, init_fn = state_lib.build(config, in_channels=len(config.aug.mean), num_classes=num_classes,
                                   total_steps=100, steps_per_epoch=10)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  assert int(abstract["step"].size) == 1
  assert state_lib.count_params(abstract["params"]) > 0
  assert set(abstract["teacher_params"]) <= set(abstract["params"])
  with open(path) as f:
    assert "python -m jssl.main --config=configs/" in f.read(), "the docstring must give the command"


def test_fmnist_configs_validate():
  for name in ("quickstart.py", "byol_resnet18_fmnist.py", "dino_vit_tiny_fmnist.py"):
    info = config_lib.validate(load(os.path.join(ROOT, "configs", name)), num_devices=8)
    assert info["image_shape"] == (28, 28, 1)
