"""Checkpoints with orbax: the train state, the data iterator's state, the config
and a fingerprint of every array.

orbax writes each step into a temporary directory and renames it when complete,
so an interrupted save never leaves a half-written checkpoint that a later run
would pick up. Runs resume automatically from the newest intact step in the
workdir: a step that fails to restore, or whose arrays do not match their
fingerprints, is moved aside to workdir/checkpoints_damaged (never deleted) and
the next older one is tried.

Resuming checks the new config against the checkpoint's: fields that change the
run's trajectory are refused unless `allow_changes`, the others are accepted and
listed (see `resume_changes`).
"""
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from jssl.data import pipeline

# Fields that may change on resume without changing what the run computes: how it
# is logged, evaluated, saved and spread over devices, where the data is read
# from, and how long it goes on. A dotted prefix covers its whole section.
# A manager that only reads: the options orbax would otherwise set itself, warning about each.
READ_ONLY = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0, create=False)
HARMLESS = ("log_every_steps", "checkpoint_every_steps", "checkpoint_steps", "keep_checkpoints", "num_devices", "mesh",
            "on_nonfinite", "total_steps", "num_epochs", "eval", "data.data_dir", "data.download",
            "data.worker_count", "data.read_threads", "data.prefetch_batches", "data.eval_split", "analysis")


class DamagedCheckpoint(Exception):
  """A checkpoint step that cannot be read or does not match its fingerprints."""


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def resume_changes(saved: dict, current: dict) -> tuple[list[str], list[str]]:
  """(refused, accepted) config differences as 'name: old -> new', saved -> current.

  A field only one side has (added or removed by a newer jssl) is accepted: its
  default is meant to keep what older runs did, and refusing would strand every
  run across an upgrade.
  """
  old, new = _flatten(saved), _flatten(json.loads(json.dumps(current)))
  refused, accepted = [], []
  for name in sorted(set(old) | set(new)):
    if old.get(name, "<absent>") != new.get(name, "<absent>"):
      harmless = name not in old or name not in new or any(name == h or name.startswith(h + ".") for h in HARMLESS)
      (accepted if harmless else refused).append(f"{name}: {old.get(name, '<absent>')!r} -> {new.get(name, '<absent>')!r}")
  return refused, accepted


def _words(x: jax.Array) -> jax.Array:
  """The bits of `x` as a flat uint32 vector."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype.itemsize == 2:
    x = jax.lax.bitcast_convert_type(x, jnp.uint16)
  elif x.dtype.itemsize >= 4:
    x = jax.lax.bitcast_convert_type(x, jnp.uint32)
  return x.astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprint_arrays(state):
  def one(x):
    w = _words(x)
    i = jnp.arange(w.size, dtype=jnp.uint32)
    # Odd weights: any single changed word changes the first sum; the mixed second
    # sum makes changes that cancel in the first one unlikely to cancel in both.
    mixed = (w ^ (w >> 16) ^ i) * jnp.uint32(0x45D9F3B)
    return jnp.stack([jnp.sum(w * (2 * i + 1), dtype=jnp.uint32), jnp.sum(mixed ^ (mixed >> 13), dtype=jnp.uint32)])
  return jax.tree.map(one, state)


def path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def fingerprints(state) -> dict[str, str]:
  """{leaf path: 16 hex digits} for every array of `state`, computed where the arrays live."""
  sums = jax.device_get(_fingerprint_arrays(state))
  return {path_str(p): "".join(f"{int(v):08x}" for v in s) for p, s in jax.tree_util.tree_leaves_with_path(sums)}


def _first_line(e: BaseException) -> str:
  """The innermost cause's first line: tensorstore names the array and the file there."""
  for _ in range(8):
    if (e.__cause__ or e.__context__) is None:
      break
    e = e.__cause__ or e.__context__
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def verify(manager: ocp.CheckpointManager, step: int, state: dict) -> None:
  """Raises DamagedCheckpoint unless every array of the restored `state` matches its fingerprint."""
  if not (manager.directory / str(step) / "fingerprints").exists():
    return   # written before fingerprints were recorded
  try:
    expected = manager.restore(step, args=ocp.args.Composite(fingerprints=ocp.args.JsonRestore()))["fingerprints"]
  except Exception as e:
    raise DamagedCheckpoint(f"its fingerprints do not read ({_first_line(e)})") from e
  actual = fingerprints(state)
  for name in sorted(set(expected) | set(actual)):
    if expected.get(name) != actual.get(name):
      raise DamagedCheckpoint(f"array {name} does not match its fingerprint")


class _Manager(ocp.CheckpointManager):
  """orbax's manager, except that it leaves JAX's preemption sync to the trainer.

  With several processes the trainer asks `multihost_utils.reached_preemption_sync_point`
  at every step which step all processes stop at (train.StopRequests). JAX agrees on
  the step after the largest step any process last asked about; orbax asks too, from
  the thread that finishes an asynchronous save, about that save's (older) step, and
  could so make the agreed step one the trainer has passed already.
  """

  def reached_preemption(self, step: int) -> bool:
    return False


