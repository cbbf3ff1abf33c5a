"""SOVE (Silva & Ramirez Rivera): self-organising visual embeddings with non-parametric judges.

A ViT student and its EMA teacher share one head (3-layer MLP, 2048 hidden,
GELU, no BatchNorm, L2-normalised 256-d output) for the [CLS] token and the
patch tokens; there are no prototypes. Instead two FIFO memory banks in the
method state, E_C (teacher [CLS] embeddings) and E_P (teacher patch
embeddings), supply the judges each step (jssl.losses.sove):

  L = lambda1 L_[CLS] (eq. 2) + lambda2 L_patch (eq. 4).

The student sees the global views with their patch tokens masked (blockwise,
ratio 0.3; random 0.7 as the option) and the local views unmasked; the teacher
sees the intact global views. After the loss, E_C takes the teacher [CLS]
embedding of the second global view and E_P one uniformly random teacher patch
embedding per image (drawn over the patches of both global views: the paper
says only "one of the local patch embeddings").

The banks' rows are split over the batch axes (`state_partition`: `data`, and
`fsdp` on an FSDP mesh, so every device holds its own rows). On more
than one device (and with `sove.sharded_search`), judge selection and bank
writes run per device with `jax.shard_map`, on the mesh the trainer passes in
the StepContext: each device searches its own rows, and only the per-device
top-k candidates, the anchors and the chosen neighbours travel, so no device
holds a whole bank; judges and banks are those of the global-view code.

Hierarchical backbones (Swin): the mask is drawn on the final-stage token
grid, where the patch loss and E_P live, and the encoder repeats each masked
token over the patch embeddings it is merged from (iBOT's Swin does the same;
`jssl.models.swin.SwinTransformer.expand_mask`). Our choice over masking the
56 x 56 patch-embedding grid and pooling the mask down: a final token is then
either fully masked (none of its pixels reach the student) or not at all, so
"masked position" means one thing for the loss.

Numbers: K = 8192 anchors, k = 8 neighbours, K-dot = 512 patch anchors with
one judge each, banks 65536 / 8192, lambda1 = lambda2 = 1, masking 0.3
blockwise are the paper's (sec. 2, appendix A.1); 4 [CLS] tasks and 4 [MIM]
tasks per step (independent judge draws, each loss averaged over its tasks) are
the best of the paper's Table B.1 and the official code's. The smallest
blockwise block, (min(h, w) // 3)**2 patches, is iBOT's and the code's. The
code's "low energy" anchor step (sample more anchors, keep half of them by
inverse coefficient of variation) is not implemented: anchors are uniform, as
the paper describes. Student T 0.1 and teacher T
0.04 with a 30-epoch linear warm-up (from 0.04, i.e. constant unless changed),
the teacher temperature also used for the patch loss, anchor label 0.9,
neighbours among non-anchor rows and the smoothed one-hot patch labels are the
official code's; the last three are off by default (paper) and exposed.
"""
import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jssl import sharding
from jssl.components import memory_bank
from jssl.losses import sove as sove_loss
from jssl.losses.byol import l2_normalize
from jssl.methods import common
from jssl.models import heads
from jssl.sharding import DATA_AXIS

