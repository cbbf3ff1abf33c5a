"""BYOL, ResNet-18 (small-image stem), Fashion-MNIST.

  python -m jssl.main --config=configs/byol_resnet18_fmnist.py --workdir=runs/byol_r18_fmnist

100 epochs at batch 256 (23,400 steps). Needs a GPU to finish in reasonable time
(on a 2-core CPU use configs/quickstart.py). Raw pixels give ~85% k-NN; a
trained encoder should reach around 88-90% (k = 20, T = 0.07, test split).
LARS with the paper's lr 0.2 x batch/256 would overshoot on 60k images; we use
the paper's form with lr 1.0 and 10 warm-up epochs, wd 1.5e-6 (paper value).
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("byol", data_source="fashion_mnist", global_size=28, channels=1, small_images=True)
  c.model.variant = "resnet18"
  c.batch_size = 256
  c.num_epochs = 100
  c.optim.name = "lars"
  c.optim.lr = 1.0
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 1.5e-6
  c.ema.base = 0.99
  c.eval.every_steps = 2340
  return c
