"""The evaluation program end to end on a real (tiny) checkpoint, its cache and its error sentences."""
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from jssl import evaluate, sharding
from jssl.evaluators import eval_config, feature_cache
from tests import recipes
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A 2-step tiny BYOL run (trained once for the whole module)."""
  config = tiny_config("byol")
  config.total_steps = 2
  return recipes.train_tiny_run(str(tmp_path_factory.mktemp("byol_run")), config)


def _config(run_dir, evals, cache_dir):
  c = eval_config.base(f"{run_dir},{run_dir}", evals=evals)
  c.cache_dir = cache_dir
  c.data.max_train_examples = 200
  c.data.max_test_examples = 100
  c.batch_size = 100
  c.knn.ks = (5, 20)
  c.knn.lightly = False
  c.linear.lrs, c.linear.wds, c.linear.epochs, c.linear.batch_size = (1e-2,), (0.0, 1e-3), 2, 64
  c.ensemble.epochs, c.ensemble.batch_size = 2, 64
  return c


def test_end_to_end_and_cache_reuse(run_dir, tmp_path, monkeypatch):
  mesh = sharding.make_mesh(1)
  cache = str(tmp_path / "cache")
  config = _config(run_dir, "knn,linear,ensemble", cache)
  rows = evaluate.run(config, str(tmp_path / "out"), mesh=mesh)
  metrics = [(r["evaluation"], r["metric"]) for r in rows]
  assert ("knn", "knn_k20_t0.07_cosine") in metrics
  assert ("linear", "linear_test_acc") in metrics
  for name in ("average", "concatenation", "learned (paper 001)"):
    assert ("ensemble", name) in metrics
  assert all(0.0 <= r["value"] <= 1.0 for r in rows)
  with open(tmp_path / "out" / "results.json") as f:
    saved = json.load(f)
  assert saved["results"][0]["protocol"]["k"] == 5 and saved["results"][0]["protocol"]["T"] == 0.07
  assert "| knn |" in (tmp_path / "out" / "results.md").read_text()
  # Same checkpoint twice: both members and their average/concatenation give the same neighbours.
  ens = {r["metric"]: r["value"] for r in rows if r["evaluation"] == "ensemble"}
  assert len(set(v for k, v in ens.items() if not k.startswith("learned"))) == 1
  # A second run reads every feature from the cache: the encoder must not run again.
  monkeypatch.setattr(feature_cache.features_lib, "extract", _fail)
  again = evaluate.run(_config(run_dir, "knn", cache), str(tmp_path / "out2"), mesh=mesh)
  assert again[0]["value"] == rows[0]["value"]


def _fail(*args, **kwargs):
  raise AssertionError("features were extracted again instead of read from the cache")


def test_missing_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match="No jssl checkpoint in"):
    evaluate.run(_config(str(tmp_path / "nope"), "knn", ""), str(tmp_path / "out"), mesh=sharding.make_mesh(1))


def test_unknown_layer_lists_valid_names(run_dir, tmp_path):
  config = _config(run_dir, "knn", str(tmp_path / "cache"))
  config.layer = "block_7"
  with pytest.raises(ValueError, match="not a layer of this model; valid names are .*pre_logits.*stage1"):
    evaluate.run(config, str(tmp_path / "out"), mesh=sharding.make_mesh(1))


def test_checkpoint_that_does_not_match_its_config(run_dir, tmp_path):
  broken = str(tmp_path / "broken")
  shutil.copytree(run_dir, broken)
  step_dir = os.path.join(broken, "checkpoints", sorted(os.listdir(os.path.join(broken, "checkpoints")))[-1])
  meta = os.path.join(step_dir, "config", "metadata")
  with open(meta) as f:
    saved = json.load(f)
  saved["byol"]["proj_dim"] = 8     # the saved weights have 16
  with open(meta, "w") as f:
    json.dump(saved, f)
  with pytest.raises(ValueError, match="does not match its own config"):
    evaluate.run(_config(broken, "knn", ""), str(tmp_path / "out"), mesh=sharding.make_mesh(1))


def test_missing_labels_sentence():
  fs = feature_cache.FeatureSet(np.zeros((3, 2), np.float32), None, 10, dict(split="unlabeled", data={}))
  with pytest.raises(ValueError, match="the linear probe needs labels"):
    feature_cache.require_labels(fs, "the linear probe")


def test_layer_specs():
  names = ["block_1", "block_2", "block_3", "cls", "pre_logits", "tokens"]
  assert feature_cache.resolve_layer("last_blocks:2", names) == ["block_2", "block_3"]
  assert feature_cache.resolve_layer("cls+tokens", names) == ["cls", "tokens"]
  with pytest.raises(ValueError, match="last 4 blocks"):
    feature_cache.resolve_layer("last_blocks:4", names)


def test_config_files_load():
  import importlib.util
  for name in ("knn", "linear", "ensemble"):
    spec = importlib.util.spec_from_file_location(name, f"configs/eval/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("runs/a,runs/b")
    assert isinstance(c, ml_collections.ConfigDict) and c.checkpoints == "runs/a,runs/b"
