"""Gradient descent at inference time: a learned representation of an ensemble (paper 001).

Given M frozen members with cached features z^(j) [n, d_j], learn a bank
Psi [n, d] and one MLP phi_j per member, phi_j(psi) = a_j(relu(psi W1 + b1) W2
+ b2) with W1 [d, d_j], W2 [d_j, d_j], minimising the cosine loss
    L = mean_i mean_j (1 - cos(phi_j(psi_i), z_i^(j))).
Psi starts at the L2-normalised mean of the members' normalised features; for
the first `warmup_fraction` of the epochs only the MLPs train. At inference the
MLPs are frozen and a new image's psi, started from its normalised mean
feature, is optimised by the same loss.

Choices the paper leaves open, made here:
  * The output activation a_j. The paper's a_j is a ReLU because its ResNet
    targets are post-ReLU (non-negative); a ViT's or Swin's "pre_logits" is a
    LayerNorm output with signed entries that a ReLU can never reproduce. So
    a_j follows the member's features: "relu" when every train feature entry
    is >= 0, "identity" otherwise (`output_activations`, config field
    ensemble.output_activation = auto | relu | identity, per member if
    comma-separated). For ResNet members "auto" is the paper's ReLU.
  * Widths. The paper's members share one width (2048) and Psi has that width.
    With different widths, each member's normalised feature is zero-padded to
    d = max_j d_j before averaging (the first coordinates of every member line
    up; for equal widths this is exactly the paper's initialisation).
  * The bank's Adam is row-wise ("lazy"): each row keeps its own moments and
    step count and is updated only in the minibatches that contain it, so a
    step costs O(batch x d) rather than O(n x d). The MLPs use plain Adam.
  * Inference runs the same optimiser for the same number of epochs with the
    MLPs frozen throughout (there is nothing to warm up).
Every step is one jitted lax.scan over an epoch's minibatches; the bank may be
sharded over a mesh axis (rows), and XLA turns the row gathers and scatters
into the needed collectives.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P


def normalize(x, eps: float = 1e-12):
  """Row-wise x / max(||x||, eps), float32, for [n, d] numpy or jax arrays."""
  x = jnp.asarray(x, jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def width(members) -> int:
  """d = the largest member width (see the module docstring)."""
  return max(int(z.shape[1]) for z in members)


def mean_init(members) -> jax.Array:
  """Normalised mean of the members' normalised features, zero-padded to d: [n, d]."""
  d = width(members)
  padded = [jnp.pad(normalize(z), ((0, 0), (0, d - z.shape[1]))) for z in members]
  return normalize(sum(padded) / len(padded))


def concat(members) -> jax.Array:
  """Baseline: concatenation of the normalised features [n, sum_j d_j]."""
  return jnp.concatenate([normalize(z) for z in members], axis=1)


def init_mlps(key, d: int, widths) -> list[dict]:
  """One 2-layer MLP per member: W1 [d, d_j], W2 [d_j, d_j] (LeCun-normal), zero biases."""
  mlps = []
  for k, dj in zip(jax.random.split(key, len(widths)), widths):
    k1, k2 = jax.random.split(k)
    mlps.append(dict(w1=jax.random.normal(k1, (d, dj)) / np.sqrt(d), b1=jnp.zeros((dj,)),
                     w2=jax.random.normal(k2, (dj, dj)) / np.sqrt(dj), b2=jnp.zeros((dj,))))
  return mlps


ACTIVATIONS = ("relu", "identity")


def output_activations(members, setting: str = "auto") -> tuple[str, ...]:
  """Each member's output activation: `setting` (one, or one per member, comma-separated);
  "auto" is "relu" for non-negative features (post-ReLU, as in the paper) and "identity"
  for signed ones (LayerNorm outputs of ViT and Swin)."""
  parts = [p.strip() for p in str(setting).split(",")]
  if len(parts) == 1:
    parts = parts * len(members)
  if len(parts) != len(members):
    raise ValueError(f"ensemble.output_activation={setting!r} gives {len(parts)} values for {len(members)} "
                     "members; give one or one per member.")
  acts = []
  for part, z in zip(parts, members):
    if part == "auto":
      part = "relu" if float(np.min(np.asarray(z))) >= 0.0 else "identity"
    if part not in ACTIVATIONS:
      raise ValueError(f"ensemble.output_activation={setting!r}: {part!r} is not auto, relu or identity.")
    acts.append(part)
  return tuple(acts)


