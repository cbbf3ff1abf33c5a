"""MoCo v3, ViT-S/16, ImageNet-1k, 300 epochs, batch 4096, frozen random patch projection.

  python -m jssl.main --config=configs/mocov3_vits16_imagenet.py --workdir=gs://bucket/mocov3_vits16

Needs ImageNet as TFDS ArrayRecord (data_dir in --config.data.data_dir). The
official ViT-Small recipe (CONFIG.md): AdamW lr 1.5e-4 x batch/256 with 40
warm-up epochs then cosine, weight decay 0.1, tau 0.2, momentum 0.99 -> 1
(cosine), BYOL's augmentations with crops of 8-100%, a 3-layer projector and a
2-layer predictor (4096 -> 256, BatchNorm on every layer), and the patch
projection left at its random initialisation for the whole run (the paper's
stability trick, the code's --stop-grad-conv1): 73.2% linear top-1 at batch
4096 (the code's 1024-batch variant is `--config.batch_size=1024`). Not
measured with jssl yet. Differences from the official ViT that remain: jssl's
position embedding is learned (the code's is a fixed 2-D sin-cos one), the
frozen patch projection has jssl's LeCun-normal initialisation (the code's is
Xavier-uniform), and weight decay skips biases and norms (the code's AdamW
decays every parameter).
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("mocov3", data_source="tfds", data_name="imagenet2012", aug_recipe="byol", global_size=224, channels=3,
               small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.model.name = "vit"
  c.model.variant = "S/16"
  c.model.image_size = 224
  c.model.pool = "cls"
  c.model.drop_path = 0.0
  c.model.dtype = "bfloat16"
  c.mocov3.proj_layers = 3          # MoCo_ViT heads of the official code (as the paper describes)
  c.mocov3.pred_last_bn = True
  c.mocov3.temperature = 0.2
  c.batch_size = 4096
  c.num_epochs = 300
  c.optim.name = "adamw"
  c.optim.lr = 1.5e-4
  c.optim.min_lr = 0.0
  c.optim.warmup_epochs = 40
  c.optim.weight_decay = 0.1
  # Random patch projection: frozen for the whole run (raise freeze_epochs with num_epochs).
  c.optim.frozen = "^encoder/patch_embed/"
  c.optim.freeze_epochs = float(c.num_epochs)
  c.ema.base = 0.99
  c.eval.every_steps = 10 * 312
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
