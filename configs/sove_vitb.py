"""SOVE, ViT-B/16, ImageNet-1k: jssl's headline recipe.

  python -m jssl.main --config=configs/sove_vitb.py --workdir=gs://bucket/sove_vitb

Paper (400 epochs): 78.4% k-NN / 79.9% linear on ImageNet (ViT-S/16 800 ep
75.2 / 77.8; ViT-L/16 250 ep 79.2 / 81.2). Needs ImageNet as TFDS ArrayRecord
(--config.data.data_dir). Two 224 px global crops (scale 0.14-1, the
official code's) and ten 96 px local crops (0.05-0.4).
Paper numbers: [CLS] bank E_C 65536, patch bank E_P 8192, K = 8192 anchors with
k = 8 neighbours each, K-dot = 512 patch anchors with one judge, soft labels by
similarity, blockwise masking ratio 0.3, lambda1 = lambda2 = 1, 3-layer 2048
GELU head to a normalised 256-d embedding. Common recipe (METHODS.md): AdamW
lr 5e-4 x batch/256, 10 warm-up epochs, min 1e-6, weight decay 0.04 -> 0.4,
clip 3.0 per tensor, drop path 0.1, bf16 compute, EMA 0.996 -> 1; 4 [CLS] + 4 [MIM]
tasks per step (Table B.1, code); official code: student
T 0.1, teacher T 0.04 (30-epoch warm-up from 0.04). Batch 1024 is our choice;
both banks are multiples of it, as they must be.
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
  c.model.variant = "B/16"
  c.model.image_size = 224
  c.model.pool = "cls"
  c.model.drop_path = 0.1
  c.model.dtype = "bfloat16"
  c.batch_size = 1024
  c.num_epochs = 400
  c.eval.every_steps = 10 * (1281167 // 1024)
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
