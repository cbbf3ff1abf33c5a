"""SOVE, ViT-Tiny with 4x4 patches, Fashion-MNIST, 2 global 28 px + 4 local 12 px crops.

  python -m jssl.main --config=configs/sove_vit_tiny_fmnist.py --workdir=runs/sove_vitt_fmnist

Same budget and optimiser as configs/dino_vit_tiny_fmnist.py (100 epochs,
batch 256, AdamW 5e-4 x batch/256, wd 0.04 -> 0.4, clip 3, EMA 0.996) so the
two compare at equal cost. Scaled-down SOVE (our choice for 60k images and 10
classes): E_C 4096 and E_P 1024 (multiples of the batch), K = 1024 anchors,
k = 8 neighbours, K-dot = 256; the 7x7 patch grid is masked blockwise at 0.3
(the paper's ratio). Augmentation is
the DINO recipe of that config (global scale 0.4-1), kept identical for the
comparison.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and the teacher monitor: DINO's recipe (training_defaults of the method).
  c = cfg.base("sove", data_source="fashion_mnist", aug_recipe="dino", global_size=28, local_size=12,
               num_local=4, channels=1, small_images=True)
  c.model.name = "vit"
  c.model.variant = "Ti/4"
  c.model.image_size = 28
  c.model.pool = "cls"
  c.model.drop_path = 0.0
  c.model.depth = 0               # 0: the preset's 12 blocks; fewer for quick comparisons
  c.sove.cls_bank_size = 4096
  c.sove.patch_bank_size = 1024
  c.sove.num_anchors = 1024
  c.sove.num_patch_anchors = 256
  c.sove.num_tasks = c.sove.num_patch_tasks = 1   # one draw each: the CPU budget of docs/sove.md's comparison
  c.batch_size = 256
  c.num_epochs = 100
  c.eval.every_steps = 2340
  return c
