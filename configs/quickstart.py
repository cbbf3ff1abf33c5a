"""Quickstart: BYOL with a tiny ResNet on Fashion-MNIST, sized for a 2-core CPU.

  python -m jssl.main --config=configs/quickstart.py --workdir=runs/quickstart

Prints the k-NN accuracy (DINO protocol: cosine, k = 20, T = 0.07) of the
random-init encoder and of the trained one, bank = 10,000 train images,
queries = the 10,000 test images. See README.md for measured numbers.
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
  c.eval.at_init = True
  c.eval.train_examples = 10000
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
