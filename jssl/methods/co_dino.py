"""CO-DINO (paper 003): DINO plus a local-to-global DINO loss.

The paper evaluates CO-DINO but does not specify it; jssl defines it as follows.

- Global term: DINO's loss, networks, views (multi-crop included), center and schedules,
  unchanged (jssl.methods.dino, fields in `config.dino`).
- Local representations: the encoder's "local" map of each of the two global views
  (student and teacher, from the same passes as the global features), optionally
  average-pooled to local_grid x local_grid, as tokens [B, N, C].
- Local head: the DINO head itself (local_head = "shared", the default: every local token
  goes through the same MLP, bottleneck and prototypes as the pooled feature), or a second
  DINO head of the same shape with its own prototypes and its EMA copy (local_head =
  "separate", the paper's "new projection head" of CO-SSL). Multi-crop local crops are
  not used by the local term.
- Local term, for each pair of different global views (teacher view t, student view s):
    1/N sum_i [ H(P_t(g^t), P_s(l^{s,i})) + H(P_t(l^{t,i}), P_s(g^s)) ],
  averaged over images and over the two pairs (jssl.losses.co_ssl.dino_local_loss):
  every student local token against the other view's global teacher distribution, and
  the student's global distribution against each of the other view's teacher local
  distributions. Temperatures are DINO's (student tau_s, teacher tau_t with its warm-up).
- Centering: the teacher's global logits use DINO's center; the teacher's local logits
  have their own center (`local_center`, EMA with DINO's center momentum over every
  local token of both global views of the global batch), updated after the loss.
- L = L_DINO + w_s L_local. Metrics: "dino_loss", "local_loss" (before w_s),
  "teacher_entropy", "teacher_local_entropy", "teacher_temp".
"""
import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.losses.co_ssl import dino_local_loss
from jssl.losses.dino import update_center
from jssl.methods import co_ssl, dino
from jssl.models import heads

_LOCAL_HEADS = ("shared", "separate")


def default_config() -> ml_collections.ConfigDict:
  c = co_ssl.local_config()
  c.local_head = "shared"   # shared | separate
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """DINO's block (`c.dino`, DINO's defaults) and recipe; applied by `jssl.config.base`."""
  co_ssl.use_base(c, dino)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """DINO's (student, teacher), plus a second head on both with local_head = "separate"."""
  c = config.co_dino
  co_ssl.check(c, "co_dino")
  if c.local_head not in _LOCAL_HEADS:
    raise ValueError(f"co_dino.local_head={c.local_head!r} must be one of {', '.join(_LOCAL_HEADS)}.")
  student, teacher = dino.build(config, in_channels=in_channels, rngs=rngs)
  if c.local_head == "separate":
    d = config.dino
    student.local_head = heads.DINOHead(student.encoder.out_dim, d.out_dim, d.hidden_dim, d.bottleneck_dim,
                                        d.num_layers, norm_last_layer=d.norm_last_layer,
                                        batchnorm=d.head_batchnorm, dtype=config.model.dtype, rngs=rngs)
    teacher.local_head = nnx.clone(student.local_head)
  return student, teacher


def init_state(config) -> dict:
  return {**dino.init_state(config), "local_center": jnp.zeros((config.dino.out_dim,), jnp.float32)}


def _local_logits(net, local_map, grid: int, separate: bool):
  """[G, B, h, w, C] -> [G, B, N, K] through the net's (local) DINO head."""
  g, b = local_map.shape[:2]
  tokens = co_ssl.local_tokens(local_map.reshape((g * b,) + local_map.shape[2:]), grid)
  head = net.local_head if separate else net.head
  logits = head(tokens, train=True)
  return logits.reshape((g, b) + logits.shape[1:])


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views: {"global": [2, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  c, d = config.co_dino, config.dino
  out = dino.forward(student, teacher, views, rng=rng)
  temp = dino.teacher_temperature(config, ctx)
  global_value, center, metrics = dino.distill(d, out.student_logits, out.teacher_logits,
                                               method_state["center"], temp)
  separate = c.local_head == "separate"
  s_local = _local_logits(student, out.student_inter["local"], c.local_grid, separate)
  t_local = jax.lax.stop_gradient(_local_logits(teacher, out.teacher_inter["local"], c.local_grid, separate))
  local_center = method_state["local_center"]
  num_global = out.teacher_logits.shape[0]
  local_value = dino_local_loss(out.student_logits[:num_global], s_local, out.teacher_logits, t_local,
                                method_state["center"], local_center, student_temp=d.student_temp,
                                teacher_temp=temp)
  t_prob = jax.nn.softmax((t_local.astype(jnp.float32) - local_center) / temp, axis=-1)
  local_entropy = -jnp.mean(jnp.sum(t_prob * jnp.log(t_prob + 1e-12), axis=-1))
  value = global_value + c.w_s * local_value
  # update_center averages over its first two axes: every local token of both views.
  all_tokens = t_local.reshape((1, -1, t_local.shape[-1]))
  new_state = {"center": center, "local_center": update_center(local_center, all_tokens, d.center_momentum)}
  metrics = {**metrics, "local_loss": local_value, "teacher_local_entropy": local_entropy}
  return value, (new_state, metrics, jax.lax.stop_gradient(out.student_features[0]))
