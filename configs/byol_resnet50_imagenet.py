"""BYOL, ResNet-50, ImageNet-1k: the paper's 300-epoch preset.

  python -m jssl.main --config=configs/byol_resnet50_imagenet.py --workdir=gs://bucket/byol_r50

Needs ImageNet prepared as TFDS ArrayRecord (`tfds build imagenet2012
--file_format=array_record`, data_dir in --config.data.data_dir). The paper's
300-epoch setting (batch 4096, LARS lr 0.3 x batch/256 = 4.8, wd 1e-6, EMA
0.99 -> 1): 72.5% linear top-1. Its 1000-epoch preset (lr 0.2, wd 1.5e-6, EMA
0.996; 74.3%) is `--config.num_epochs=1000 --config.optim.lr=0.2
--config.optim.weight_decay=1.5e-6 --config.ema.base=0.996`. The host resizes images to 256 px (shorter side + centre
crop) so batches have static shapes; random resized crops to 224 are taken on
the accelerator from that 256 px image.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("byol", data_source="tfds", data_name="imagenet2012", global_size=224, channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.model.variant = "resnet50"
  c.model.small_stem = False
  c.model.dtype = "bfloat16"
  c.batch_size = 4096
  c.num_epochs = 300
  c.optim.name = "lars"
  c.optim.lr = 0.3
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 1e-6
  c.ema.base = 0.99
  c.eval.every_steps = 10 * 312
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
