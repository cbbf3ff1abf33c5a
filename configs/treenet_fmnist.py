"""TreeNet (8 leaves, dense join) with DINO on Fashion-MNIST: jssl's smallest TreeNet recipe (hours on a 2-core CPU).

  python -m jssl.main --config=configs/treenet_fmnist.py --workdir=runs/treenet_fmnist

Paper 000's method on a CPU budget: 8 leaf CNNs (2 x 2 convolutions 8-16-32-48-64,
Sec. 5.1) run as one grouped network, a dense join (concatenation -> 3-layer MLP,
256-256-128), DINO's loss on the join's output with a small head (256 hidden, 64
bottleneck, 1024 prototypes), two 28 px global crops of 50-100%, no local crops.
DINO's recipe (AdamW, wd 0.04 -> 0.4, per-tensor clipping at 3.0, last layer frozen in
epoch 1, teacher T 0.04, k-NN on the teacher) with lr 5e-4, 0.5 warm-up epochs and
EMA 0.99 -> 1 for the short run. The parameter-matched single CNN on the same budget is
configs/treenet_cnn_fmnist.py; compare their sizes with
`python -m jssl.models.treenet configs/treenet_fmnist.py configs/treenet_cnn_fmnist.py`.
Prints the k-NN accuracy (teacher encoder output, cosine, k = 20, T = 0.07, 60,000-image
bank) and the raw-pixel baseline (85.7% in docs/fmnist.md). This recipe as it stands is
not measured end to end: one step took 8.4 s on the idle 2-core CPU (batch 128, 205 GFLOP
per step), so 1000 steps are hours here. docs/treenet.md compares TreeNets and the
matched CNN on a CPU-sized version of it (narrower leaves, batch 64, 500 steps;
benchmarks/treenet_fmnist.sh).
"""
from jssl import config as cfg
from jssl.models import treenet


def get_config():
  # Optimiser, EMA, clipping and last-layer freezing: DINO's recipe (jssl.methods.treenet.training_defaults).
  c = cfg.base("treenet", data_source="fashion_mnist", aug_recipe="dino", global_size=28, channels=1,
               small_images=True)
  c.model = treenet.model_config(num_leaves=8, join="dense", join_hidden_dim=256, join_dim=128)
  c.treenet.beta = 0.0
  c.dino.hidden_dim = 256
  c.dino.bottleneck_dim = 64
  c.dino.out_dim = 1024
  c.aug.global_scale = (0.5, 1.0)
  c.batch_size = 128
  c.total_steps = 1000
  c.optim.lr = 5e-4
  c.optim.warmup_epochs = 0.5
  c.ema.base = 0.99
  c.eval.pixels_baseline = True
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500
  return c