_MASK_RATIO = {"blockwise": 0.3, "random": 0.7}   # the paper's ratio for each masking mode


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.hidden_dim = 2048          # head: 3 layers, GELU, no BN (paper)
  c.out_dim = 256              # embedding width d (paper)
  c.num_layers = 3
  c.cls_bank_size = 65536      # E_C (paper)
  c.patch_bank_size = 8192     # E_P (paper)
  c.num_anchors = 8192         # K (paper; the code's default is smaller)
  c.num_neighbors = 8          # k extra judges per anchor (paper)
  c.num_patch_anchors = 512    # K-dot (paper)
  c.patch_neighbors = 0        # the patch loss keeps one judge per concept (paper, Table 8)
  c.num_tasks = 4              # [CLS] tasks: independent judge draws per step, losses averaged
  c.num_patch_tasks = 4        # [MIM] tasks: the same for the patch loss (paper Table B.1 and code: 4 and 4)
  c.one_hot = False            # True: neighbours weigh 1 (paper's ablation), not their similarity
  c.anchor_weight = -1.0       # < 0: 1, the anchor's similarity with itself (paper); code: 0.9
  c.patch_anchor_weight = -1.0  # < 0: one-hot patch labels (paper); code: 0.9 smoothed one-hot
  c.exclude_anchors = False    # True: neighbours only among non-anchor rows (code)
  c.topk_block_size = 4096     # bank rows per block of the neighbour search (per device when sharded)
  # True: with the banks split over more than one device, judge selection searches each device's
  # own rows and merges the candidates (jssl.losses.sove.sharded_neighbours), and bank writes
  # go to the rows' own devices (memory_bank.update with the mesh), so no device ever holds a
  # whole bank; same judges, weights and banks as the global-view code. False: global-view code
  # (XLA all-gathers each bank to every device). One device: the global-view code either way.
  c.sharded_search = True
  c.mask_mode = "blockwise"    # blockwise | random
  c.mask_ratio = -1.0          # < 0: the paper's ratio for the mode (0.3 blockwise, 0.7 random)
  c.mask_min_block = -1        # smallest block in patches (blockwise); < 0: the code's (min(h, w) // 3)**2
  c.lambda1 = 1.0
  c.lambda2 = 1.0
  c.global_repr = "cls"        # cls | mean_patch: what L_[CLS] and E_C use
  c.student_temp = 0.1
  c.teacher_temp = 0.04
  c.warmup_teacher_temp = 0.04
  c.warmup_teacher_temp_epochs = 30.0
  c.patch_student_temp = -1.0  # < 0: student_temp
  c.patch_teacher_temp = -1.0  # < 0: the (warmed-up) teacher temperature, as in the code
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """The SOVE code's optimisation recipe is DINO's (`common.dino_training_defaults`, per-tensor
  gradient clipping included); no last layer to freeze (no prototypes). Applied by `jssl.config.base`."""
  common.dino_training_defaults(c, freeze_last_layer=False)


def validate(config) -> None:
  """Raises one sentence naming the bad `sove.*` field."""
  c = config.sove
  memory_bank.check_size(c.cls_bank_size, config.batch_size, "sove.cls_bank_size")
  memory_bank.check_size(c.patch_bank_size, config.batch_size, "sove.patch_bank_size")
  if not 0 < c.num_anchors <= c.cls_bank_size:
    raise ValueError(f"sove.num_anchors={c.num_anchors} must be in [1, sove.cls_bank_size={c.cls_bank_size}].")
  if not 0 < c.num_patch_anchors <= c.patch_bank_size:
    raise ValueError(f"sove.num_patch_anchors={c.num_patch_anchors} must be in "
                     f"[1, sove.patch_bank_size={c.patch_bank_size}].")
  excluded = c.num_anchors if c.exclude_anchors else 1
  if not 0 <= c.num_neighbors <= c.cls_bank_size - excluded:
    raise ValueError(f"sove.num_neighbors={c.num_neighbors} exceeds the {c.cls_bank_size - excluded} "
                     f"candidate rows of the [CLS] bank.")
  if not 0 <= c.patch_neighbors < c.patch_bank_size:
    raise ValueError(f"sove.patch_neighbors={c.patch_neighbors} must be in [0, sove.patch_bank_size).")
  if c.mask_mode not in _MASK_RATIO:
    raise ValueError(f"sove.mask_mode={c.mask_mode!r} must be one of {sorted(_MASK_RATIO)}.")
  if c.global_repr not in ("cls", "mean_patch"):
    raise ValueError(f"sove.global_repr={c.global_repr!r} must be cls or mean_patch.")
  for name in ("num_tasks", "num_patch_tasks"):
    if c[name] < 1:
      raise ValueError(f"sove.{name}={c[name]} must be >= 1.")


