"""BYOL, ResNet-18 (small-image stem), CIFAR-10.

  python -m jssl.main --config=configs/byol_resnet18_cifar10.py --workdir=runs/byol_r18_cifar10

Needs CIFAR-10 as TFDS ArrayRecord (`tfds build cifar10 --file_format=array_record`).
solo-learn's CIFAR recipe: 1000 epochs, batch 256, LARS lr 1.0, wd 1e-5, EMA
0.99 -> 1, no blur (32 px): ~92% k-NN is reported for this setting; 200 epochs
give roughly 85-88%.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("byol", data_source="tfds", data_name="cifar10", global_size=32, channels=3, small_images=True)
  c.model.variant = "resnet18"
  c.batch_size = 256
  c.num_epochs = 200
  c.optim.name = "lars"
  c.optim.lr = 1.0
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 1e-5
  c.eval.every_steps = 10 * 195
  return c
