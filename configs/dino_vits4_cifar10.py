"""DINO, ViT-S/4, CIFAR-10, 2 x 32 px global + 6 x 16 px local crops.

  python -m jssl.main --config=configs/dino_vits4_cifar10.py --workdir=runs/dino_vits4_cifar10

Needs CIFAR-10 as TFDS ArrayRecord. Follows METHODS.md's DINO defaults with a
smaller head (16384 prototypes) for 50k images; 200 epochs, batch 256.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("dino", data_source="tfds", data_name="cifar10", aug_recipe="dino", global_size=32, local_size=16, num_local=6,
               channels=3, small_images=True)
  c.model.name = "vit"
  c.model.variant = "S/4"
  c.model.image_size = 32
  c.model.pool = "cls"
  c.model.drop_path = 0.1
  c.dino.out_dim = 16384
  c.batch_size = 256
  c.num_epochs = 200
  c.optim.name = "adamw"
  c.optim.lr = 5e-4
  c.optim.min_lr = 1e-6
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 0.04
  c.optim.weight_decay_end = 0.4
  c.optim.clip_grad = 3.0
  c.optim.frozen = "last_layer"
  c.optim.freeze_epochs = 1
  c.ema.base = 0.996
  c.eval.network = "teacher"
  c.eval.every_steps = 10 * 195
  return c
