"""Trains a recipe to the end and prints its k-NN accuracy next to raw pixels.

  python benchmarks/fmnist_recipe.py --config=configs/quickstart.py --workdir=runs/bench_quickstart
  python benchmarks/fmnist_recipe.py --config=configs/quickstart.py --workdir=runs/q_s1 --config.seed=1

The protocol is the one `python -m jssl.evaluate --config=configs/eval/knn.py:RUN`
reports: the student's pooled output ("pre_logits"), L2-normalised, cosine
similarity, k = 20, exp(s / 0.07) vote, bank = the whole train split, queries
= the held-out split. Raw pixels go through the same evaluation preprocessing
and the same k-NN. Prints one line per number and appends one JSON line with
the config overrides, the training time and both accuracies to --results, and
writes the run's summary.json as `python -m jssl.main` does.
"""
import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumes if it holds a checkpoint).")
_RESULTS = flags.DEFINE_string("results", "runs/fmnist_recipes.jsonl", "JSON lines file the result is appended to.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from jssl import logs, sharding, train, writers
  from jssl.evaluators import eval_config
  from jssl.evaluators import program as evaluate
  config = _CONFIG.value
  workdir = _WORKDIR.value
  logs.configure(log_file=os.path.join(workdir, logs.LOG_FILE))   # library INFO logs to the file only
  t0 = time.perf_counter()
  summary = train.train(config, workdir)
  wall = time.perf_counter() - t0
  writers.write_summary(workdir, summary)   # as jssl.main does: the run is finished
  ev = eval_config.base(workdir, evals="knn")
  ev.knn.ks, ev.knn.lightly = (20,), False
  ev.cache_dir = os.path.join(workdir, "bench_features")
  mesh = sharding.make_mesh()
  rows = evaluate.run(ev, os.path.join(workdir, "bench_eval"), mesh=mesh)
  ev.network = "pixels"
  pixel_rows = evaluate.run(ev, os.path.join(workdir, "bench_eval_pixels"), mesh=mesh)
  acc, pixels = rows[0]["value"], pixel_rows[0]["value"]
  name = os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"]))
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  print(f"{name} {' '.join(overrides)}")
  print(f"  k-NN (k=20, T=0.07, cosine, {rows[0]['protocol']['train']} bank): encoder {acc:.4f}, "
        f"raw pixels {pixels:.4f}; training {summary.get('train_seconds', float('nan')) / 60:.1f} min "
        f"(wall incl. compile and evals {wall / 60:.1f} min)", flush=True)
  os.makedirs(os.path.dirname(_RESULTS.value) or ".", exist_ok=True)
  with open(_RESULTS.value, "a") as f:
    f.write(json.dumps(dict(config=name, overrides=overrides, workdir=workdir, knn=acc, pixels=pixels,
                            train_seconds=summary.get("train_seconds"), wall_seconds=wall,
                            date=time.strftime("%Y-%m-%d"))) + "\n")


if __name__ == "__main__":
  app.run(main)
