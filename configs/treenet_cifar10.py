"""TreeNet (32 leaves, dense join) with DINO on CIFAR-10: paper 000's recipe.

  python -m jssl.main --config=configs/treenet_cifar10.py --workdir=runs/treenet_cifar10

Needs CIFAR-10 as TFDS ArrayRecord. 32 leaf CNNs (2 x 2 convolutions 8-16-32-48-64,
Sec. 5.1) and a dense join (concatenation -> 3-layer MLP, 512-512-256; the paper does
not give its widths), DINO's loss and defaults (Sec. 3.4: "the default hyperparameters
from the existing DINO code base"): head 2048 hidden, 256 bottleneck, 65536 prototypes,
last layer frozen in epoch 1, teacher T 0.04, EMA 0.996 -> 1, two global crops
(40-100%) and DINO's 8 local crops (5-40%, at 16 px here), batch 384, lr 5e-4 (scaled by
batch / 256 as DINO's code does) with 10 warm-up epochs and cosine to 1e-6 (Sec. 5.1).
DINO's optimiser is AdamW with weight decay 0.04 -> 0.4 (Sec. 5.1 says "Adam"; plain
Adam is `--config.optim.weight_decay=0 --config.optim.weight_decay_end=0`). The paper
gives no epoch count; 100 is DINO's default. Paper (Table 1): 71.8% linear on the best
hidden layer; Fig. 4: 48 leaves 65.5% k-NN, 70.2% linear. Not measured yet.
"""
from jssl import config as cfg
from jssl.models import treenet


def get_config():
  # Optimiser, EMA, clipping and last-layer freezing: DINO's recipe (jssl.methods.treenet.training_defaults).
  c = cfg.base("treenet", data_source="tfds", data_name="cifar10", aug_recipe="dino", global_size=32, local_size=16,
               num_local=8, channels=3, small_images=True)
  c.model = treenet.model_config(num_leaves=32, join="dense", join_hidden_dim=512, join_dim=256)
  c.treenet.beta = 0.0
  c.batch_size = 384
  c.num_epochs = 100
  c.optim.lr = 5e-4
  c.optim.min_lr = 1e-6
  c.optim.warmup_epochs = 10.0
  c.eval.every_steps = 10 * 130
  return c
