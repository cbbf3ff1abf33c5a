"""The train state (one pytree of plain dicts) and the NNX split/merge around it.

This is the only module that knows how NNX stores variables. The state is

  {"step", "rng", "params", "batch_stats", "opt_state", "teacher_params",
   "teacher_stats", "method_state", "probe_params", "probe_opt_state"}

with every network's variables as nested dicts of arrays, so EMA, optax,
sharding and orbax all see ordinary pytrees. The graph definitions and optax
transforms are static and closed over by the step.
"""
import dataclasses
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jssl import fsdp, optim, sharding


@dataclasses.dataclass(frozen=True)
class Setup:
  """Static things the step closes over."""
  method: Any                   # the method module
  student_def: Any              # nnx.GraphDef of the student
  encoder_def: Any              # nnx.GraphDef of the student's (and teacher's) `encoder`
  teacher_def: Any              # nnx.GraphDef of the teacher (or None)
  tx: optax.GradientTransformation
  probe_tx: optax.GradientTransformation
  total_steps: int
  steps_per_epoch: int
  num_classes: int
  feature_dim: int

  def student(self, params, batch_stats) -> nnx.Module:
    return nnx.merge(self.student_def, params, batch_stats)

  def teacher(self, params, batch_stats) -> nnx.Module:
    return nnx.merge(self.teacher_def, params, batch_stats)

  def encoder_params(self, state: dict, network: str = "student") -> tuple[dict, dict]:
    """(params, batch stats) of the student's or the teacher's encoder in `state`."""
    if network == "student":
      params, stats = state["params"], state["batch_stats"]
    else:
      params, stats = state["teacher_params"], state["teacher_stats"]
    return params["encoder"], stats.get("encoder", {})


def split(module: nnx.Module):
  """module -> (graphdef, params dict, batch-stats dict); other variable kinds are rejected."""
  graphdef, params, stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
  if jax.tree.leaves(rest):
    raise TypeError(f"{type(module).__name__} holds variables that are neither Param nor BatchStat: {rest}")
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats)


def batch_stats(module: nnx.Module) -> dict:
  return nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))


def build(config, *, in_channels: int, num_classes: int, total_steps: int, steps_per_epoch: int):
  """Returns (setup, init_fn) where init_fn(rng) -> train state (jit it with shardings)."""
  method = importlib.import_module(f"jssl.methods.{config.method}")

  def make_nets(seed_key):
    return method.build(config, in_channels=in_channels, rngs=nnx.Rngs(params=seed_key))

  abstract_student, abstract_teacher = nnx.eval_shape(lambda: make_nets(jax.random.key(0)))
  student_def, abstract_params, _ = split(abstract_student)
  teacher_def = split(abstract_teacher)[0]
  tx = optim.make_optimizer(config, abstract_params, total_steps, steps_per_epoch)
  probe_tx = optax.adam(config.probe.lr)
  encoder_def = split(abstract_student.encoder)[0]
  setup = Setup(method, student_def, encoder_def, teacher_def, tx, probe_tx, total_steps, steps_per_epoch,
                num_classes, abstract_student.encoder.out_dim)

  def init_fn(rng: jax.Array) -> dict:
    init_key, run_key = jax.random.split(rng)
    student, teacher = make_nets(init_key)
    _, params, stats = split(student)
    _, t_params, t_stats = split(teacher)
    probe_params = {"kernel": jnp.zeros((setup.feature_dim, num_classes), jnp.float32),
                    "bias": jnp.zeros((num_classes,), jnp.float32)}
    return {
        "step": jnp.zeros([], jnp.int32),
        "rng": run_key,
        "params": params,
        "batch_stats": stats,
        "opt_state": tx.init(params),
        "teacher_params": t_params,
        "teacher_stats": t_stats,
        "method_state": method.init_state(config),
        "probe_params": probe_params,
        "probe_opt_state": probe_tx.init(probe_params),
    }

  return setup, init_fn


def state_shardings(config, abstract_state: dict, mesh: jax.sharding.Mesh) -> dict:
  """Shardings of the train state: replicated, except what FSDP or a method partitions.

  On a mesh with an `fsdp` axis, params, teacher_params and opt_state are split
  by config.mesh's rules (`jssl.fsdp.shard_state`). A method module may define
  `state_partition(config, mesh)` returning PartitionSpecs for (a prefix of)
  its `init_state(config)` tree, e.g. memory-bank rows split over the batch
  axes; everything else is replicated.
  """
  out = fsdp.shard_state(config, abstract_state, sharding.tree_replicated(abstract_state, mesh), mesh)
  method = importlib.import_module(f"jssl.methods.{config.method}")
  if hasattr(method, "state_partition"):
    specs = method.state_partition(config, mesh)
    out["method_state"] = jax.tree.map(
        lambda spec, sub: jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, spec), sub),
        specs, abstract_state["method_state"], is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  return out


def ema_update(student_params: dict, teacher_params: dict, momentum: jax.Array) -> dict:
  """teacher <- m teacher + (1 - m) student, over the sub-networks the teacher has."""
  matching = {k: student_params[k] for k in teacher_params}
  return optax.incremental_update(matching, teacher_params, 1.0 - momentum)


def count_params(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))

