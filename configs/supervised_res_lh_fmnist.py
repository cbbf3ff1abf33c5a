"""A supervised RES-L-H classifier on Fashion-MNIST: the generator of paper 004's random
targets of graded randomness.

  python -m jssl.main --config=configs/supervised_res_lh_fmnist.py --workdir=runs/supervised_res_lh
  python -m jssl.evaluate --config=configs/eval/analysis.py:runs/vicreg_res_lh \
      --config.analysis.labels=classes,predicted:runs/supervised_res_lh@all --workdir=runs/random_targets

Paper 004 (section 5, appendix B.5) trains a classifier on the same data and uses its
class predictions at several points of its training as targets: the untrained network
gives deterministic but nearly arbitrary labels (randomness 1), the trained one nearly
the true classes (randomness 0). This recipe trains that classifier (jssl/methods/
supervised.py: encoder + linear head, softmax cross-entropy, one crop-and-flip view)
and keeps checkpoints at log-spaced steps from 0 (the untrained state) on, because a
classifier's predictions change fastest early. The analysis evaluation turns each kept
checkpoint into a label set `predicted:RUN@STEP` (`@all`: every kept step) and reports
how often those labels agree with the true classes (docs/evaluation.md, "Random targets").

The backbone and optimiser are configs/vicreg_res_lh_fmnist.py's (RES-4-64, AdamW lr 1e-3,
weight decay 1e-4, cosine, batch 256), so the targets come from the architecture family
the SSL runs use; the paper's target networks are a ResNet-18 (Adam, lr 0.05, cosine)
and a ViT. 5 epochs (1,170 steps), one view per image.

Measured (2-core CPU shared with other jobs, 2026-12-01, the first command above): 931 s
of training (about 390 images/s), final k-NN 88.63% (the trainer's protocol: cosine,
k 20, T 0.07, 60k bank; raw pixels 85.69%), online probe 86%. Agreement of each kept
checkpoint's predictions with the true classes, on the analysis hook's fixed subsets
(5,000 train / 2,000 test images), and the paper's randomness 1 - STEP / 1170:

  step        0     5     10    20    50    100   200   500   1000  1170
  randomness  1.00  0.996 0.991 0.983 0.957 0.915 0.829 0.573 0.145 0
  agreement   0.10  0.10  0.10  0.20  0.70  0.77  0.77  0.80  0.88  0.88   (test; train within 0.015)

So the untrained network's labels are as good as arbitrary (chance 0.10) and most of the
change to semantic labels happens between steps 10 and 50; the "randomness" axis of the
paper is a training-time fraction, not a measure of how arbitrary the labels are.
"""
from jssl import config as cfg

DEPTH, WIDTH = 4, 64


def get_config():
  c = cfg.base("supervised", data_source="fashion_mnist", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=DEPTH, width=WIDTH)
  c.supervised.num_classes = 10
  c.aug.global_scale = (0.5, 1.0)
  c.batch_size = 256
  c.num_epochs = 5
  c.optim.update(name="adamw", lr=1e-3, weight_decay=1e-4, momentum=0.9, warmup_epochs=0.0, min_lr=0.0)
  c.eval.pixels_baseline = True
  c.log_every_steps = 20
  # Log-spaced targets from the untrained network on; 500 and 1000 come from checkpoint_every_steps
  # and the last step is always saved: 10 checkpoints, all kept.
  c.checkpoint_steps = "0,5,10,20,50,100,200"
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 12
  return c
