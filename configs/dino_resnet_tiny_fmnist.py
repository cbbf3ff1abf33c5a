"""DINO with a tiny ResNet on Fashion-MNIST (two global crops), sized for a 2-core CPU.

  python -m jssl.main --config=configs/dino_resnet_tiny_fmnist.py --workdir=runs/dino_tiny

The DINO baseline of configs/co_dino_resnet_tiny_fmnist.py on the shared budget of
the CO-SSL tiny recipes (3000 steps of batch 256, crops of 50-100%, resnet_tiny
without the stem max-pool). DINO's recipe (AdamW, wd 0.04 -> 0.4, per-tensor
clipping at 3.0, last layer frozen during epoch 1, teacher T 0.04, center momentum
0.9, k-NN on the teacher) with a smaller head (512 hidden, 128 bottleneck, 1024
prototypes), lr 5e-4 with 0.5 warm-up epochs and EMA 0.99 -> 1 for the short run.
DINO-mc (the paper's multi-crop baseline) is `--config.aug.num_local=4
--config.aug.local_size=12`. Prints the k-NN accuracy (cosine, k = 20, T = 0.07,
60,000-image bank) and the raw-pixel baseline (85.7% in docs/fmnist.md). Accuracy
and time: not measured yet.
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA, clipping and last-layer freezing: DINO's recipe (jssl.methods.dino.training_defaults).
  c = cfg.base("dino", data_source="fashion_mnist", global_size=28, channels=1, small_images=True)
  c.model.variant = "resnet_tiny"
  c.model.small_stem = False
  c.model.stem_pool = False
  c.dino.hidden_dim = 512
  c.dino.bottleneck_dim = 128
  c.dino.out_dim = 1024
  c.aug.global_scale = (0.5, 1.0)
  c.batch_size = 256
  c.total_steps = 3000
  c.optim.lr = 5e-4
  c.optim.warmup_epochs = 0.5
  c.ema.base = 0.99
  c.eval.pixels_baseline = True
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500
  return c
