"""TreeNet (paper 000): DINO on the join of an ensemble of leaf CNNs.

The encoder is a TreeNet (jssl.models.treenet: m leaves run as one grouped network and a
join A); the teacher is the EMA of the whole student encoder and head, i.e. every teacher
leaf is the EMA of its student leaf (Sec. 3, step 7), which the trainer does. The loss
is DINO's on the aggregates Z = A(z_1..z_m) (Sec. 3.3): jssl.methods.dino's networks,
`forward` and `distill` unchanged, with DINO's fields in `config.dino` (DINO's defaults
and optimisation recipe, as the paper kept the DINO code's defaults, Sec. 3.4).

Optional inter-leaf diversity loss (Sec. 3.3), `config.treenet.beta` (default 0: off):

  L_div = beta x mean over images, student global views and leaf pairs i < j of
          cos(z_i(x), z_j(x)),

with z_j the student leaf outputs ("leaves", [V, B, m, D]). The paper writes the sum over
all ordered pairs (i, j) scaled by 1 / (2 K^2); that equals (K - 1) / (2 K) times this
mean plus the constant 1 / (2 K) from i = j, so the two differ by a constant and the
scale of beta. It is logged as "diversity_loss" (before beta) whatever beta is; the
paper found it harmful (best 51.2% linear vs 71.8% without, Sec. 5.5).

Views (`config.treenet.views`): "shared", the default and the only one built: all
student leaves see the same view v and all teacher leaves another view v' (Sec. 1.1,
steps 2-5 of Sec. 3), with DINO's multi-crop pairs. Sec. 4.1's alternative, each leaf
sampling its own transformation ("per_leaf"), is not built: the augmentation stage makes
[V, B] views, not [V, m, B]; asking for it raises an error.

Metrics: DINO's ("dino_loss", "teacher_entropy", "teacher_temp") and "diversity_loss".
"""
import math

import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.methods import co_ssl, dino

VIEWS = ("shared",)


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.beta = 0.0          # weight of the inter-leaf diversity loss; 0 = off
  c.views = "shared"    # shared: every leaf sees the same view (per_leaf: not built)
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """DINO's block (`c.dino`, DINO's defaults) and recipe; applied by `jssl.config.base`."""
  co_ssl.use_base(c, dino)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """DINO's (student, teacher) on a TreeNet encoder."""
  c = config.treenet
  if c.views not in VIEWS:
    raise ValueError(f"treenet.views={c.views!r} is not built; only 'shared' (every leaf sees the same view) is.")
  if not (math.isfinite(c.beta) and c.beta >= 0):
    raise ValueError(f"treenet.beta={c.beta!r} must be a finite number >= 0.")
  if config.model.name != "treenet":
    raise ValueError(f"model.name={config.model.name!r} must be 'treenet' for method treenet.")
  return dino.build(config, in_channels=in_channels, rngs=rngs)


def init_state(config) -> dict:
  return dino.init_state(config)


def diversity_loss(leaves: jax.Array) -> jax.Array:
  """Mean pairwise cosine similarity of leaf outputs: [..., m, D] -> scalar.

  Averaged over the leading axes and the m (m - 1) / 2 pairs i < j, in float32;
  0 for a single leaf."""
  m = leaves.shape[-2]
  if m < 2:
    return jnp.zeros([], jnp.float32)
  z = leaves.astype(jnp.float32)
  z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))
  sims = jnp.einsum("...id,...jd->...ij", z, z)
  off_diagonal = jnp.sum(sims, axis=(-2, -1)) - jnp.trace(sims, axis1=-2, axis2=-1)
  return jnp.mean(off_diagonal) / (m * (m - 1))


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views: {"global": [G, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  out = dino.forward(student, teacher, views, rng=rng)
  temp = dino.teacher_temperature(config, ctx)
  value, center, metrics = dino.distill(config.dino, out.student_logits, out.teacher_logits,
                                        method_state["center"], temp)
  div = diversity_loss(out.student_inter["leaves"])
  beta = config.treenet.beta
  if beta:
    value = value + beta * div
  metrics = {**metrics, "diversity_loss": div}
  return value, ({"center": center}, metrics, jax.lax.stop_gradient(out.student_features[0]))
