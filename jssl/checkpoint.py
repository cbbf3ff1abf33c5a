"""Checkpoints with orbax: the train state, the data iterator's state and the config.

orbax writes each step into a temporary directory and renames it when complete,
so an interrupted save never leaves a half-written checkpoint that a later run
would pick up. Runs resume automatically from the newest step in the workdir.
"""
import os

import jax
import orbax.checkpoint as ocp

from jssl.data import pipeline

# Fields that fix the shapes of the saved state: a checkpoint written with other
# values cannot be restored into this config.
_SHAPE_FIELDS = ("method", "model", "data.source", "data.name", "data.image_size")


def _get(d: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


class Checkpointer:
  """Saves and restores {state, data iterator, config} under workdir/checkpoints."""

  def __init__(self, workdir: str, *, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: dict, data_iterator, config) -> None:
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=pipeline.save_args(data_iterator),
        config=ocp.args.JsonSave(config.to_dict())))
    self._manager.wait_until_finished()

  def saved_config(self, step: int) -> dict:
    try:
      return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    except Exception as e:  # orbax raises several types for unreadable files
      raise ValueError(f"The checkpoint at {self.directory}/{step} is corrupt or unreadable "
                       f"({type(e).__name__}); delete it or use a new --workdir.") from e

  def check_compatible(self, step: int, config) -> None:
    """Raises one sentence naming the fields that differ from the checkpoint's config."""
    saved, current = self.saved_config(step), config.to_dict()
    diffs = [f for f in _SHAPE_FIELDS if _get(saved, f) != _get(current, f)]
    method = current.get("method")
    if _get(saved, "method") == method and _get(saved, method) != current.get(method):
      diffs.append(method)
    if diffs:
      shown = ", ".join(f"{f}={_get(saved, f)!r} (config has {_get(current, f)!r})" for f in diffs)
      raise ValueError(f"The checkpoint in {self.directory} is incompatible with this config: it was "
                       f"written with {shown}; use a new --workdir or the checkpoint's config.")

  def restore(self, step: int, abstract_state, data_iterator) -> dict:
    """Restores into `abstract_state` (ShapeDtypeStructs carrying shardings) and the iterator."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=pipeline.restore_args(data_iterator)))
    except Exception as e:
      raise ValueError(f"The checkpoint at {self.directory}/{step} could not be restored into this config "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                       f"use a new --workdir.") from e
    return restored["state"]

  def close(self) -> None:
    self._manager.close()


def abstract_with_shardings(abstract_state, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


def load_pretrained(workdir: str, *, step: int | None = None, mesh=None):
  """Loads a jssl training run for evaluation.

  Args:
    workdir: the --workdir of a `python -m jssl.main` run.
    step: checkpoint step (default: the newest).
    mesh: where to place the restored arrays (default: all devices, replicated).

  Returns:
    (config, setup, state): the run's ConfigDict, its static `state.Setup`
    (graph definitions; `setup.encoder_def` rebuilds the encoder) and the train
    state (use `setup.encoder_params(state, "student" | "teacher")`).
  """
  import ml_collections
  from jssl import config as config_lib
  from jssl import sharding
  from jssl import state as state_lib
  from jssl.data import sources

  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No jssl checkpoint in {workdir}: {directory} does not exist.")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
      raise FileNotFoundError(f"No checkpoint step {step} in {directory} (it has {list(manager.all_steps())}).")
    saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    config = ml_collections.ConfigDict(saved)
    info = sources.dataset_info(config.data)
    total = config_lib.total_steps(config, info["num_train"])
    setup, init_fn = state_lib.build(config, in_channels=info["image_shape"][-1], num_classes=info["num_classes"],
                                     total_steps=total, steps_per_epoch=config_lib.steps_per_epoch(config, info["num_train"]))
    mesh = mesh or sharding.make_mesh()
    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
    target = abstract_with_shardings(abstract, state_lib.state_shardings(config, abstract, mesh))
    try:
      state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    except Exception as e:
      raise ValueError(f"The checkpoint at {directory}/{step} does not match its own config "
                       f"({type(e).__name__}); it may be corrupt.") from e
  finally:
    manager.close()
  return config, setup, state
