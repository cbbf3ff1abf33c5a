"""CO-MoCoV3 with a tiny ResNet on Fashion-MNIST, sized for a 2-core CPU.

  python -m jssl.main --config=configs/co_mocov3_resnet_tiny_fmnist.py --workdir=runs/co_mocov3_tiny

The shared budget of the CO-SSL tiny recipes (configs/co_byol_resnet_tiny_fmnist.py:
3000 steps of batch 256, crops of 50-100%, AdamW 2e-3, resnet_tiny without the stem
max-pool, so 2 x 2 local representations per view) with MoCo v3's networks as in
configs/mocov3_resnet_tiny_fmnist.py (heads 512 -> 128, tau 0.2, the CO-SSL paper's
MoCo v3 setting for ResNets, momentum 0.99 -> 1) plus local heads 512 -> 128 and
w_s = 0.5. The MoCo v3 baseline on exactly this budget is `--config.co_mocov3.w_s=0`.
Prints the k-NN accuracy (cosine, k = 20, T = 0.07, 60,000-image bank) and the
raw-pixel baseline (85.7% in docs/fmnist.md). Accuracy and time: not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("co_mocov3", data_source="fashion_mnist", aug_recipe="byol", global_size=28, channels=1,
               small_images=True)
  c.model.variant = "resnet_tiny"
  c.model.small_stem = False
  c.model.stem_pool = False       # 2 x 2 local map at 28 px
  c.mocov3.proj_hidden = 512
  c.mocov3.proj_dim = 128
  c.mocov3.pred_hidden = 512
  c.mocov3.temperature = 0.2
  c.co_mocov3.local_proj_hidden = 512
  c.co_mocov3.local_pred_hidden = 512
  c.co_mocov3.w_s = 0.5
  c.co_mocov3.local_grid = 0
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
