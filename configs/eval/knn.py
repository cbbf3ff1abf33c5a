"""k-NN evaluation of one or more jssl runs on their own dataset.

  python -m jssl.evaluate --config=configs/eval/knn.py:runs/quickstart --workdir=runs/quickstart_eval

Reports, per run, DINO's protocol (L2-normalised features, cosine, exp(s/0.07)
vote, k = 10, 20, 100, 200) and the InstDisc/Lightly variant (k = 200, T = 0.1),
bank = the whole train split, queries = the test split, student "pre_logits".
For configs/quickstart.py (4400 steps) expect k = 20 accuracy around 0.86, and
0.857 for the raw pixels with `--config.network=pixels` (docs/fmnist.md). Add `--config.knn.euclidean=True` for the Euclidean
majority vote, `--config.network=teacher` or `--config.layer=stage3` for other
features; several runs: `:runs/a,runs/b`.
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  return eval_config.base(arg, evals="knn")