class Net(nnx.Module):
  """Encoder + SOVE head; the head embeds the global representation and the patch tokens."""

  def __init__(self, encoder, head, global_repr: str):
    self.encoder, self.head, self.global_repr = encoder, head, global_repr

  def __call__(self, x, *, train, rng=None, mask=None, patches=False):
    """x: [V, B, S, S, C] -> (global [V, B, d], patch [V, B, N, d] or None, features [V, B, D]).

    Embeddings are float32 unit vectors. `mask` (bool [V * B, N]) replaces
    patch embeddings by the encoder's mask token; `rng` drives stochastic
    depth (the teacher is called without one).
    """
    v, b = x.shape[:2]
    feats, inter = self.encoder(x.reshape((v * b,) + x.shape[2:]), train=train, rng=rng, mask=mask)
    tokens = inter["tokens"]
    if self.global_repr == "mean_patch":
      pooled = jnp.mean(tokens, axis=1)
    else:   # a backbone without a [CLS] token (Swin) gives its pooled output instead
      pooled = inter.get("cls", feats)
    inputs = jnp.concatenate([pooled[:, None], tokens], axis=1) if patches else pooled
    emb = l2_normalize(self.head(inputs, train=train))
    if patches:
      glob = emb[:, 0].reshape(v, b, -1)
      patch = emb[:, 1:].reshape(v, b, tokens.shape[1], -1)
    else:
      glob, patch = emb.reshape(v, b, -1), None
    return glob, patch, feats.reshape(v, b, -1)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  validate(config)
  c = config.sove
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  head = heads.MLP(encoder.out_dim, c.hidden_dim, c.out_dim, c.num_layers, batchnorm=False, act="gelu",
                   dtype=config.model.dtype, rngs=rngs)
  student = Net(encoder, head, c.global_repr)
  return student, nnx.clone(student)


def init_state(config) -> dict:
  """Both banks start as random unit vectors (fixed by config.seed)."""
  c = config.sove
  cls_key, patch_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 2))
  return {"cls_bank": memory_bank.init(cls_key, c.cls_bank_size, c.out_dim),
          "patch_bank": memory_bank.init(patch_key, c.patch_bank_size, c.out_dim)}


def state_partition(config, mesh) -> dict:
  """Bank rows split over the batch axes (`data`, and `fsdp` on an FSDP mesh: every device
  holds its own rows); the write pointers replicated."""
  del config
  bank = {"bank": P(sharding.batch_axes(mesh), None), "ptr": P()}
  return {"cls_bank": bank, "patch_bank": dict(bank)}


def teacher_temperature(config, ctx: common.StepContext) -> jax.Array:
  """Linear warm-up from warmup_teacher_temp to teacher_temp, then constant."""
  c = config.sove
  warm = c.warmup_teacher_temp_epochs * ctx.steps_per_epoch
  if warm <= 0:
    return jnp.asarray(c.teacher_temp, jnp.float32)
  frac = jnp.minimum(ctx.step / warm, 1.0)
  return c.warmup_teacher_temp + frac * (c.teacher_temp - c.warmup_teacher_temp)


def make_mask(rng, config, num_images: int, grid: tuple[int, int]) -> jax.Array:
  """bool [num_images, gh * gw], True = masked, by sove.mask_mode / mask_ratio."""
  from jssl.data import masking   # imported here: only the loss needs it
  c = config.sove
  ratio = c.mask_ratio if c.mask_ratio >= 0 else _MASK_RATIO[c.mask_mode]
  if c.mask_mode == "random":
    return masking.random_mask(rng, num_images, tuple(grid), ratio)
  min_block = c.mask_min_block if c.mask_min_block > 0 else masking.reference_min_block(grid)
  return masking.blockwise_mask(rng, num_images, tuple(grid), ratio, min_block=min_block)


