"""SOVE, a mini ViT sized for a 2-core CPU: 7x7 patches, width 128, 4 blocks, Fashion-MNIST.

  python -m jssl.main --config=configs/sove_vit_mini_fmnist.py --workdir=runs/sove_vitm_fmnist

Sized for this machine (docs/fmnist.md): ViT-Ti/4 with 2 x 28 px + 4 x 12 px crops is
1.58 TFLOP and about 30 s per step of 256 images on 2 cores, so 30 minutes buy a quarter
of an epoch. This mini ViT (patch 7: a 4 x 4 grid of 16 tokens on 28 px, 2 x 2 on the 14
px local crops; width 128, 4 heads, 4 blocks, MLP 512) takes about 1.4 s per DINO step
(this method's step costs more: its masked student pass). The head is scaled with it
(hidden 512, embedding width 128). Scaled-down SOVE as in
configs/sove_vit_tiny_fmnist.py (our choice for 60k images and 10 classes): E_C 4096 and
E_P 1024, K = 1024 anchors, k = 8 neighbours, K-dot = 256, one [CLS] and one patch task
per step; the 4 x 4 patch grid masked blockwise at 0.3 (the paper's ratio). Data: the
quickstart's intensity recipe for 28 px grayscale images (global crops 50-100%,
brightness/contrast 0.8 on every view, solarize 20% on both global views, no grayscale:
a no-op on 1 channel), local crops 20-50%. Optimiser: DINO's AdamW recipe (METHODS.md:
wd 0.04 -> 0.4, each tensor clipped to 3.0, cosine to 1e-6) with its epoch-long warm-ups
shortened to fit a run of a few epochs, lr 1e-3 x batch/256 and EMA 0.99 -> 1 (0.996
suits hundreds of epochs, not five). The shortened schedules are our choice for this
budget, not the paper's. k-NN on the teacher's [CLS].
"""
from jssl import config as cfg   # cfg.fmnist_vit_mini: the part all three mini-ViT recipes share


def get_config():
  c = cfg.fmnist_vit_mini("sove")
  c.sove.update(hidden_dim=512, out_dim=128, cls_bank_size=4096, patch_bank_size=1024, num_anchors=1024,
                num_patch_anchors=256, num_tasks=1, num_patch_tasks=1)
  return c
