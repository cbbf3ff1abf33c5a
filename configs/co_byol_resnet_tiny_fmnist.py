"""CO-BYOL with a tiny ResNet on Fashion-MNIST, sized for a 2-core CPU.

  python -m jssl.main --config=configs/co_byol_resnet_tiny_fmnist.py --workdir=runs/co_byol_tiny

The budget CO-BYOL, CO-DINO and dino_resnet_tiny_fmnist.py share (CO-MoCoV3 has since
taken the quickstart's intensity augmentation and 3600 steps): the quickstart's 3000
steps of batch 256, crops of 50-100%, AdamW, resnet_tiny with the 7x7 stride-2 stem
but without its max-pool
(model.stem_pool = False), so that 28 px images leave a 2 x 2 last-stage map: 4
local representations per view (with the max-pool it would be 1 x 1, and the local
term would only compare the pooled feature with itself). BYOL's heads narrowed to
512 -> 128, local heads 512 -> 128, w_s = 0.5, all positions. The BYOL baseline on
exactly this budget is `--config.co_byol.w_s=0` (tests/test_co_ssl.py checks that
w_s = 0 is BYOL's step). Prints the k-NN accuracy (cosine, k = 20, T = 0.07,
60,000-image bank) and the raw-pixel baseline on the same protocol (85.7% in
docs/fmnist.md). Accuracy and time: not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("co_byol", data_source="fashion_mnist", aug_recipe="byol", global_size=28, channels=1,
               small_images=True)
  c.model.variant = "resnet_tiny"
  c.model.small_stem = False
  c.model.stem_pool = False       # 2 x 2 local map at 28 px
  c.byol.proj_hidden = 512
  c.byol.proj_dim = 128
  c.byol.pred_hidden = 512
  c.co_byol.local_proj_hidden = 512
  c.co_byol.local_pred_hidden = 512
  c.co_byol.w_s = 0.5
  c.co_byol.local_grid = 0        # all 2 x 2 positions
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
