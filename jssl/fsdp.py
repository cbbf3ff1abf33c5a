"""FSDP: which parameters are split over the mesh's `fsdp` axis, and along which dimension.

Fully sharded data parallelism keeps 1 / fsdp of every large parameter, of its
EMA teacher copy and of its optimiser moments on each device; XLA's SPMD
partitioner gathers a parameter where a layer needs it and reduce-scatters its
gradient (nothing here writes a collective). Configured by

  config.mesh.fsdp = 1            # devices along `fsdp`; 1: pure data parallelism, nothing split; -1: all
  config.mesh.fsdp_rules = ""     # comma-separated regexes over parameter paths ("encoder/blocks/3/fc1/kernel");
                                  # "": every parameter may be split; else only those a pattern re.search-es
  config.mesh.fsdp_min_size = 2**18   # parameters with fewer elements stay replicated

A parameter chosen by the rules is split along its largest dimension that
divides by the fsdp size (the first of equal ones); with none it stays
replicated. Small tensors (biases, norms, position embeddings) stay replicated:
their gathers would cost more latency than the memory they save (1 MiB of
float32 by default). The EMA teacher has the student's paths and shapes, so it
takes the same specs and its update needs no communication; an optimiser-state
leaf whose path ends with a parameter's path and that has its shape (Adam's
mu and nu, LARS's momentum) takes that parameter's spec; the rest of the
optimiser state (step counts, schedules) is replicated.
"""
import math
import re

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from jssl import sharding

DEFAULT_MIN_SIZE = 2**18


def mesh_config(config) -> tuple[int, str, int]:
  """(fsdp, fsdp_rules, fsdp_min_size) of `config`, with the defaults for configs that
  predate the `mesh` section (checkpoints of older runs)."""
  m = config.get("mesh", None) or {}
  return m.get("fsdp", 1), str(m.get("fsdp_rules", "") or ""), int(m.get("fsdp_min_size", DEFAULT_MIN_SIZE))


def patterns(text: str) -> tuple[re.Pattern, ...]:
  """The compiled comma-separated patterns of mesh.fsdp_rules; () for an empty text."""
  out = []
  for part in (p.strip() for p in text.split(",")):
    if not part:
      continue
    try:
      out.append(re.compile(part))
    except re.error as e:
      raise ValueError(f"mesh.fsdp_rules has {part!r}, which is not a valid regular expression ({e}).") from None
  return tuple(out)


def validate(config, *, num_devices: int) -> None:
  """Raises one sentence naming the bad `mesh.*` field."""
  m = config.get("mesh", None) or {}
  sharding.check_fsdp(m.get("fsdp", 1), num_devices)
  min_size = m.get("fsdp_min_size", DEFAULT_MIN_SIZE)
  if not isinstance(min_size, int) or min_size < 0:
    raise ValueError(f"mesh.fsdp_min_size={min_size!r} must be an integer >= 0 (elements).")
  patterns(str(m.get("fsdp_rules", "") or ""))


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def param_spec(path: str, shape: tuple[int, ...], size: int, rules: tuple[re.Pattern, ...],
               min_size: int) -> P:
  """The PartitionSpec of one parameter: P() or `fsdp` on its largest dimension divisible by `size`."""
  if size <= 1 or math.prod(shape) < max(min_size, 1) or (rules and not any(r.search(path) for r in rules)):
    return P()
  divisible = [i for i, dim in enumerate(shape) if dim % size == 0]
  if not divisible:
    return P()
  axis = max(divisible, key=lambda i: (shape[i], -i))
  return P(*([None] * axis), sharding.FSDP_AXIS)


def param_specs(config, params, mesh: jax.sharding.Mesh):
  """PartitionSpecs for a tree of parameters (anything with .shape) on `mesh`."""
  _, text, min_size = mesh_config(config)
  rules, size = patterns(text), sharding.fsdp_size(mesh)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: param_spec("/".join(_names(path)), tuple(x.shape), size, rules, min_size), params)


def _named(specs, mesh: jax.sharding.Mesh):
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))


def param_shardings(config, params, mesh: jax.sharding.Mesh):
  """NamedShardings for a tree of parameters (or of their gradients)."""
  return _named(param_specs(config, params, mesh), mesh)


def mirrored_specs(tree, params, specs):
  """Specs for `tree` (optimiser state): a leaf whose path ends with a parameter's path and
  that has its shape takes the parameter's spec; every other leaf is replicated."""
  table = {}
  for (path, x), spec in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(
      specs, is_leaf=lambda s: isinstance(s, P))):
    table[_names(path)] = (tuple(x.shape), spec)

  def one(path, x):
    names = _names(path)
    for start in range(len(names)):
      hit = table.get(names[start:])
      if hit is not None and hit[0] == tuple(x.shape):
        return hit[1]
    return P()
  return jax.tree_util.tree_map_with_path(one, tree)


def shard_state(config, abstract_state: dict, shardings: dict, mesh: jax.sharding.Mesh) -> dict:
  """`shardings` (the train state's) with params, teacher_params and opt_state split over
  `fsdp` by the rules; unchanged on a mesh without an fsdp axis."""
  if sharding.fsdp_size(mesh) <= 1:
    return shardings
  params = abstract_state["params"]
  specs = param_specs(config, params, mesh)
  return dict(shardings, params=_named(specs, mesh),
              teacher_params=param_shardings(config, abstract_state["teacher_params"], mesh),
              opt_state=_named(mirrored_specs(abstract_state["opt_state"], params, specs), mesh))
