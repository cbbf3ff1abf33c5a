"""The training-time clustering analysis on a tiny real VICReg / RES-L-H run, and its plots.

The run tracks every kind of label set: classes, superclasses, the sample-level set and the
random targets of a tiny supervised run's two checkpoints (steps 0 and 2)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flax import nnx

from jssl import checkpoint, sharding
from jssl import config as cfg
from jssl.data import multicrop, sources
from jssl.evaluators import analysis, analysis_monitor, label_sets, sample_level
from tests import recipes

LAYERS = ("stem", "block_1", "block_2")
LABELS = ("classes", "superclasses", "samples", "predicted@0", "predicted@2")
SUPERVISED = os.path.join(recipes.ROOT, "configs", "supervised_res_lh_fmnist.py")


def _supervised_config():
  c = recipes.load(SUPERVISED)
  c.model.update(depth=1, width=8)
  c.batch_size, c.total_steps = 16, 2
  c.num_devices, c.probe.enabled, c.eval.pixels_baseline = 1, False, False
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.log_every_steps, c.checkpoint_every_steps = 2, 100
  c.checkpoint_steps, c.keep_checkpoints = "0", 2   # the untrained classifier and the last step
  return c


def _config(supervised_dir=None):
  c = cfg.base("vicreg", aug_recipe="byol", global_size=28, channels=1, small_images=True)
  c.model.update(name="res_lh", depth=2, width=8)
  c.vicreg.expander_hidden, c.vicreg.expander_dim, c.vicreg.expander_layers = 32, 16, 2
  c.data.train_split = "train[:64]"   # 4 steps per epoch at batch 16
  c.batch_size, c.total_steps, c.optim.warmup_epochs = 16, 5, 0.0
  c.eval.train_examples, c.eval.test_examples, c.eval.batch_size = 64, 32, 64
  c.log_every_steps = c.checkpoint_every_steps = 5
  c.num_devices, c.probe.enabled = 1, False   # compiles faster; the hook does not depend on either
  c.analysis.every_epochs = 0.5
  c.analysis.layers = ",".join(LAYERS)
  c.analysis.max_train_examples, c.analysis.max_test_examples = 48, 40
  c.analysis.mine = True
  c.analysis.mine_examples, c.analysis.mine_seeds, c.analysis.mine_steps = 32, 2, 20
  c.analysis.mine_hidden, c.analysis.mine_pca_dim = 16, 8
  if supervised_dir:
    c.analysis.labels = f"classes,superclasses,samples,predicted:{supervised_dir}@all"
    c.analysis.samples.update(images=4, train_augs=3, test_augs=2, seed=1)
  return c


@pytest.fixture(scope="module")
def supervised_dir(tmp_path_factory):
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("analysis_targets")), _supervised_config())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, supervised_dir):
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("analysis_run")), _config(supervised_dir))


def _last_analysis_row(run_dir):
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "analysis/epoch" in r][-1]


def _pooled(setup, params, stats, x, layer):
  _, inter = nnx.merge(setup.encoder_def, params, stats)(x, train=False)
  return np.asarray(inter[layer]).mean(axis=(1, 2))


def test_sample_level_metrics_equal_a_recomputation_from_the_checkpoint(run_dir):
  row = _last_analysis_row(run_dir)   # the end of training: the state of the last checkpoint
  config, setup, state = checkpoint.load_pretrained(run_dir, mesh=sharding.make_mesh(1))
  images, _ = sources.load_arrays(config.data, config.data.train_split)
  chosen = np.asarray(images)[sample_level.choose(len(images), 4, 1)]
  xtr, ytr, xte, yte = sample_level.views(chosen, seed=1, train_augs=3, test_augs=2, aug=config.aug)
  assert (len(xtr), len(xte)) == (12, 8) and sorted(set(ytr)) == [0, 1, 2, 3]
  params, stats = setup.encoder_params(state, "student")
  for layer in LAYERS:
    want = analysis.analyse(_pooled(setup, params, stats, xtr, layer), ytr, _pooled(setup, params, stats, xte, layer),
                            yte, num_classes=4)
    for metric in analysis_monitor.METRICS:
      assert row[f"analysis/{layer}/samples/{metric}"] == pytest.approx(want[metric], rel=1e-4, abs=1e-6), metric


def test_random_targets_are_the_classifier_predictions_on_the_subsets(run_dir, supervised_dir):
  row = _last_analysis_row(run_dir)
  c = _config(supervised_dir)
  for split, size, which in ((c.data.train_split, 48, "train"), (c.data.eval_split, 40, "test")):
    images, classes = analysis_monitor._subset(c.data, split, size)
    for step in (0, 2):
      sup_config, setup, state = checkpoint.load_pretrained(supervised_dir, step=step, mesh=sharding.make_mesh(1))
      params, stats = setup.encoder_params(state, "student")
      x = np.asarray(multicrop.eval_preprocess(images, sup_config.aug))
      _, inter = nnx.merge(setup.encoder_def, params, stats)(x, train=False)
      predicted = label_sets.predicted_labels(inter["logits"])
      assert row[f"analysis_targets/predicted@{step}/agreement_{which}"] == pytest.approx(
          np.mean(predicted == classes))
      assert row[f"analysis_targets/predicted@{step}/majority_{which}"] == pytest.approx(
          np.bincount(predicted).max() / len(predicted))
  assert (row["analysis_targets/predicted@0/randomness"], row["analysis_targets/predicted@2/randomness"]) == (1, 0)


def test_training_time_label_sets_fail_with_one_sentence(supervised_dir):
  bad = _config()
  bad.analysis.labels = f"predicted:{supervised_dir}@7,classes"
  with pytest.raises(ValueError, match=r"asks for step 7, but .* has checkpoints at steps \[0, 2\] only"):
    analysis_monitor.AnalysisMonitor(bad, None, None, steps_per_epoch=1, state=None)
  bad.analysis.labels = f"classes,predicted:{supervised_dir}@0,predicted:{supervised_dir}_other@0"
  with pytest.raises(ValueError, match="names 2 supervised runs"):
    analysis_monitor.AnalysisMonitor(bad, None, None, steps_per_epoch=1, state=None)


def test_hook_writes_every_layer_and_label_set_at_its_steps(run_dir):
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  analysed = [r for r in rows if "analysis/epoch" in r]
  assert [r["step"] for r in analysed] == [0, 2, 4, 5]   # step 0, every half epoch, the end
  assert [r["analysis/epoch"] for r in analysed] == [0.0, 0.5, 1.0, 1.25]
  for row in analysed:
    keys = {k for k in row if k.startswith("analysis/") and k != "analysis/epoch"}
    assert keys == ({f"analysis/{layer}/{labels}/{m}" for layer in LAYERS for labels in LABELS
                     for m in analysis_monitor.METRICS}
                    | {f"analysis/{layer}/mine_ixz{s}" for layer in LAYERS for s in ("", "_std")})
    for layer in LAYERS:
      for labels in LABELS:
        assert 0.0 <= row[f"analysis/{layer}/{labels}/ncc_test"] <= 1.0
        cdnv = row[f"analysis/{layer}/{labels}/cdnv"]
        # an untrained classifier may predict one class for every image: no class pair, no CDNV
        assert cdnv > 0 or (labels.startswith("predicted@") and np.isnan(cdnv))
      assert np.isfinite(row[f"analysis/{layer}/mine_ixz"]) and row[f"analysis/{layer}/mine_ixz_std"] >= 0
  assert all("loss" not in r for r in analysed)   # own rows, the training rows stay as they were
  assert os.listdir(os.path.join(run_dir, "tb"))


def test_hook_is_off_by_default_and_checks_label_sets():
  c = cfg.base("vicreg", aug_recipe="byol")
  assert c.analysis.every_epochs == 0
  assert not analysis_monitor.AnalysisMonitor(c, None, None, steps_per_epoch=1, state=None).due(0)
  bad = _config()
  bad.analysis.labels = "classes,coarse"
  with pytest.raises(ValueError, match="config.analysis.labels"):
    analysis_monitor.AnalysisMonitor(bad, None, None, steps_per_epoch=1, state=None)


def test_plot_command_writes_pngs(run_dir, tmp_path):
  out = subprocess.run([sys.executable, "-m", "jssl.evaluators.analysis_plots", f"--workdir={run_dir}",
                        f"--out={tmp_path}"], capture_output=True, text=True, check=True)
  names = sorted(os.path.basename(p) for p in out.stdout.split())
  assert names == ["epochs_classes.png", "epochs_samples.png", "epochs_superclasses.png", "layers_classes.png",
                   "layers_final.png", "layers_samples.png", "layers_superclasses.png", "loss_terms.png", "mine.png",
                   "normalized.png",
                   "random_targets.png", "ratio_classes_predicted@0.png", "ratio_samples_classes.png",
                   "ratio_superclasses_classes.png"]
  for name in names:
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
