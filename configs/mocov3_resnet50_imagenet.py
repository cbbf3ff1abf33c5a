"""MoCo v3, ResNet-50, ImageNet-1k: the official code's 100-epoch preset, batch 4096.

  python -m jssl.main --config=configs/mocov3_resnet50_imagenet.py --workdir=gs://bucket/mocov3_r50

Needs ImageNet prepared as TFDS ArrayRecord (`tfds build imagenet2012
--file_format=array_record`, data_dir in --config.data.data_dir). The official
code's 100-epoch ResNet-50 run (CONFIG.md: its defaults plus --moco-m-cos
--crop-min=.2): LARS lr 0.6 x batch/256 = 9.6 with 10 warm-up epochs then
cosine, weight decay 1e-6, tau 1.0, momentum 0.99 -> 1 (cosine), crops of
20-100%, BYOL's augmentations, a 2-layer projector and a predictor without
output BatchNorm (4096 -> 256): 68.9% linear top-1. Its longer presets are
`--config.num_epochs=300 --config.optim.lr=0.3` (72.8%) and
`--config.num_epochs=1000 --config.optim.lr=0.3 --config.optim.weight_decay=1.5e-6
--config.ema.base=0.996` (74.6%). Not measured with jssl yet. The host resizes
images to 256 px (shorter side + centre crop); random resized crops to 224 are
taken on the accelerator.
"""
from jssl import config as cfg


def get_config():
  # Optimiser and EMA: the official code's defaults (jssl.methods.mocov3.training_defaults).
  c = cfg.base("mocov3", data_source="tfds", data_name="imagenet2012", aug_recipe="byol", global_size=224, channels=3,
               small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.aug.global_scale = (0.2, 1.0)   # the ResNet-50 presets' --crop-min=.2
  c.model.variant = "resnet50"
  c.model.small_stem = False
  c.model.dtype = "bfloat16"
  c.mocov3.proj_layers = 2          # MoCo_ResNet heads of the official code
  c.mocov3.pred_last_bn = False
  c.mocov3.temperature = 1.0
  c.batch_size = 4096
  c.num_epochs = 100
  c.optim.name = "lars"
  c.optim.lr = 0.6
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 1e-6
  c.ema.base = 0.99
  c.eval.every_steps = 10 * 312
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
