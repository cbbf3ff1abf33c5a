"""Linear probe (plus k-NN) of one or more jssl runs, hyperparameters chosen on validation.

  python -m jssl.evaluate --config=configs/eval/linear.py:runs/quickstart --workdir=runs/quickstart_linear

A softmax classifier (optax Adam, cosine-decayed lr, 30 epochs, batch 256) on
standardised frozen features; lr in {1e-3, 3e-3, 1e-2, 3e-2} x weight decay in
{0, 1e-4, 1e-3} is chosen on a stratified 10% validation split of train, the
best pair is retrained on all of train and scored once on test. Candidate
layers (`--config.linear.layers=stage3,pre_logits`) are also chosen on
validation. `--config.linear.backend=sklearn_logreg` (or sklearn_svc) sweeps C
instead, for small data. For the quickstart run trained 600 steps (--config.total_steps=600) expect about 0.76 test
accuracy, on par with its k-NN number (measured: docs/evaluation.md).
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  c = eval_config.base(arg, evals="knn,linear")
  c.knn.ks = (20,)
  c.knn.lightly = False
  return c
