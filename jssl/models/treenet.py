"""TreeNet (paper 000): m leaf CNNs and a join that aggregates their outputs.

The encoder is z_j = f_j(x) for the m leaves (jssl.models.leaf_cnn, run as one grouped
network) and Z = A(z_1, ..., z_m) (Sec. 3, steps 3-4). Z is the encoder output, what
the method's head and loss see. Configured by (`model_config()` gives the defaults)

  cfg.name = "treenet"
  cfg.num_leaves = 32          # m
  cfg.channels = (8, 16, 32, 48, 64)   # the leaf convolutions (Sec. 5.1)
  cfg.width = 1.0              # multiplies `channels` (rounded): the wider single-CNN baselines
  cfg.kernel_size = 2
  cfg.leaf_hidden_dim = 64     # H, the leaf's hidden dense layer (not given in the paper)
  cfg.leaf_out_dim = 64        # D, a leaf's output (not given in the paper)
  cfg.join = "dense"           # average | dense | attention | max (Sec. 3.2.2)
  cfg.join_hidden_dim = 512    # dense join: widths of its two hidden layers
  cfg.join_dim = 256           # dense join: output width
  cfg.num_heads = 4            # attention join
  cfg.dtype = "float32"        # compute dtype of convolutions and dense layers

Joins, [B, m, D] -> [B, out_dim]:
  average    mean over leaves (out_dim D).
  max        element-wise max over leaves (out_dim D; the paper found it poor).
  dense      the concatenation [B, m D] through a 3-layer MLP, dense -> ReLU -> dense ->
             ReLU -> dense, widths join_hidden_dim, join_hidden_dim, join_dim.
  attention  one multi-head self-attention layer (num_heads heads, q/k/v/out width D, with
             biases, no position embedding, no residual) over the m leaf outputs as tokens,
             then the mean over the m attended tokens (out_dim D). The paper says "a single
             layer of multi-head attention" and that it allows variable numbers of leaves;
             without position embeddings it does, and the mean makes it leaf-order invariant.
Average, max and attention are invariant to the order of the leaves; dense is not.

The parameter-matched single-CNN baseline of Sec. 3.2.3 is `num_leaves = 1`,
`join = "dense"`, and a `width` that `matched_width` picks; `param_table` prints the
parameter counts side by side (`python -m jssl.models.treenet CONFIG.py ...`).

Intermediates (float32), for methods and evaluators:
  "leaves" [B, m, D], "leaf_hidden" [B, m, H], "leaf_pooled" [B, m, C_last] (the spatial
  mean of the last convolution), their concatenations over leaves "leaves_concat",
  "leaf_hidden_concat", "leaf_pooled_concat" ([B, m x ...], for k-NN and linear probes),
  each leaf's own "leaf_{j}" [B, D], "leaf_hidden_{j}" [B, H], "leaf_pooled_{j}" [B, C_last]
  for j = 0 .. m - 1 (`LEAF_LAYERS`; slices that XLA drops when nothing reads them),
  the dense join's hidden layers "join_hidden1", "join_hidden2" [B, join_hidden_dim], the
  attention join's tokens "join_tokens" [B, m, D], and "pre_logits" = the output Z.
The evaluation program pools [B, m, ...] layers over leaves (the average), so read
"leaves_concat" for all the leaves side by side and "leaf_{j}+leaf_{k}" for a subset.
"""
import importlib.util
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl.models import leaf_cnn

JOINS = ("average", "dense", "attention", "max")
# Per-leaf layers: the [B, m, ...] intermediate -> the prefix of its per-leaf names ("leaf_3").
LEAF_LAYERS = {"leaves": "leaf", "leaf_hidden": "leaf_hidden", "leaf_pooled": "leaf_pooled"}


