"""Device mesh and shardings: the batch is split over `data`, state is replicated.

Meshes use `AxisType.Auto` so that model code (e.g. a ViT's class-token
concatenation) needs no sharding annotations; XLA propagates the batch sharding
and inserts the collectives a global-view computation needs (BatchNorm
statistics, the DINO center, memory-bank writes).
"""
import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over the first `num_devices` devices (all devices by default)."""
  devices = jax.devices()
  n = len(devices) if num_devices is None else num_devices
  if n < 1 or n > len(devices):
    raise ValueError(f"num_devices={n} must be between 1 and the {len(devices)} available devices.")
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


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
