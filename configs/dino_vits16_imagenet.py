"""DINO, ViT-S/16, ImageNet-1k, 2 x 224 + 8 x 96 multi-crop, batch 512, 100 epochs.

  python -m jssl.main --config=configs/dino_vits16_imagenet.py --workdir=gs://bucket/dino_vits16

Needs ImageNet as TFDS ArrayRecord (data_dir in --config.data.data_dir). The
official code's "vanilla" 100-epoch run (its defaults on 8 GPUs: batch 8 x 64 =
512, 8 local crops): 69.3% k-NN / 74.0% linear. The paper's 800-epoch ViT-S/16
(batch 1024, 10 local crops, teacher T warmed up 0.04 -> 0.07) reaches 74.5 / 77.0.
Defaults from METHODS.md: 65536 prototypes, AdamW lr 5e-4 x batch/256 with 10
warm-up epochs to min 1e-6, wd 0.04 -> 0.4, clip 3.0 (per tensor), teacher T 0.04 (warm-up
from 0.04 over 0 epochs; the paper's longer runs warm up 0.04 -> 0.07 over 30),
center momentum 0.9, EMA 0.996 -> 1, last layer frozen for epoch 1, each gradient
tensor clipped on its own as the code does. The host
resizes to 256 px; global crops (scale 0.4-1) and local crops (0.05-0.4) are cut
on the accelerator.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and last-layer freezing: DINO's recipe (jssl.methods.dino.training_defaults).
  c = cfg.base("dino", data_source="tfds", data_name="imagenet2012", aug_recipe="dino", global_size=224, local_size=96, num_local=8,
               channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.model.name = "vit"
  c.model.variant = "S/16"
  c.model.image_size = 224
  c.model.pool = "cls"
  c.model.drop_path = 0.1
  c.model.dtype = "bfloat16"
  c.batch_size = 512
  c.num_epochs = 100
  c.eval.every_steps = 10 * 2502
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
