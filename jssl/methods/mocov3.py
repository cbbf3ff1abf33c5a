"""MoCo v3 (Chen, Xie & He, 2021): queries from an online encoder + projector +
predictor are contrasted with the keys of a momentum encoder (backbone +
projector) over the batch, without a queue.

Structure: BYOL's online/target pair (`jssl.methods.byol.Online`, `Target`),
the EMA target kept by the trainer with momentum 0.99 -> 1 (cosine, the code's
`--moco-m-cos`), and the symmetrised InfoNCE of `jssl.losses.mocov3` scaled by
2 tau. Each view goes through the networks on its own, so BatchNorm statistics
are per view over the global batch, as the official code's SyncBN gives.

Heads. The paper describes a 3-layer projector and a 2-layer predictor, hidden
4096, output 256, BatchNorm on every layer including the outputs. The official
code builds that for ViTs; for ResNets it uses a 2-layer projector and a
predictor without output BatchNorm (`MoCo_ResNet` vs `MoCo_ViT` in
moco/builder.py), and its published ResNet-50 numbers come from that. The
defaults here are the code's defaults (ResNet-50 heads, tau = 1.0, LARS base lr
0.6, weight decay 1e-6, 10 warm-up epochs); the ViT recipe sets
`proj_layers=3, pred_last_bn=True, temperature=0.2` and AdamW.

Differences from the code, kept small on purpose: the head layers have biases
(the code's Linear layers have none; a bias before BatchNorm is a no-op) and the
output BatchNorms have a learned scale and shift (the code's are affine=False).
"""
import ml_collections
from flax import nnx
import jax
import jax.numpy as jnp

from jssl.losses.mocov3 import mocov3_loss
from jssl.methods import common
from jssl.methods.byol import Online, Target
from jssl.models import heads


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.proj_hidden = 4096
  c.proj_dim = 256
  c.proj_layers = 2         # official ResNet code: 2; paper text and official ViT code: 3
  c.pred_hidden = 4096
  c.pred_last_bn = False    # BatchNorm on the predictor output: official ViT code True, ResNet code False
  c.temperature = 1.0       # official code and ResNet-50 recipes: 1.0; ViT recipes: 0.2
  return c


def training_defaults(c: ml_collections.ConfigDict) -> None:
  """The official code's defaults (main_moco.py, ResNet-50): LARS with base lr 0.6 per 256 images,
  weight decay 1e-6, 10 warm-up epochs then cosine to 0, momentum 0.99 -> 1. Applied by `jssl.config.base`."""
  c.optim.update(name="lars", lr=0.6, min_lr=0.0, weight_decay=1e-6, warmup_epochs=10.0, momentum=0.9)
  c.ema.update(base=0.99, end=1.0)


def build(config, *, in_channels: int, rngs: nnx.Rngs):
  """Returns (online network, momentum network); the latter starts as a copy of the encoder and projector."""
  c = config.mocov3
  if c.proj_layers < 1:
    raise ValueError(f"mocov3.proj_layers={c.proj_layers} must be >= 1.")
  if not c.temperature > 0:
    raise ValueError(f"mocov3.temperature={c.temperature!r} must be > 0.")
  encoder = common.create_encoder(config, in_channels=in_channels, rngs=rngs)
  dtype = config.model.dtype
  projector = heads.MLP(encoder.out_dim, c.proj_hidden, c.proj_dim, c.proj_layers, batchnorm=True, last_bn=True,
                        dtype=dtype, rngs=rngs)
  predictor = heads.MLP(c.proj_dim, c.pred_hidden, c.proj_dim, 2, batchnorm=True, last_bn=c.pred_last_bn,
                        dtype=dtype, rngs=rngs)
  student = Online(encoder, projector, predictor)
  teacher = Target(nnx.clone(encoder), nnx.clone(projector))
  return student, teacher


def init_state(config) -> dict:
  del config
  return {}


def loss(student, teacher, method_state, views, *, rng, ctx, config):
  """views["global"]: [2, B, S, S, C]. Returns (loss, (method_state, metrics, features [B, D])).

  Queries q_v = predictor(projector(encoder(x_v))), keys k_v = the momentum
  network's projection of x_v; loss = ctr(q1, k2) + ctr(q2, k1).
  """
  del ctx
  x = views["global"]
  queries, keys, feats = [], [], []
  for v in range(x.shape[0]):
    # rng drives stochastic depth in a ViT student; the momentum network runs without it.
    h, _ = student.encoder(x[v], train=True, rng=jax.random.fold_in(rng, v))
    queries.append(student.predictor(student.projector(h, train=True), train=True))
    th, _ = teacher.encoder(x[v], train=True)
    keys.append(teacher.projector(th, train=True))
    feats.append(h)
  value = mocov3_loss(jnp.stack(queries), jnp.stack(keys), config.mocov3.temperature)
  metrics = {"mocov3_loss": value}
  return value, (method_state, metrics, jax.lax.stop_gradient(feats[0]))
