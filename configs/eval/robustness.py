"""Robustness of a run's representations (paper 003, CO-SSL, Tables 3 and 4).

  python -m jssl.evaluate --config=configs/eval/robustness.py:runs/byol_tiny --workdir=runs/byol_tiny_robustness

A linear probe (configs/eval/linear.py's protocol) is trained once on clean
"pre_logits" features of the train split, then classifies the test split under the
seven ImageNet-C noise and blur corruptions at severities 1-5 (jssl/data/corruptions.py;
blur lengths scaled to the image side, at least one pixel), with 50-90% of the
"local" representations dropped before pooling (5 draws each), and under Table 4's
eight PGD L-inf attacks on encoder + probe. results.md holds Tables 3 and 4 (mean
over severities; mean over dropped fractions), accuracy per severity, every number
as a row, and a PNG per run: accuracy against severity, dropped fraction and eps.

Several runs side by side (one table row each): `:runs/byol,runs/co_byol`. On a CPU,
a few hundred test images keep it to minutes: `--config.robustness.max_examples=500`.
Fewer passes: `--config.robustness.corruptions=gaussian_noise,defocus_blur`,
`--config.robustness.attacks=0.01:40:5`, `--config.robustness.mask_drops=""`.
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  return eval_config.base(arg, evals="robustness")