def _bank_mesh(config, ctx: common.StepContext, bank: jax.Array):
  """The mesh to select judges and write `bank` on per device, or None (global-view code):
  sove.sharded_search, a mesh in ctx whose batch axes have > 1 device, rows divisible by them."""
  mesh = ctx.mesh
  if not config.sove.sharded_search or mesh is None or DATA_AXIS not in mesh.shape:
    return None
  shards = sharding.axis_size(mesh, sharding.batch_axes(mesh))
  return mesh if shards > 1 and bank.shape[0] % shards == 0 else None


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views: {"global": [G, B, S, S, C], "local" (optional): [L, B, s, s, C]}."""
  c = config.sove
  mask_key, g_key, l_key, task_key, patch_key, pick_key = jax.random.split(rng, 6)
  glob = views["global"]
  num_g, b = glob.shape[:2]
  grid = student.encoder.token_grid(glob.shape[2], glob.shape[3])
  mask = make_mask(mask_key, config, num_g * b, grid)                    # [G * B, N]

  s_glob, s_patch, s_feats = student(glob, train=True, rng=g_key, mask=mask, patches=True)
  s_all = s_glob
  if "local" in views:
    s_all = jnp.concatenate([s_glob, student(views["local"], train=True, rng=l_key)[0]], axis=0)
  t_glob, t_patch, _ = teacher(glob, train=True, patches=True)
  t_glob, t_patch = jax.lax.stop_gradient(t_glob), jax.lax.stop_gradient(t_patch)
  temp = teacher_temperature(config, ctx)

  cls_bank, patch_bank = method_state["cls_bank"]["bank"], method_state["patch_bank"]["bank"]
  cls_mesh, patch_mesh = _bank_mesh(config, ctx, cls_bank), _bank_mesh(config, ctx, patch_bank)
  axes = sharding.batch_axes(ctx.mesh) if ctx.mesh is not None else DATA_AXIS
  anchor_w = None if c.anchor_weight < 0 else c.anchor_weight
  cls_values, entropy = [], None
  for t, key in enumerate(jax.random.split(task_key, c.num_tasks)):
    judges, weights = sove_loss.select_judges(
        key, cls_bank, c.num_anchors, c.num_neighbors, one_hot=c.one_hot, anchor_weight=anchor_w,
        exclude_anchors=c.exclude_anchors, block_size=c.topk_block_size, mesh=cls_mesh, axis_name=axes)
    cls_values.append(sove_loss.cls_loss(s_all, t_glob, judges, weights, student_temp=c.student_temp,
                                         teacher_temp=temp))
    if t == 0:
      pt = sove_loss.concept_probs(t_glob, judges, weights, temp)
      entropy = -jnp.mean(jnp.sum(pt * jnp.log(pt + 1e-12), axis=-1))
  cls_value = sum(cls_values) / len(cls_values)

  n, d = s_patch.shape[2:]
  patch_values = []
  for key in jax.random.split(patch_key, c.num_patch_tasks):
    p_judges, p_weights = sove_loss.select_judges(
        key, patch_bank, c.num_patch_anchors, c.patch_neighbors,
        one_hot=c.one_hot, anchor_weight=None if c.patch_anchor_weight < 0 else c.patch_anchor_weight,
        exclude_anchors=c.exclude_anchors, block_size=c.topk_block_size, mesh=patch_mesh, axis_name=axes)
    patch_values.append(sove_loss.patch_loss(
        s_patch.reshape(num_g * b, n, d), t_patch.reshape(num_g * b, n, d), mask, p_judges, p_weights,
        student_temp=c.student_temp if c.patch_student_temp < 0 else c.patch_student_temp,
        teacher_temp=temp if c.patch_teacher_temp < 0 else c.patch_teacher_temp))
  patch_value = sum(patch_values) / len(patch_values)
  value = c.lambda1 * cls_value + c.lambda2 * patch_value

  # Bank writes after the loss (this step's judges came from earlier steps).
  picks = jax.random.randint(pick_key, (b,), 0, num_g * n)
  per_image = jnp.moveaxis(t_patch, 0, 1).reshape(b, num_g * n, d)       # [B, G * N, d]
  new_state = {
      "cls_bank": memory_bank.update(method_state["cls_bank"], t_glob[min(1, num_g - 1)], mesh=cls_mesh,
                                     axis_name=axes),
      "patch_bank": memory_bank.update(method_state["patch_bank"], per_image[jnp.arange(b), picks],
                                       mesh=patch_mesh, axis_name=axes),
  }
  metrics = {"cls_loss": cls_value, "patch_loss": patch_value, "teacher_entropy": entropy,
             "teacher_temp": temp, "mask_fraction": jnp.mean(mask.astype(jnp.float32))}
  return value, (new_state, metrics, jax.lax.stop_gradient(s_feats[0]))
