"""CO-SSL (paper 003): a base SSL method plus a loss between local and global representations.

A CO method (`co_byol`, `co_dino`, `co_mocov3`) is its base method unchanged plus a local
term: the local representations l^i of each global view (the encoder's "local" map
[B, h, w, C], right before the final average pooling) go through local heads position by
position, and the base method's loss pulls each of them towards the other view's global
embedding, and the global embedding towards each of the other view's local embeddings
(jssl.losses.co_ssl). Total loss = base loss + w_s * local loss; both terms are logged
("<base>_loss" and "local_loss").

Configuration. The base method's own fields stay in its block (`config.byol`,
`config.dino`, `config.mocov3`, filled with the base's defaults by the CO method's
`training_defaults`, which also applies the base's optimisation recipe); the CO block
(`config.co_byol`, ...) holds the local term:
  w_s         weight of the local loss. The paper's ImageNet-100 sweep (Table 5): 0.1 ->
              84.7, 0.2 -> 87.6, 0.5 -> 88.0, 1 -> 87.0 (BYOL 83.9); it uses w_s in
              {0.2, 0.5}. Default 0.5. w_s = 0 gives the base method's step exactly.
  local_grid  n: the local map is average-pooled to n x n positions before the local
              heads (adaptive pooling, as PyTorch's AdaptiveAvgPool2d); 0 keeps all
              h x w positions (the paper's default, n^2 = 196 for RF99-ResNet50 at
              224 px). Table 5: n^2 = 1 / 4 / 16 / 64 / 196 -> 84.2 / 86.5 / 87.3 /
              87.7 / 87.6.
Local projector and predictor are 1x1 convolutions in the paper; a 1x1 convolution is a
linear layer applied at every position, and BatchNorm over [B, h, w, C] normalises over
images and positions as BatchNorm2d does, so they are `heads.MLP`s applied to the
[B, N, C] local tokens. Paper's local heads (Appendix A.4): one hidden layer of 4096,
output 256.
"""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jssl.models import heads


def local_config(c: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The fields every CO method's block has (see the module docstring)."""
  c = ml_collections.ConfigDict() if c is None else c
  c.w_s = 0.5
  c.local_grid = 0
  return c


def use_base(c: ml_collections.ConfigDict, base) -> None:
  """Gives config `c` the base method's block with its defaults, and the base's recipe."""
  c[base.__name__.rsplit(".", 1)[-1]] = base.default_config()
  if hasattr(base, "training_defaults"):
    base.training_defaults(c)


def check(c: ml_collections.ConfigDict, name: str) -> None:
  """One clear sentence for bad CO fields, before anything is traced."""
  if not (np.isfinite(c.w_s) and c.w_s >= 0):
    raise ValueError(f"{name}.w_s={c.w_s!r} must be a finite number >= 0.")
  if int(c.local_grid) != c.local_grid or c.local_grid < 0:
    raise ValueError(f"{name}.local_grid={c.local_grid!r} must be 0 (all positions) or a positive integer n.")


def _pool_matrix(size: int, n: int) -> np.ndarray:
  """[n, size] rows averaging the bins [floor(i size / n), ceil((i + 1) size / n))."""
  m = np.zeros((n, size), np.float32)
  for i in range(n):
    lo, hi = (i * size) // n, -(-((i + 1) * size) // n)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def local_tokens(local_map: jax.Array, grid: int) -> jax.Array:
  """The local representations as tokens: [B, h, w, C] -> [B, N, C].

  grid 0 (or grid equal to h and w) keeps every position, N = h w; otherwise the map
  is average-pooled to grid x grid (adaptive bins, overlapping when grid does not
  divide the side), N = grid^2. Pooling is computed in float32.
  """
  b, h, w, c = local_map.shape
  if grid <= 0 or (grid == h and grid == w):
    return local_map.reshape(b, h * w, c)
  if grid > min(h, w):
    raise ValueError(f"local_grid={grid} must be at most the local map's side, {min(h, w)} (map {h} x {w}).")
  pooled = jnp.einsum("ih,jw,bhwc->bijc", _pool_matrix(h, grid), _pool_matrix(w, grid),
                      local_map.astype(jnp.float32))
  return pooled.astype(local_map.dtype).reshape(b, grid * grid, c)


def add_local_mlps(config, c, student, teacher, *, in_dim: int, out_dim: int, rngs: nnx.Rngs) -> None:
  """Adds the CO-BYOL-style local heads to a (student, teacher) pair built by the base method.

  student.local_projector g2: MLP(in_dim, c.local_proj_hidden, out_dim), BatchNorm, ReLU;
  student.local_predictor q2: MLP(out_dim, c.local_pred_hidden, out_dim); the teacher gets a
  copy of g2 (its EMA follows the student's). Created after the base networks, so the base
  networks' initial values are the base method's.
  """
  dtype = config.model.dtype
  student.local_projector = heads.MLP(in_dim, c.local_proj_hidden, out_dim, 2, batchnorm=True, dtype=dtype,
                                      rngs=rngs)
  student.local_predictor = heads.MLP(out_dim, c.local_pred_hidden, out_dim, 2, batchnorm=True, dtype=dtype,
                                      rngs=rngs)
  teacher.local_projector = nnx.clone(student.local_projector)


def local_mlp_outputs(student, teacher, online_inter: list, target_inter: list, grid: int):
  """Local predictions and targets of every view through the heads of `add_local_mlps`.

  online_inter / target_inter: per view, the encoder intermediates dicts with "local".
  Each view goes through the heads on its own (per-view BatchNorm, as the base methods).
  Returns (local predictions [V, B, N, D], local targets [V, B, N, D]).
  """
  preds, targets = [], []
  for s_inter, t_inter in zip(online_inter, target_inter):
    s_tok = local_tokens(s_inter["local"], grid)
    preds.append(student.local_predictor(student.local_projector(s_tok, train=True), train=True))
    targets.append(teacher.local_projector(local_tokens(t_inter["local"], grid), train=True))
  return jnp.stack(preds), jnp.stack(targets)
