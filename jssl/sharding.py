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