def apply_mlp(p: dict, psi: jax.Array, act: str = "relu") -> jax.Array:
  """[B, d] -> [B, d_j]: ReLU after the first layer, `act` after the second."""
  h = jax.nn.relu(psi @ p["w1"] + p["b1"])
  y = h @ p["w2"] + p["b2"]
  return jax.nn.relu(y) if act == "relu" else y


def loss_fn(mlps, psi, targets, mask, acts=None) -> jax.Array:
  """Masked mean over rows and members of 1 - cos(phi_j(psi_i), z_i^(j)); targets are unit rows."""
  acts = acts or ("relu",) * len(mlps)
  per_row = sum(1.0 - jnp.sum(normalize(apply_mlp(p, psi, a)) * z, axis=-1)
                for p, z, a in zip(mlps, targets, acts))
  return jnp.sum(per_row * mask) / (len(mlps) * jnp.maximum(jnp.sum(mask), 1.0))


def _lazy_adam_rows(bank, m, v, count, idx, g, lr, b1=0.9, b2=0.999, eps=1e-8):
  """Adam on the rows `idx` of bank [n, d] with per-row moments m, v [n, d] and counts [n]."""
  c = count[idx] + 1
  mi = b1 * m[idx] + (1 - b1) * g
  vi = b2 * v[idx] + (1 - b2) * g * g
  mhat = mi / (1 - b1 ** c[:, None])
  vhat = vi / (1 - b2 ** c[:, None])
  rows = bank[idx] - lr * mhat / (jnp.sqrt(vhat) + eps)
  return bank.at[idx].set(rows), m.at[idx].set(mi), v.at[idx].set(vi), count.at[idx].set(c)


@functools.partial(jax.jit, static_argnames=("n", "batch_size", "train_mlps", "train_bank", "lr", "acts"),
                   donate_argnums=(0,))
