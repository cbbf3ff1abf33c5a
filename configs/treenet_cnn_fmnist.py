"""The parameter-matched single-CNN baseline of configs/treenet_fmnist.py (paper 000, Sec. 3.2.3).

  python -m jssl.main --config=configs/treenet_cnn_fmnist.py --workdir=runs/treenet_cnn_fmnist

configs/treenet_fmnist.py (same DINO recipe, head, crops, batch and steps) with one
leaf whose convolutions are 3.97x wider (32-64-127-191-254) and the same dense join:
a DenseJoin TreeNet with a single leaf, as the paper's baseline CNNs are. Its encoder
has 469,728 parameters against the 8-leaf TreeNet's 468,800 (`width` from
`jssl.models.treenet.matched_width`; print both with
`python -m jssl.models.treenet configs/treenet_fmnist.py configs/treenet_cnn_fmnist.py`).
Its convolutions cost about twice the TreeNet's per image. Prints the k-NN accuracy
(teacher encoder output, cosine, k = 20, T = 0.07) and the raw-pixel baseline (85.7%).
This recipe is not measured end to end; docs/treenet.md compares a CPU-sized version
(benchmarks/treenet_fmnist.sh).
"""
import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "treenet_fmnist.py")
  spec = importlib.util.spec_from_file_location("treenet_fmnist", path)
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  c = base.get_config()
  c.model.num_leaves = 1
  c.model.width = 3.97
  return c
