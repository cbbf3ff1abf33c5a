"""CO-BYOL (paper 003, sec. 3.1): BYOL plus the local-to-global BYOL loss.

  L = L_g(p_g, z'_g) + L_g(p'_g, z_g) + w_s [L_l(L, p_g, L', z'_g) + L_l(L', p'_g, L, z_g)]

BYOL's networks, views and loss are jssl.methods.byol's, unchanged (`config.byol`); the
local term (jssl.losses.co_ssl.byol_local_loss, 2 - 2 cos as BYOL's) adds a local
projector g2 and predictor q2 to the online network and the EMA copy of g2 to the target
(jssl.methods.co_ssl; fields in `config.co_byol`: w_s, local_grid, local_proj_hidden,
local_pred_hidden). The local maps come from the same encoder passes as BYOL's global
features. Metrics: "byol_loss" (L_g, both directions) and "local_loss" (L_l, both
directions, before w_s).

BYOL-mc (the paper's multi-crop baseline) is not available: jssl's BYOL uses the two
global views only and ignores multi-crop local views.
"""
import ml_collections
from flax import nnx
import jax

from jssl.losses.byol import byol_loss
from jssl.losses.co_ssl import byol_local_loss
from jssl.methods import byol, co_ssl


def default_config() -> ml_collections.ConfigDict:
  c = co_ssl.local_config()
  c.local_proj_hidden = 4096
  c.local_pred_hidden = 4096
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """BYOL's block (`c.byol`, BYOL's defaults) and recipe; applied by `jssl.config.base`."""
  co_ssl.use_base(c, byol)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """BYOL's (online, target) with the local heads added."""
  co_ssl.check(config.co_byol, "co_byol")
  student, teacher = byol.build(config, in_channels=in_channels, rngs=rngs)
  co_ssl.add_local_mlps(config, config.co_byol, student, teacher, in_dim=student.encoder.out_dim,
                        out_dim=config.byol.proj_dim, rngs=rngs)
  return student, teacher


def init_state(config) -> dict:
  return byol.init_state(config)


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D]))."""
  del rng, ctx
  c = config.co_byol
  out = byol.forward(student, teacher, views["global"])
  global_value = byol_loss(out.predictions, out.targets)
  local_preds, local_targets = co_ssl.local_mlp_outputs(student, teacher, out.online, out.target, c.local_grid)
  local_value = byol_local_loss(local_preds, out.predictions, local_targets, out.targets)
  value = global_value + c.w_s * local_value
  metrics = {"byol_loss": global_value, "local_loss": local_value}
  return value, (method_state, metrics, jax.lax.stop_gradient(out.features[0]))
