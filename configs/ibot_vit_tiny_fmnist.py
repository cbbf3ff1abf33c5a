"""iBOT-style parametric baseline, ViT-Tiny with 4x4 patches, Fashion-MNIST, 2 x 28 px + 4 x 12 px crops.

  python -m jssl.main --config=configs/ibot_vit_tiny_fmnist.py --workdir=runs/ibot_vitt_fmnist

Same data, crops, model, optimiser and budget (100 epochs at batch 256) as
configs/dino_vit_tiny_fmnist.py, so the DINO / iBOT-style / SOVE comparison
differs only in the method. 4096 prototypes shared by [CLS] and patch tokens
(ImageNet uses 8192; Fashion-MNIST has 10 classes); blockwise masks on the 7 x 7
patch grid of the global views, ratio U(0.1, 0.5) on half of the images, the
smallest block 2 patches (4 would be a twelfth of this small grid). Expect k-NN
(k = 20, T = 0.07, teacher encoder, test split) above the 85% of raw pixels.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and the teacher monitor: DINO's recipe (training_defaults of the method).
  c = cfg.base("ibot", data_source="fashion_mnist", aug_recipe="dino", global_size=28, local_size=12, num_local=4,
               channels=1, small_images=True)
  c.model.name = "vit"
  c.model.variant = "Ti/4"
  c.model.image_size = 28
  c.model.pool = "cls"
  c.model.drop_path = 0.0
  c.model.depth = 0               # 0: the preset's 12 blocks; fewer for quick comparisons
  c.ibot.out_dim = 4096
  c.ibot.patch_out_dim = 4096
  c.ibot.mask_min_block = 2
  c.batch_size = 256
  c.num_epochs = 100
  c.eval.every_steps = 2340
  return c