def _epoch(carry, targets, key, *, n, batch_size, train_mlps, train_bank, lr, acts):
  """One epoch over a fresh permutation of rows [0, n); carry = (bank, m, v, count, mlps, mlp_opt).

  Bank rows from n on are padding; row n also pads the last minibatch (masked out of the loss).
  """
  bank, m, v, count, mlps, mlp_opt = carry
  steps = -(-n // batch_size)
  perm = jnp.concatenate([jax.random.permutation(key, n), jnp.full((steps * batch_size - n,), n)])
  tx = optax.adam(lr)

  def step(c, idx):
    bank, m, v, count, mlps, mlp_opt = c
    mask = (idx < n).astype(jnp.float32)
    zs = [z[idx] for z in targets]
    loss, (g_mlp, g_psi) = jax.value_and_grad(loss_fn, argnums=(0, 1))(mlps, bank[idx], zs, mask, acts)
    if train_mlps:
      upd, mlp_opt = tx.update(g_mlp, mlp_opt, mlps)
      mlps = optax.apply_updates(mlps, upd)
    if train_bank:
      bank, m, v, count = _lazy_adam_rows(bank, m, v, count, idx, g_psi, lr)
    return (bank, m, v, count, mlps, mlp_opt), loss

  carry, losses = jax.lax.scan(step, carry, perm.reshape(steps, batch_size))
  return carry, jnp.mean(losses)


def fit(members, *, epochs: int = 50, batch_size: int = 256, lr: float = 3e-4, warmup_fraction: float = 0.5,
        mlps: list[dict] | None = None, seed: int = 0, mesh=None, axis: str = "data",
        output_activation: str = "auto"):
  """Learns representations of n images from M members' features.

  Args:
    members: M arrays [n, d_j] of (not necessarily normalised) features of the same images.
    epochs: passes over the n rows.
    batch_size: rows per step.
    lr: Adam learning rate of the MLPs and of the bank.
    warmup_fraction: leading fraction of epochs in which only the MLPs train (training mode).
    mlps: frozen MLPs from an earlier `fit` (inference / transfer mode): only the bank trains,
      for all epochs.
    seed: permutation and MLP-initialisation seed.
    mesh: if given, the bank and its Adam moments are sharded over `axis` by rows.
    output_activation: the MLPs' output activation(s), see `output_activations`. Frozen MLPs
      must get the setting they were trained with: `representations` resolves "auto" on the
      training members and passes the result on.

  Returns:
    (psi [n, d] float32 numpy, mlps, per-epoch mean losses [epochs]).
  """
  if not members:
    raise ValueError("ensemble needs at least one member.")
  n = members[0].shape[0]
  if any(z.shape[0] != n for z in members):
    raise ValueError(f"ensemble members must describe the same images; got rows {[z.shape[0] for z in members]}.")
  d = width(members)
  acts = output_activations(members, output_activation)
  key = jax.random.PRNGKey(seed)
  frozen = mlps is not None
  if frozen:
    if len(mlps) != len(members) or any(p["w2"].shape[0] != z.shape[1] for p, z in zip(mlps, members)):
      raise ValueError("the frozen MLPs do not fit these members (their number or widths differ).")
    if mlps[0]["w1"].shape[0] != d:
      raise ValueError(f"the frozen MLPs take width {mlps[0]['w1'].shape[0]} inputs, these members give {d}.")
    mlps = jax.tree.map(jnp.array, mlps)  # a copy: the epoch step donates its carry
  else:
    mlps = init_mlps(jax.random.fold_in(key, 1), d, [z.shape[1] for z in members])
  shards = 1 if mesh is None else mesh.shape[axis]
  pad = -(-(n + 1) // shards) * shards - n     # >= 1 dummy row, rows divisible by the shards
  targets = [jnp.pad(normalize(z), ((0, pad), (0, 0))) for z in members]
  bank = jnp.pad(mean_init(members), ((0, pad), (0, 0)))
  m, v, count = jnp.zeros_like(bank), jnp.zeros_like(bank), jnp.zeros((n + pad,), jnp.int32)
  if mesh is not None:
    rows = NamedSharding(mesh, P(axis, None))
    bank, m, v = (jax.device_put(a, rows) for a in (bank, m, v))
  carry = (bank, m, v, count, mlps, optax.adam(lr).init(mlps))
  warmup = 0 if frozen else int(round(epochs * warmup_fraction))
  losses = []
  from jssl.writers import phase
  what = "ensemble: representations with frozen MLPs" if frozen else "ensemble: fitting the bank and MLPs"
  for e in phase(range(epochs), what, unit="epoch"):  # a Python loop over epochs; each epoch is one jitted scan
    carry, loss = _epoch(carry, targets, jax.random.fold_in(key, 1000 + e), n=n, batch_size=batch_size,
                         train_mlps=not frozen, train_bank=e >= warmup, lr=lr, acts=acts)
    losses.append(float(loss))
  return np.asarray(carry[0][:n]), carry[4], np.asarray(losses)


def representations(train_members, test_members, **kwargs):
  """Paper 001 end to end: learn the train bank and MLPs, then test representations with frozen MLPs.

  Returns:
    dict(train [n, d], test [m, d], mlps, train_losses, test_losses).
  """
  kwargs["output_activation"] = ",".join(output_activations(train_members, kwargs.get("output_activation", "auto")))
  train_psi, mlps, train_losses = fit(train_members, **kwargs)
  kw = {k: v for k, v in kwargs.items() if k != "warmup_fraction"}
  test_psi, _, test_losses = fit(test_members, mlps=mlps, **kw)
  return dict(train=train_psi, test=test_psi, mlps=mlps, train_losses=train_losses, test_losses=test_losses)
