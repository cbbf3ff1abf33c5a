"""BYOL with a tiny ResNet on Fashion-MNIST, sized for a 2-core CPU.

  python -m jssl.main --config=configs/byol_resnet_tiny_fmnist.py --workdir=runs/byol_tiny

2000 steps at batch 128 (about 4 minutes on an idle 2-core CPU). It does NOT
yet beat raw pixels: 79.8% k-NN (cosine, k = 20, T = 0.07, 60,000-image bank)
against 85.7% for the preprocessed pixels on the same protocol, and longer
training plateaus (81.6% at 5000 steps); SimCLR at the same number of images
reaches 81-83% (docs/fmnist.md has the sweep). Prints the raw-pixel baseline
next to its own number.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("byol", data_source="fashion_mnist", global_size=28, channels=1, small_images=True)
  c.model.variant = "resnet_tiny"
  c.model.small_stem = False      # stride-2 stem: 4x fewer activations, fast on CPU
  c.byol.proj_hidden = 512
  c.byol.proj_dim = 128
  c.byol.pred_hidden = 512
  c.batch_size = 128
  c.total_steps = 2000
  c.optim.name = "adamw"
  c.optim.lr = 2e-3
  c.optim.warmup_epochs = 0.2
  c.optim.weight_decay = 1e-4
  c.ema.base = 0.99
  c.eval.pixels_baseline = True
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
