"""MoCo v3 with a tiny ResNet on Fashion-MNIST, sized for a 2-core CPU.

  python -m jssl.main --config=configs/mocov3_resnet_tiny_fmnist.py --workdir=runs/mocov3_tiny

The quickstart's budget and choices (configs/quickstart.py: 3000 steps of batch
256, crops of 50-100%, the 7x7 stride-2 stem, AdamW 2e-3) with MoCo v3's
networks: the official ResNet heads narrowed to 512 -> 128 (2-layer projector,
2-layer predictor), tau 0.2 (the CO-SSL paper's MoCo v3 setting for ResNets;
the ImageNet preset's 1.0 is meant for batch 4096), momentum 0.99 -> 1, BYOL's
augmentations without blur. Prints the k-NN accuracy (cosine, k = 20, T = 0.07,
60,000-image bank) and the raw-pixel baseline on the same protocol (85.7% in
docs/fmnist.md). Accuracy and time: not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("mocov3", data_source="fashion_mnist", aug_recipe="byol", global_size=28, channels=1,
               small_images=True)
  c.model.variant = "resnet_tiny"
  c.model.small_stem = False      # 7x7 stride-2 stem + max-pool: fast on CPU
  c.mocov3.proj_hidden = 512
  c.mocov3.proj_dim = 128
  c.mocov3.pred_hidden = 512
  c.mocov3.temperature = 0.2
  c.aug.global_scale = (0.5, 1.0)
  c.batch_size = 256
  c.total_steps = 3000
  c.optim.name = "adamw"
  c.optim.lr = 2e-3
  c.optim.warmup_epochs = 0.2
  c.optim.weight_decay = 1e-4
  c.ema.base = 0.99
  c.eval.pixels_baseline = True
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500
  return c