def leaf_layer_name(layer: str, j: int) -> str:
  """The intermediate holding leaf j of `layer` ("leaves", "leaf_hidden" or "leaf_pooled"), e.g. "leaf_3"."""
  if layer not in LEAF_LAYERS:
    raise ValueError(f"{layer!r} is not a per-leaf layer; per-leaf layers are {', '.join(LEAF_LAYERS)}.")
  return f"{LEAF_LAYERS[layer]}_{j}"


def model_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.model` block of a TreeNet (see the module docstring)."""
  c = ml_collections.ConfigDict()
  c.name = "treenet"
  c.num_leaves = 32
  c.channels = leaf_cnn.CHANNELS
  c.width = 1.0
  c.kernel_size = 2
  c.leaf_hidden_dim = 64
  c.leaf_out_dim = 64
  c.join = "dense"
  c.join_hidden_dim = 512
  c.join_dim = 256
  c.num_heads = 4
  c.dtype = "float32"
  c.update(overrides)
  return c


def channels(cfg) -> tuple[int, ...]:
  """The leaf convolution widths: cfg.channels x cfg.width, rounded, at least 1."""
  return tuple(max(1, round(c * cfg.width)) for c in cfg.channels)


class AverageJoin(nnx.Module):
  def __init__(self, dim: int):
    self.out_dim = dim

  def __call__(self, z):
    return z.mean(axis=1), {}


class MaxJoin(nnx.Module):
  def __init__(self, dim: int):
    self.out_dim = dim

  def __call__(self, z):
    return z.max(axis=1), {}


class DenseJoin(nnx.Module):
  """[B, m, D] -> concatenation [B, m D] -> dense, ReLU, dense, ReLU, dense -> [B, join_dim]."""

  def __init__(self, num_leaves: int, dim: int, hidden_dim: int, out_dim: int, *, dtype, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(num_leaves * dim, hidden_dim, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(hidden_dim, hidden_dim, dtype=dtype, rngs=rngs)
    self.fc3 = nnx.Linear(hidden_dim, out_dim, dtype=dtype, rngs=rngs)
    self.out_dim = out_dim

  def __call__(self, z):
    h1 = jax.nn.relu(self.fc1(z.reshape(z.shape[0], -1)))
    h2 = jax.nn.relu(self.fc2(h1))
    f32 = lambda t: t.astype(jnp.float32)
    return f32(self.fc3(h2)), {"join_hidden1": f32(h1), "join_hidden2": f32(h2)}


class AttentionJoin(nnx.Module):
  """[B, m, D] -> one multi-head self-attention layer over the leaves -> mean -> [B, D]."""

  def __init__(self, dim: int, num_heads: int, *, dtype, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"model.num_heads={num_heads} must divide the leaf output width {dim} (leaf_out_dim).")
    self.attn = nnx.MultiHeadAttention(num_heads, dim, dim, dim, dtype=dtype, decode=False, deterministic=True,
                                       keep_rngs=False, rngs=rngs)
    self.out_dim = dim

  def __call__(self, z):
    tokens = self.attn(z).astype(jnp.float32)
    return tokens.mean(axis=1), {"join_tokens": tokens}


class TreeNet(nnx.Module):
  """m leaves (one `LeafStack`) and a join; `out_dim` is the join's output width."""

  def __init__(self, cfg, *, in_channels: int, rngs: nnx.Rngs):
    if cfg.join not in JOINS:
      raise ValueError(f"model.join={cfg.join!r} must be one of {', '.join(JOINS)}.")
    if cfg.num_leaves < 1:
      raise ValueError(f"model.num_leaves={cfg.num_leaves!r} must be a positive integer.")
    dtype = leaf_cnn.compute_dtype(cfg.dtype)
    d = cfg.leaf_out_dim
    self.leaves = leaf_cnn.LeafStack(cfg.num_leaves, in_channels, channels(cfg), kernel_size=cfg.kernel_size,
                                     hidden_dim=cfg.leaf_hidden_dim, out_dim=d, dtype=dtype, rngs=rngs)
    if cfg.join == "average":
      self.join = AverageJoin(d)
    elif cfg.join == "max":
      self.join = MaxJoin(d)
    elif cfg.join == "dense":
      self.join = DenseJoin(cfg.num_leaves, d, cfg.join_hidden_dim, cfg.join_dim, dtype=dtype, rngs=rngs)
    else:
      self.join = AttentionJoin(d, cfg.num_heads, dtype=dtype, rngs=rngs)
    self.out_dim = self.join.out_dim

  def __call__(self, x: jax.Array, *, train: bool = False, rng=None):
    """x: [B, S, S, C] -> (Z [B, out_dim] float32, intermediates; see the module docstring).

    `train` and `rng` are accepted for the model contract; the network has neither dropout
    nor batch statistics."""
    del train, rng
    leaves = self.leaves(x)
    out, inter = self.join(leaves["out"])
    b = x.shape[0]
    for name, t in (("leaves", leaves["out"]), ("leaf_hidden", leaves["hidden"]), ("leaf_pooled", leaves["pooled"])):
      inter[name] = t
      inter[f"{name}_concat"] = t.reshape(b, -1)
      for j in range(t.shape[1]):
        inter[leaf_layer_name(name, j)] = t[:, j]
    inter["pre_logits"] = out
    return out, inter


def create(cfg, *, in_channels: int, rngs: nnx.Rngs) -> TreeNet:
  return TreeNet(cfg, in_channels=in_channels, rngs=rngs)


def param_counts(cfg, in_channels: int) -> dict:
  """{"leaves", "join", "total"}: parameter counts of the encoder `cfg` describes (no head)."""
  net = nnx.eval_shape(lambda: TreeNet(cfg, in_channels=in_channels, rngs=nnx.Rngs(0)))
  count = lambda module: int(sum(p.size for p in jax.tree.leaves(nnx.state(module, nnx.Param))))
  leaves, join = count(net.leaves), count(net.join)
  return {"leaves": leaves, "join": join, "total": leaves + join}


def matched_width(cfg, target: int, in_channels: int, *, step: float = 0.01) -> float:
  """The smallest `width` (a multiple of `step`) whose encoder has at least `target` parameters."""
  lo, hi = step, step
  trial = cfg.copy_and_resolve_references()
  while True:
    trial.width = hi
    if param_counts(trial, in_channels)["total"] >= target:
      break
    lo, hi = hi, 2 * hi
  while hi - lo > step / 2:   # bisection on multiples of step
    mid = round((lo + hi) / 2 / step) * step
    if mid in (lo, hi):
      break
    trial.width = mid
    if param_counts(trial, in_channels)["total"] >= target:
      hi = mid
    else:
      lo = mid
  return round(hi, 6)


def param_table(named_cfgs: dict, in_channels: int) -> str:
  """A table of parameter counts, one row per named model config, e.g.
  {"treenet": c1.model, "cnn": c2.model}; `print` it."""
  rows = [f"{'model':<24} {'leaves':>5} {'join':>9} {'channels':<28} {'leaf params':>11} {'join params':>11} "
          f"{'total':>11}"]
  for name, cfg in named_cfgs.items():
    n = param_counts(cfg, in_channels)
    rows.append(f"{name:<24} {cfg.num_leaves:>5} {cfg.join:>9} {'-'.join(map(str, channels(cfg))):<28} "
                f"{n['leaves']:>11,} {n['join']:>11,} {n['total']:>11,}")
  return "\n".join(rows)


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("_treenet_recipe", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(paths: Sequence[str]) -> None:
  """Prints the parameter table of the TreeNet recipes at `paths` (config files)."""
  configs = {p.rsplit("/", 1)[-1]: _load_config(p) for p in paths}
  in_channels = {len(c.aug.mean) for c in configs.values()}
  if len(in_channels) != 1:
    raise ValueError("the configs compared must have the same number of image channels.")
  print(param_table({name: c.model for name, c in configs.items()}, in_channels.pop()))


if __name__ == "__main__":
  main(sys.argv[1:])
