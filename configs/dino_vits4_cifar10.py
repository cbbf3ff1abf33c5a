"""DINO, ViT-S/4, CIFAR-10, 2 x 32 px global + 6 x 16 px local crops.

  python -m jssl.main --config=configs/dino_vits4_cifar10.py --workdir=runs/dino_vits4_cifar10

Needs CIFAR-10 as TFDS ArrayRecord. Follows METHODS.md's DINO defaults with a
smaller head (16384 prototypes) for 50k images; 200 epochs, batch 256.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and last-layer freezing: DINO's recipe (jssl.methods.dino.training_defaults).
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
  c.eval.every_steps = 10 * 195
  return c
