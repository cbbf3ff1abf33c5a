"""Gradient descent at inference time (paper 001) over several jssl runs, against its baselines.

  for s in 0 1 2; do python -m jssl.main --config=configs/quickstart.py --workdir=runs/seed$s \
      --config.seed=$s --config.total_steps=600; done
  python -m jssl.evaluate --config=configs/eval/ensemble.py:runs/seed0,runs/seed1,runs/seed2 \
      --workdir=runs/ensemble

Caches each run's student "pre_logits" features of Fashion-MNIST train and test,
then reports k-NN accuracy (cosine, k = 20, T = 0.07, bank = train, queries =
test) of each member alone, their average, their concatenation and the learned
representation (2-layer MLP per member, cosine loss, Adam 3e-4, batch 256, 50
epochs with MLP-only warm-up for the first 25; test representations learned
with the MLPs frozen). One run alone works too. Transfer mode:
`--config.data.source=digits --config.ensemble.transfer_source=fashion_mnist`
trains the MLPs on Fashion-MNIST and learns digits representations. Measured
numbers are in docs/evaluation.md.
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  c = eval_config.base(arg, evals="ensemble")
  return c
