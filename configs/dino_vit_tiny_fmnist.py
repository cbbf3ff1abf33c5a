"""DINO, ViT-Tiny with 4x4 patches, Fashion-MNIST, 2 global 28 px + 4 local 12 px crops.

  python -m jssl.main --config=configs/dino_vit_tiny_fmnist.py --workdir=runs/dino_vitt_fmnist

100 epochs at batch 256. The head is smaller than ImageNet DINO's (4096
prototypes instead of 65536) because Fashion-MNIST has 10 classes and 60k images;
everything else follows METHODS.md (AdamW 5e-4 x batch/256, wd 0.04 -> 0.4,
teacher T 0.04, clip 3.0, last layer frozen during epoch 1). Expect k-NN
(k = 20, T = 0.07, teacher encoder, test split) above the 85% of raw pixels.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and last-layer freezing: DINO's recipe (jssl.methods.dino.training_defaults).
  c = cfg.base("dino", data_source="fashion_mnist", global_size=28, local_size=12, num_local=4,
               channels=1, small_images=True)
  c.model.name = "vit"
  c.model.variant = "Ti/4"
  c.model.image_size = 28
  c.model.pool = "cls"
  c.model.drop_path = 0.0
  c.model.depth = 0               # 0: the preset's 12 blocks; fewer for quick comparisons
  c.dino.out_dim = 4096
  c.batch_size = 256
  c.num_epochs = 100
  c.eval.every_steps = 2340
  return c
