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
and a ViT. 5 epochs (1,170 steps), one view per image. In a 20-step probe on a busy 2-core
CPU the classifier ran at 170-210 images/s (so roughly 25-30 minutes for the 5 epochs; not
timed end to end) and reached a cross-entropy of 1.19 and 62% train accuracy by step 20:
most of the change from arbitrary to semantic labels happens in the first hundred steps,
hence the dense early checkpoints.

Final accuracy and the agreement of each checkpoint's predictions with the classes: not
measured yet.
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
