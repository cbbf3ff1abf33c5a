"""Optimizers from config: warm-up + cosine learning rate, scheduled weight decay,
no decay on norms and biases, gradient clipping (of the global norm, or of each
tensor's norm as the DINO/iBOT/SOVE code does: optim.clip_mode) and frozen
parameter groups."""
import re

import jax
import jax.numpy as jnp
import optax


def learning_rate(config, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up to lr x batch/256, then cosine decay to min_lr (DINO/BYOL recipe)."""
  peak = config.optim.lr * config.batch_size / 256.0
  warmup = int(config.optim.warmup_epochs * steps_per_epoch)
  warmup = min(warmup, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=config.optim.min_lr)


def weight_decay(config, total_steps: int):
  """Constant, or cosine from weight_decay to weight_decay_end (DINO: 0.04 -> 0.4)."""
  wd, end = config.optim.weight_decay, config.optim.weight_decay_end
  if end < 0 or end == wd:
    return wd
  return lambda step: end + 0.5 * (wd - end) * (1 + jnp.cos(jnp.pi * jnp.minimum(step / total_steps, 1.0)))


def path_str(path) -> str:
  """'encoder/stage1/conv/kernel' for a tree path of dict keys."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params):
  """True for weights that get weight decay: matrices and kernels, not norms or biases."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def freeze(mask, until_step: int) -> optax.GradientTransformation:
  """Zeroes the updates of parameters where `mask` is True while step < until_step.

  Used before and after the optimizer so that frozen parameters (DINO's last
  layer in the first epoch) neither move nor take weight decay, and their
  gradients do not enter the clipping norm.
  """
  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    active = state.count >= until_step
    updates = jax.tree.map(lambda u, m: jnp.where(active | (not m), u, jnp.zeros_like(u)), updates, mask)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def hold(inner: optax.GradientTransformation, until_step: int) -> optax.GradientTransformation:
  """`inner` with its state held still while step < until_step: zero updates, no state change.

  PyTorch's Adam skips a parameter whose gradient is None, so the per-parameter
  step count and moments of DINO's frozen last layer start when it unfreezes
  and its first update is bias-corrected as step 1. Optax's Adam has one count
  for all parameters; wrapped in `hold`, the frozen group's Adam starts at
  until_step as PyTorch's does.
  """
  def init_fn(params):
    return (jnp.zeros([], jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None):
    count, inner_state = state
    new_updates, new_inner = inner.update(updates, inner_state, params)
    active = count >= until_step
    new_updates = jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_inner, inner_state)
    return new_updates, (optax.safe_increment(count), new_inner)

  return optax.GradientTransformation(init_fn, update_fn)


def clip_per_tensor(max_norm: float) -> optax.GradientTransformation:
  """Scales each gradient tensor g to at most `max_norm`: g * min(1, max_norm / (||g|| + 1e-6)).

  The clipping of the official DINO, iBOT and SOVE code (`clip_gradients`), which
  clips every parameter's gradient on its own; `optax.clip_by_global_norm` clips
  their joint norm instead.
  """
  def update_fn(updates, state, params=None):
    del params
    def clip(g):
      norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
      return (g * jnp.minimum(1.0, max_norm / (norm + 1e-6))).astype(g.dtype)
    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


CLIP_MODES = ("global", "per_tensor")


def frozen_mask(params, pattern: str):
  """True for parameters whose path matches the regex `pattern`."""
  rx = re.compile(pattern)
  return jax.tree.map_with_path(lambda path, _: bool(pattern) and rx.search(path_str(path)) is not None, params)


def make_optimizer(config, params, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """The full optax chain for `params` (a dict of float32 arrays)."""
  lr = learning_rate(config, total_steps, steps_per_epoch)
  wd = weight_decay(config, total_steps)
  mask = decay_mask(params)
  o = config.optim
  if o.name == "adamw":
    base = optax.adamw(lr, b1=0.9, b2=o.b2, weight_decay=wd, mask=mask)
  elif o.name == "lars":
    base = optax.lars(lr, weight_decay=wd, weight_decay_mask=mask, trust_ratio_mask=mask, momentum=o.momentum)
  elif o.name == "sgd":
    base = optax.chain(optax.add_decayed_weights(wd, mask), optax.sgd(lr, momentum=o.momentum))
  else:
    raise ValueError(f"optim.name={o.name!r} must be one of lars, adamw, sgd.")
  parts = []
  if o.frozen and o.freeze_epochs > 0:
    fmask = frozen_mask(params, o.frozen)
    if not any(jax.tree.leaves(fmask)):
      raise ValueError(f"optim.frozen={o.frozen!r} matches no parameter path.")
    until = int(o.freeze_epochs * steps_per_epoch)
    frozen_adam = o.get("frozen_adam", "held")
    if frozen_adam not in ("held", "running"):
      raise ValueError(f"optim.frozen_adam={frozen_adam!r} must be held or running.")
    if o.name == "adamw" and frozen_adam == "held":
      # The frozen group's Adam moments and count start when it unfreezes (PyTorch);
      # learning rate and weight decay follow the global step as for every group.
      frozen_tx = optax.chain(hold(optax.scale_by_adam(b1=0.9, b2=o.b2), until),
                              optax.add_decayed_weights(wd, mask), optax.scale_by_learning_rate(lr))
      labels = jax.tree.map(lambda f: "frozen" if f else "rest", fmask)
      base = optax.multi_transform({"frozen": frozen_tx, "rest": base}, labels)
    parts.append(freeze(fmask, until))
    base = optax.chain(base, freeze(fmask, until))
  if o.clip_grad > 0:
    mode = o.get("clip_mode", "global")
    if mode not in CLIP_MODES:
      raise ValueError(f"optim.clip_mode={mode!r} must be one of {', '.join(CLIP_MODES)}.")
    parts.append(optax.clip_by_global_norm(o.clip_grad) if mode == "global" else clip_per_tensor(o.clip_grad))
  return optax.chain(*parts, base)


def ema_momentum(config, step: jax.Array, total_steps: int) -> jax.Array:
  """Teacher momentum, cosine from ema.base to ema.end over training (BYOL/DINO)."""
  frac = jnp.minimum(step / max(total_steps, 1), 1.0)
  return config.ema.end - (config.ema.end - config.ema.base) * (jnp.cos(jnp.pi * frac) + 1) / 2
