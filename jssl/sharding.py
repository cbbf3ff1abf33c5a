"""Device mesh and shardings: the batch is split over every device, state is replicated
or (FSDP) split over the `fsdp` axis.

Pure data parallelism is a 1-D mesh ("data",). With FSDP (config.mesh.fsdp > 1)
the mesh is 2-D, ("data", "fsdp"): the batch is split over both axes, so every
device still gets its own slice of the global batch, and parameters, the EMA
teacher and the optimiser state are split over `fsdp` (jssl.fsdp). Meshes use
`AxisType.Auto` so that model code (e.g. a ViT's class-token concatenation)
needs no sharding annotations; XLA propagates the shardings and inserts the
collectives a global-view computation needs (BatchNorm statistics, the DINO
center, memory-bank writes, FSDP's parameter gathers and gradient reductions).
"""
import math

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"


def make_mesh(num_devices: int | None = None, fsdp: int = 1) -> jax.sharding.Mesh:
  """A mesh over the first `num_devices` devices (all devices by default): 1-D ("data",)
  with fsdp = 1, else 2-D ("data", "fsdp") of shape (num_devices / fsdp, fsdp); fsdp = -1
  puts every device on `fsdp`."""
  devices = jax.devices()
  n = len(devices) if num_devices is None else num_devices
  if n < 1 or n > len(devices):
    raise ValueError(f"num_devices={n} must be between 1 and the {len(devices)} available devices.")
  check_fsdp(fsdp, n)
  fsdp = n if fsdp == -1 else fsdp
  if fsdp == 1:
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])
  return jax.make_mesh((n // fsdp, fsdp), (DATA_AXIS, FSDP_AXIS), axis_types=(AxisType.Auto,) * 2,
                       devices=devices[:n])


def check_fsdp(fsdp, num_devices: int) -> None:
  """One sentence naming mesh.fsdp unless it is -1 or a positive divisor of `num_devices`."""
  if not isinstance(fsdp, int) or isinstance(fsdp, bool) or not (fsdp == -1 or (fsdp >= 1 and num_devices % fsdp == 0)):
    raise ValueError(f"mesh.fsdp={fsdp!r} must be -1 (all devices) or a positive integer that divides the "
                     f"{num_devices} devices.")


def fsdp_size(mesh: jax.sharding.Mesh | None) -> int:
  """Devices along the mesh's `fsdp` axis (1 without one)."""
  return 1 if mesh is None else mesh.shape.get(FSDP_AXIS, 1)


def batch_axes(mesh: jax.sharding.Mesh) -> str | tuple[str, ...]:
  """The mesh axes the batch (and a memory bank's rows) are split over: "data" on a 1-D
  mesh, ("data", "fsdp") on an FSDP mesh, so that every device holds a distinct slice."""
  return DATA_AXIS if FSDP_AXIS not in mesh.shape else (DATA_AXIS, FSDP_AXIS)


def axis_size(mesh: jax.sharding.Mesh, axes: str | tuple[str, ...]) -> int:
  """Devices along `axes`, one mesh axis name or a tuple of them."""
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


def constrain_batch(x: jax.Array) -> jax.Array:
  """x with its leading (batch) axis pinned to the batch axes when traced on an FSDP mesh
  (the train step sets it as the abstract mesh), else x unchanged.

  Models call it on the activations between their blocks. Left alone, XLA's
  partitioner may keep a split weight in place and reshard the activations
  around it (gathering [B, T, D] tensors instead of a layer's parameters);
  pinned activations make it gather each layer's parameters, as FSDP intends.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if FSDP_AXIS not in getattr(mesh, "axis_names", ()):
    return x
  return jax.lax.with_sharding_constraint(x, P((DATA_AXIS, FSDP_AXIS)))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis over `batch_axes(mesh)`, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def tree_replicated(tree, mesh: jax.sharding.Mesh):
  """The replicated sharding for every leaf of `tree`."""
  return jax.tree.map(lambda _: replicated(mesh), tree)


# Environment variables read by `initialize_distributed` when its arguments are not given.
COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JSSL_COORDINATOR_ADDRESS", "JSSL_NUM_PROCESSES", "JSSL_PROCESS_ID"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins this process to a multi-process run: `jax.distributed.initialize`.

  Arguments that are None come from $JSSL_COORDINATOR_ADDRESS (or JAX's own
  $JAX_COORDINATOR_ADDRESS), $JSSL_NUM_PROCESSES and $JSSL_PROCESS_ID, and
  those still unset from the cluster (SLURM, Cloud TPU, Open MPI), which JAX
  detects by itself. Call it before anything touches a device. CPU processes
  exchange collectives over TCP with gloo (the default of recent JAX, set
  here for older versions, which have none).
  """
  import os
  env_int = lambda name: int(os.environ[name]) if os.environ.get(name, "").strip() else None
  coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
  num_processes = env_int(NUM_PROCESSES_ENV) if num_processes is None else num_processes
  process_id = env_int(PROCESS_ID_ENV) if process_id is None else process_id
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
