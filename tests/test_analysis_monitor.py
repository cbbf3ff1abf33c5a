"""The training-time clustering analysis on a tiny real VICReg / RES-L-H run, and its plots."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jssl import config as cfg
from jssl.evaluators import analysis_monitor
from tests import recipes

LAYERS = ("stem", "block_1", "block_2")
LABELS = ("classes", "superclasses")


def _config():
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
  return c


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("analysis_run")), _config())


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
        assert row[f"analysis/{layer}/{labels}/cdnv"] > 0
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
  assert names == ["epochs_classes.png", "epochs_superclasses.png", "layers_classes.png", "layers_final.png",
                   "layers_superclasses.png", "mine.png", "ratio_superclasses_classes.png"]
  for name in names:
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
