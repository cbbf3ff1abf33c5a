"""iBOT-style parametric baseline (Zhou et al., 2022): DINO plus masked image modelling.

The parametric counterpart of SOVE's non-parametric judges (SOVE's Table 7
compares the two), trained with the same data, budget and evaluation.

- Student: a ViT (or Swin) sees the global views with blockwise-masked patches (the
  learnable mask token of `jssl.models.vit`) and the local views unmasked.
  Teacher (EMA, no stochastic depth, no rng): the global views unmasked.
- Head: one DINOHead shared by the [CLS] token and the patch tokens (iBOT's
  "shared head"; its ViT recipes use 8192 prototypes for both, our default).
  With shared_head False the patch tokens get their own DINOHead (ours: iBOT
  keeps a shared MLP with a second prototype layer).
- Loss = lambda1 L_cls + lambda2 L_patch. L_cls is DINO's loss over pairs of
  different views (teacher [CLS] of global view i, student [CLS] of view j != i,
  the student's global views masked). L_patch (`jssl.losses.ibot.patch_loss`)
  compares teacher and student patch tokens of the same global view, on the
  student's masked positions. Each has its own center (EMA 0.9), updated after
  the loss: [CLS] from the teacher's global-view [CLS] logits, patches from all
  teacher patch logits.
- Masks (iBOT's defaults): blockwise, per-image ratio ~ U(0.1, 0.5), only half
  of the images masked at all (mask_prob 0.5); mask_mode "random" takes
  exactly round(ratio * N) random patches instead. Masks are drawn inside the
  loss from its rng, so they are the same on any number of devices.
- Temperatures (iBOT's code): student 0.1; teacher [CLS] 0.04 and teacher patch
  0.07, each warmed up linearly from 0.04 over warmup_teacher_temp_epochs (30).
- Features handed to the trainer's probe and collapse monitor: the student
  encoder output of global view 0 (masked where its mask says so).

Requires model.name "vit" or "swin". On Swin (no [CLS] token) the pooled
output stands in for [CLS], and masks are drawn on the final-stage token grid
and repeated over the patch embeddings each token is merged from, as iBOT's
Swin code does (see `jssl.methods.sove` for why).
"""
import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.data import masking
from jssl.losses.dino import dino_loss, update_center
from jssl.losses.ibot import patch_loss, update_patch_center
from jssl.methods import common
from jssl.models import heads


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.out_dim = 8192              # [CLS] prototypes
  c.patch_out_dim = 8192        # patch prototypes; must equal out_dim when shared_head
  c.shared_head = True
  c.hidden_dim = 2048
  c.bottleneck_dim = 256
  c.num_layers = 3
  c.norm_last_layer = True
  c.head_batchnorm = False
  c.mask_mode = "blockwise"     # blockwise | random
  c.mask_ratio = (0.1, 0.5)     # (min, max) sampled per image; (r, r) for a fixed ratio
  c.mask_prob = 0.5             # fraction of global-view images masked at all
  c.mask_min_block = -1         # smallest block in patches (blockwise); < 0: iBOT's (min(h, w) // 3)**2
  c.lambda1 = 1.0               # weight of the [CLS] loss
  c.lambda2 = 1.0               # weight of the patch loss
  c.student_temp = 0.1
  c.teacher_temp = 0.04
  c.teacher_patch_temp = 0.07
  c.warmup_teacher_temp = 0.04
  c.warmup_teacher_patch_temp = 0.04
  c.warmup_teacher_temp_epochs = 30.0
  c.center_momentum = 0.9
  c.center_momentum_patch = 0.9
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """iBOT's code keeps DINO's optimisation recipe, last-layer freezing included
  (`common.dino_training_defaults`); applied by `jssl.config.base`."""
  common.dino_training_defaults(c, freeze_last_layer=True)