class Checkpointer:
  """Saves and restores {state, data iterator, config, fingerprints} under workdir/checkpoints."""

  def __init__(self, workdir: str, *, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.damaged_directory = os.path.abspath(os.path.join(workdir, "checkpoints_damaged"))
    self.keep, self._last_saved = keep, None
    # Async: save() returns once the arrays are copied off the accelerator; the files
    # are written in the background while training goes on. `wait()` blocks until done.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    self._manager = _Manager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: dict, data_iterator, config) -> None:
    """Starts saving `step` (a step saved already is skipped); the previous save finishes first."""
    if step == self._last_saved or step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=pipeline.save_args(data_iterator),
        config=ocp.args.JsonSave(config.to_dict()),
        fingerprints=ocp.args.JsonSave(fingerprints(state))))
    self._last_saved = step

  def wait(self) -> None:
    """Blocks until the save in flight is on disk (raises if it failed)."""
    self._manager.wait_until_finished()

  def saved_config(self, step: int) -> dict:
    try:
      return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    except Exception as e:  # orbax raises several types for unreadable files
      raise DamagedCheckpoint(f"its config does not read ({_first_line(e)})") from e

  def _check_shapes(self, step: int, abstract_state) -> None:
    """Raises ValueError when the saved arrays are not the arrays this config builds."""
    try:
      saved = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")
      saved = {path_str(p): (tuple(m.shape), str(m.dtype)) for p, m in jax.tree_util.tree_leaves_with_path(saved)}
    except Exception as e:
      raise DamagedCheckpoint(f"its array metadata does not read ({_first_line(e)})") from e
    wanted = {path_str(p): (tuple(a.shape), str(a.dtype)) for p, a in jax.tree_util.tree_leaves_with_path(abstract_state)}
    for name in sorted(set(saved) | set(wanted)):
      if saved.get(name) != wanted.get(name):
        raise ValueError(f"The checkpoint at {self.directory}/{step} holds other arrays than this config builds "
                         f"({name}: saved {saved.get(name, 'nothing')}, config {wanted.get(name, 'nothing')}); "
                         f"use the checkpoint's config or a new --workdir.")

  def _restore_verified(self, step: int, abstract_state, data_iterator) -> dict:
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=pipeline.restore_args(data_iterator)))
    except Exception as e:
      raise DamagedCheckpoint(f"its arrays do not read ({_first_line(e)})") from e
    verify(self._manager, step, restored["state"])
    return restored["state"]

  def restore_latest(self, abstract_state, data_iterator, config, *, allow_changes: bool = False, log=print):
    """Restores the newest intact checkpoint into `abstract_state` and `data_iterator`.

    Damaged steps newer than it are moved to `damaged_directory`, one line each
    through `log`. Returns (step, state, accepted config changes), or None when
    the workdir has no checkpoint. Raises ValueError, one sentence, when the
    config changes the run (unless `allow_changes`) or when no step is intact
    (then nothing is moved).
    """
    damaged = []
    for step in reversed(self.all_steps()):
      try:
        refused, accepted = resume_changes(self.saved_config(step), config.to_dict())
        if refused and not allow_changes:
          raise ValueError(f"The checkpoint in {self.directory} is incompatible with this config, which changes the "
                           f"run it resumes: {', '.join(refused)}; use the checkpoint's values, a new --workdir, "
                           f"or --allow_config_changes to resume anyway.")
        self._check_shapes(step, abstract_state)
        state = self._restore_verified(step, abstract_state, data_iterator)
      except DamagedCheckpoint as e:
        damaged.append((step, str(e)))
        continue
      for bad, why in damaged:
        log(f"Checkpoint step {bad} is damaged: {why}; moved it to {self._move_aside(bad)}.")
      return step, state, refused + accepted
    if damaged:
      raise ValueError(f"No checkpoint in {self.directory} is intact ("
                       + "; ".join(f"step {s}: {why}" for s, why in damaged)
                       + "); nothing was moved or deleted, use a new --workdir or move them away to start afresh.")
    return None

  def _move_aside(self, step: int) -> str:
    os.makedirs(self.damaged_directory, exist_ok=True)
    dest, n = os.path.join(self.damaged_directory, str(step)), 1
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(self.damaged_directory, f"{step}-{n}")
    if jax.process_index() == 0:
      os.rename(os.path.join(self.directory, str(step)), dest)
    self._manager.reload()
    return dest

  def enforce_keep(self) -> None:
    """Deletes the oldest steps beyond `keep` (a crash right after a save can leave one more)."""
    for step in self.all_steps()[:-self.keep]:
      self._manager.delete(step)

  def close(self) -> None:
    self._manager.close()   # waits for the save in flight


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
  manager = ocp.CheckpointManager(directory, options=READ_ONLY)
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
    if jax.process_index() == 0:
      print(f"Restoring {workdir} at step {step} ({config.method}, {config.model.name})", flush=True)
    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
    target = abstract_with_shardings(abstract, state_lib.state_shardings(config, abstract, mesh))
    try:
      state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
      verify(manager, step, state)
    except DamagedCheckpoint as e:
      raise ValueError(f"The checkpoint at {directory}/{step} is damaged: {e}.") from e
    except Exception as e:
      raise ValueError(f"The checkpoint at {directory}/{step} does not match its own config "
                       f"({_first_line(e)}); it may be damaged.") from e
  finally:
    manager.close()
  return config, setup, state
