"""SOVE, ViT-S/16, ImageNet-1k, 2 x 224 + 10 x 96 multi-crop, 800 epochs.

  python -m jssl.main --config=configs/sove_vits16.py --workdir=gs://bucket/sove_vits16

Paper (800 epochs): 75.2% k-NN / 77.8% linear. Recipe as configs/sove_vitb.py
(METHODS.md section 002): banks 65536 / 8192, K 8192, k 8, K-dot 512, blockwise
masking 0.3, AdamW 5e-4 x batch/256, wd 0.04 -> 0.4, clip 3 per tensor, drop path 0.1,
bf16, EMA 0.996 -> 1. Batch 1024 is our choice (the paper does not restate it
for every backbone); the banks are multiples of it.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and the teacher monitor: DINO's recipe (training_defaults of the method).
  c = cfg.base("sove", data_source="tfds", data_name="imagenet2012", aug_recipe="dino", global_size=224, local_size=96,
               num_local=10, channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.aug.global_scale = (0.14, 1.0)   # the SOVE code's global crop scale (DINO: 0.4-1)
  c.model.name = "vit"
  c.model.variant = "S/16"
  c.model.image_size = 224
  c.model.pool = "cls"
  c.model.drop_path = 0.1
  c.model.dtype = "bfloat16"
  c.batch_size = 1024
  c.num_epochs = 800
  c.eval.every_steps = 10 * (1281167 // 1024)
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