class Net(nnx.Module):
  """ViT + DINO head(s): per-view [CLS] logits, patch logits and pooled features."""

  def __init__(self, encoder, head, patch_head=None):
    self.encoder, self.head, self.patch_head = encoder, head, patch_head

  def __call__(self, x, *, train, rng=None, mask=None, patches=True):
    """Encodes a group of same-size views.

    Args:
      x: [V, B, S, S, C] images.
      train: training mode.
      rng: stochastic-depth key (the teacher passes none).
      mask: optional bool [V, B, N] patch mask.
      patches: also return patch logits (skipped for local views).

    Returns:
      (cls_logits [V, B, K], patch_logits [V, B, N, K'] or None, features [V, B, D]).
    """
    v, b = x.shape[:2]
    flat_mask = None if mask is None else mask.reshape((v * b,) + mask.shape[2:])
    feats, inter = self.encoder(x.reshape((v * b,) + x.shape[2:]), train=train, rng=rng, mask=flat_mask)
    cls, tokens = inter.get("cls", feats), inter["tokens"]   # Swin: its pooled output
    patch_logits = None
    if not patches:
      cls_logits = self.head(cls, train=train)
    elif self.patch_head is None:
      # One head call over [CLS] and patch tokens together.
      out = self.head(jnp.concatenate([cls[:, None], tokens], axis=1), train=train)
      cls_logits, patch_logits = out[:, 0], out[:, 1:]
    else:
      cls_logits = self.head(cls, train=train)
      patch_logits = self.patch_head(tokens, train=train)
    if patch_logits is not None:
      patch_logits = patch_logits.reshape((v, b) + patch_logits.shape[1:])
    return cls_logits.reshape(v, b, -1), patch_logits, feats.reshape(v, b, -1)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  c = config.ibot
  if config.model.name not in ("vit", "swin"):
    raise ValueError(f"ibot needs model.name 'vit' or 'swin' (patch tokens and a mask token), "
                     f"got {config.model.name!r}.")
  if c.shared_head and c.patch_out_dim != c.out_dim:
    raise ValueError(f"ibot.patch_out_dim={c.patch_out_dim} must equal ibot.out_dim={c.out_dim} "
                     "when ibot.shared_head is True.")
  if c.mask_mode not in ("blockwise", "random"):
    raise ValueError(f"ibot.mask_mode={c.mask_mode!r} must be 'blockwise' or 'random'.")
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)

  def make_head(out_dim):
    return heads.DINOHead(encoder.out_dim, out_dim, c.hidden_dim, c.bottleneck_dim, c.num_layers,
                          norm_last_layer=c.norm_last_layer, batchnorm=c.head_batchnorm,
                          dtype=config.model.dtype, rngs=rngs)

  student = Net(encoder, make_head(c.out_dim), None if c.shared_head else make_head(c.patch_out_dim))
  return student, nnx.clone(student)


def init_state(config) -> dict:
  c = config.ibot
  return {"center": jnp.zeros((c.out_dim,), jnp.float32),
          "center_patch": jnp.zeros((c.patch_out_dim,), jnp.float32)}


def _warmup(start: float, end: float, epochs: float, ctx: common.StepContext) -> jax.Array:
  """Linear warm-up from `start` to `end` over `epochs`, then constant."""
  warm = epochs * ctx.steps_per_epoch
  if warm <= 0:
    return jnp.asarray(end, jnp.float32)
  return start + jnp.minimum(ctx.step / warm, 1.0) * (end - start)


def teacher_temperatures(config, ctx: common.StepContext) -> tuple[jax.Array, jax.Array]:
  """(teacher [CLS] temperature, teacher patch temperature) at the traced step."""
  c = config.ibot
  return (_warmup(c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_epochs, ctx),
          _warmup(c.warmup_teacher_patch_temp, c.teacher_patch_temp, c.warmup_teacher_temp_epochs, ctx))


def make_masks(rng: jax.Array, config, num_views: int, batch: int, grid_hw: tuple[int, int]) -> jax.Array:
  """bool [G, B, N] masks of the student's global views, as config.ibot says."""
  c = config.ibot
  ratio = c.mask_ratio if isinstance(c.mask_ratio, (int, float)) else tuple(c.mask_ratio)
  if c.mask_mode == "random":
    m = masking.random_mask(rng, num_views * batch, grid_hw, ratio, mask_prob=c.mask_prob)
  else:
    m = masking.blockwise_mask(rng, num_views * batch, grid_hw, ratio, mask_prob=c.mask_prob,
                               min_block=c.mask_min_block if c.mask_min_block > 0
                               else masking.reference_min_block(grid_hw))
  return m.reshape(num_views, batch, -1)


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views: {"global": [G, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  c = config.ibot
  m_key, g_key, l_key = jax.random.split(rng, 3)
  g, b, size = views["global"].shape[:3]
  mask = make_masks(m_key, config, g, b, student.encoder.token_grid(size, size))

  s_cls, s_patch, s_feats = student(views["global"], train=True, rng=g_key, mask=mask)
  if "local" in views:
    l_cls, _, _ = student(views["local"], train=True, rng=l_key, patches=False)
    s_cls = jnp.concatenate([s_cls, l_cls], axis=0)
  t_cls, t_patch, _ = teacher(views["global"], train=True)
  t_cls, t_patch = jax.lax.stop_gradient(t_cls), jax.lax.stop_gradient(t_patch)

  temp, patch_temp = teacher_temperatures(config, ctx)
  center, center_patch = method_state["center"], method_state["center_patch"]
  cls_value = dino_loss(s_cls, t_cls, center, student_temp=c.student_temp, teacher_temp=temp)
  patch_value = patch_loss(s_patch, t_patch, mask, center_patch, student_temp=c.student_temp,
                           teacher_temp=patch_temp)
  value = c.lambda1 * cls_value + c.lambda2 * patch_value

  t_prob = jax.nn.softmax((t_cls.astype(jnp.float32) - center) / temp, axis=-1)
  entropy = -jnp.mean(jnp.sum(t_prob * jnp.log(t_prob + 1e-12), axis=-1))
  new_state = {"center": update_center(center, t_cls, c.center_momentum),
               "center_patch": update_patch_center(center_patch, t_patch, c.center_momentum_patch)}
  metrics = {"ibot_cls_loss": cls_value, "ibot_patch_loss": patch_value, "teacher_entropy": entropy,
             "teacher_temp": temp, "teacher_patch_temp": patch_temp,
             "mask_fraction": jnp.mean(mask.astype(jnp.float32))}
  return value, (new_state, metrics, jax.lax.stop_gradient(s_feats[0]))
