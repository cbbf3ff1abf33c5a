"""Clustering analysis (paper 004) of one or more finished jssl runs.

  python -m jssl.evaluate --config=configs/eval/analysis.py:runs/vicreg --workdir=runs/vicreg_analysis

Reports, for the student's "pre_logits" and under the dataset's classes and (on
Fashion-MNIST) its four superclasses (jssl/evaluators/label_sets.py): NCC train and
test accuracy with the train split's class centres, CDNV, the average class variance
and the average squared distance between class means (on train), the linear probe's
test accuracy (configs/eval/linear.py's protocol) and the ratio NCC test / linear test.
Every block of a RES-L-H run: `--config.analysis.layers=block_1,block_2,...`; without
the probe: `--config.analysis.linear=False`. With `--config.analysis.mine=True`, also
MINE's I(input; layer) in nats (jssl/evaluators/mine.py; 5 seeds, 2,000 train images).

Random targets of graded randomness (paper 004, section 5): train a classifier with
configs/supervised_res_lh_fmnist.py, then add its predictions as label sets,
`--config.analysis.labels=classes,predicted:runs/supervised_res_lh@all` (or `@STEP` for
one checkpoint). Each such set reports its randomness (1 - STEP / the run's last step)
and its agreement with the true classes ("agreement_train", "agreement_test"), then
every metric above (docs/evaluation.md, "Random targets").

Sample-level labels (paper 004, section 4): `--config.analysis.labels=classes,samples`
adds the label set "samples": `analysis.samples.images` (500) train images drawn with
`analysis.samples.seed`, each its own class, `analysis.samples.train_augs` (100) views of
each by the checkpoint's own training augmentation (its first global view's settings, no
local views) as the train set and `analysis.samples.test_augs` (20) other views as the
test set (jssl/evaluators/sample_level.py; docs/evaluation.md, "Sample-level labels").
At these defaults a tiny RES-L-H (depth 2, width 8) encodes the 60,000 views in about
11 s on 2 CPU cores; the 500-class linear probe then takes about 2 minutes.
"""
from jssl.evaluators import eval_config


def get_config(arg=None):
  c = eval_config.base(arg, evals="analysis")
  c.analysis.labels = "classes,superclasses"
  c.analysis.linear = True
  return c
