"""CO-MoCoV3 (paper 003, Appendix A.1): MoCo v3 plus the local-to-global InfoNCE.

  L = ctr(q1, k2) + ctr(q2, k1) + w_s [L_l(1, 2) + L_l(2, 1)]

MoCo v3's networks and loss are jssl.methods.mocov3's, unchanged (`config.mocov3`); the
local term (jssl.losses.co_ssl.mocov3_local_loss) contrasts every local query q2(g2(l^i))
of a view with the other view's global keys, and the global query with the other view's
local keys at each position, with MoCo v3's temperature and 2 tau scale. Local projector
g2 and predictor q2 (and the momentum copy of g2) are CO-BYOL's (jssl.methods.co_ssl;
fields in `config.co_mocov3`: w_s, local_grid, local_proj_hidden, local_pred_hidden).
The paper trains CO-MoCoV3 with BYOL's and CO-BYOL's hyperparameters and tau = 0.2.
Metrics: "mocov3_loss" and "local_loss" (before w_s).
"""
import ml_collections
from flax import nnx
import jax

from jssl.losses.co_ssl import mocov3_local_loss
from jssl.losses.mocov3 import mocov3_loss
from jssl.methods import byol, co_ssl, mocov3


def default_config() -> ml_collections.ConfigDict:
  c = co_ssl.local_config()
  c.local_proj_hidden = 4096
  c.local_pred_hidden = 4096
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """MoCo v3's block (`c.mocov3`, its defaults) and recipe; applied by `jssl.config.base`."""
  co_ssl.use_base(c, mocov3)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """MoCo v3's (online, momentum) networks with the local heads added."""
  co_ssl.check(config.co_mocov3, "co_mocov3")
  student, teacher = mocov3.build(config, in_channels=in_channels, rngs=rngs)
  co_ssl.add_local_mlps(config, config.co_mocov3, student, teacher, in_dim=student.encoder.out_dim,
                        out_dim=config.mocov3.proj_dim, rngs=rngs)
  return student, teacher


def init_state(config) -> dict:
  return mocov3.init_state(config)


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D])).

  MoCo v3's per-view passes (BYOL's structure, the online encoder given rng folded with
  the view index), read through `byol.forward` so the local maps come with them.
  """
  del ctx
  c, tau = config.co_mocov3, config.mocov3.temperature
  out = byol.forward(student, teacher, views["global"], rng=rng)
  global_value = mocov3_loss(out.predictions, out.targets, tau)
  local_queries, local_keys = co_ssl.local_mlp_outputs(student, teacher, out.online, out.target, c.local_grid)
  local_value = mocov3_local_loss(local_queries, out.predictions, local_keys, out.targets, tau)
  value = global_value + c.w_s * local_value
  metrics = {"mocov3_loss": global_value, "local_loss": local_value}
  return value, (method_state, metrics, jax.lax.stop_gradient(out.features[0]))
