"""The one trainer: mesh -> data -> state -> step -> checkpoint -> evals -> loop.

Every method plugs in through `jssl.methods.<config.method>` (build, init_state,
loss); the trainer does augmentation, gradients, the optimizer, the EMA
teacher, the online linear probe, the collapse monitor, logging, checkpoints,
the k-NN monitor and the clustering analysis.
"""
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jssl import checkpoint, fsdp, guard, logs, optim, peaks, sharding
from jssl import config as config_lib
from jssl import state as state_lib
from jssl.data import multicrop, pipeline
from jssl.evaluators import analysis_monitor, monitor
from jssl.losses.byol import l2_normalize
from jssl.methods.common import StepContext


def probe_update(setup, params, opt_state, features, labels):
  """One step of the online linear probe on stop-gradient features [B, D]."""
  def loss_fn(p):
    logits = features @ p["kernel"] + p["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits
  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = setup.probe_tx.update(grads, opt_state, params)
  acc = jnp.mean(jnp.argmax(logits, -1) == labels)
  return optax.apply_updates(params, updates), opt_state, {"probe_loss": loss, "probe_acc": acc}


def make_train_step(config, setup: state_lib.Setup, mesh: jax.sharding.Mesh | None = None):
  """The pure step (state, batch) -> (state, metrics); jit it with shardings and donation.
  `mesh`, the one the step is jitted over, reaches the method in its StepContext."""
  method = setup.method

  def loss_fn(params, state, views, rng):
    student = setup.student(params, state["batch_stats"])
    teacher = setup.teacher(state["teacher_params"], state["teacher_stats"])
    ctx = StepContext(state["step"], setup.steps_per_epoch, setup.total_steps, mesh)
    loss, (method_state, metrics, feats) = method.loss(
        student, teacher, state["method_state"], views, rng=rng, ctx=ctx, config=config)
    aux = (method_state, metrics, feats, state_lib.batch_stats(student), state_lib.batch_stats(teacher))
    return loss, aux

  def train_step(state, batch):
    if sharding.fsdp_size(mesh) <= 1:
      return _train_step(state, batch)
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):   # read by sharding.constrain_batch in the models
      return _train_step(state, batch)

  def _train_step(state, batch):
    step = state["step"]
    aug_key, loss_key = jax.random.split(jax.random.fold_in(state["rng"], step))
    views = multicrop.make_views(aug_key, batch["image"], config.aug)
    views["label"] = batch["label"]   # read by methods that train on labels (supervised) and ignored by the rest
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], state, views, loss_key)
    method_state, metrics, feats, stats, t_stats = aux
    if sharding.fsdp_size(mesh) > 1:   # each device reduces (reduce-scatters) only its shard's gradients
      grads = jax.lax.with_sharding_constraint(grads, fsdp.param_shardings(config, grads, mesh))
    updates, opt_state = setup.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    momentum = optim.ema_momentum(config, step, setup.total_steps)
    teacher_params = state_lib.ema_update(params, state["teacher_params"], momentum)
    feats = jax.lax.stop_gradient(feats.astype(jnp.float32))
    new_state = dict(state, step=step + 1, params=params, batch_stats=stats, opt_state=opt_state,
                     teacher_params=teacher_params, teacher_stats=t_stats, method_state=method_state)
    if config.probe.enabled:
      probe_params, probe_opt, probe_metrics = probe_update(
          setup, state["probe_params"], state["probe_opt_state"], feats, batch["label"])
      new_state.update(probe_params=probe_params, probe_opt_state=probe_opt)
      metrics = {**metrics, **probe_metrics}
    # Collapse monitor: per-dimension std of L2-normalised features; ~1/sqrt(D)
    # when spread out, 0 when collapsed. Reported times sqrt(D) so 1 is healthy.
    feature_std = jnp.mean(jnp.std(l2_normalize(feats), axis=0)) * jnp.sqrt(feats.shape[-1])
    metrics = {**metrics, "loss": loss, "lr": optim.learning_rate(config, setup.total_steps, setup.steps_per_epoch)(step),
               "ema_momentum": momentum, "grad_norm": optax.tree.norm(grads), "feature_std": feature_std}
    # The host reads this code at the logging cadence and before every save.
    nonfinite = guard.nonfinite_code(loss, grads, params)
    if config.on_nonfinite == "skip":
      new_state = guard.keep_if(nonfinite == 0, new_state, state)
    metrics["nonfinite"] = nonfinite
    return new_state, metrics

  return train_step


class Preempted(Exception):
  """The run stopped at a step boundary on SIGTERM or SIGINT, after saving a checkpoint."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum   # what a shell reports for a process ended by that signal


class StopRequests:
  """SIGTERM (preemption: SLURM, Cloud TPU) and SIGINT (Ctrl-C) ask the loop to save and
  stop at the next step boundary; a second signal interrupts at once.

  With several processes every one must stop at the same step, so there JAX's
  preemption service (which owns SIGTERM) picks the step: see `stop_before`.
  """

  def __init__(self):
    self.signum, self._old = None, {}

  def install(self) -> "StopRequests":
    # Python only delivers signals to the main thread.
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return self

  def stop_before(self, step: int) -> int | None:
    """The signal to stop on before running `step`, or None; call it at every step."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      return signal.SIGTERM if multihost_utils.reached_preemption_sync_point(step) else None
    return self.signum

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum

  def restore(self) -> None:
    for s, handler in self._old.items():
      signal.signal(s, handler)
    self._old = {}


class Trainer:
  """Holds everything a run needs; `prepare()` checks and builds, `run()` trains."""

  def __init__(self, config, workdir: str, *, verbose: bool = True, allow_config_changes: bool = False):
    self.config, self.workdir, self.verbose = config, workdir, verbose
    self.allow_config_changes = allow_config_changes   # resume even if the config changes the run
    self._pending, self._skipped = [], 0   # (step, non-finite code) not yet read; skips not yet logged

  def prepare(self):
    """Validates the config, builds mesh, data, state and step; restores a checkpoint.

    Everything here fails fast with one clear sentence before any expensive
    compilation of the train step.
    """
    c = self.config
    info = self.build()
    self.checkpointer = checkpoint.Checkpointer(self.workdir, keep=c.keep_checkpoints)
    target = checkpoint.abstract_with_shardings(self.abstract_state, self.state_shardings)
    restored = self.checkpointer.restore_latest(target, self.data, c, allow_changes=self.allow_config_changes,
                                                log=self._log)
    if restored is not None:
      step, self.state, changes = restored
      self._log(f"Resumed from step {step} in {self.checkpointer.directory}.")
      if changes:
        self._log("Config changes since the checkpoint: " + ", ".join(changes) + ".")
      self.checkpointer.enforce_keep()
      if jax.process_index() == 0:
        from jssl.writers import truncate_metrics
        truncate_metrics(self.workdir, step)   # the steps after `step` run again
    else:
      self.state = self.init_state()
    self.monitor = monitor.KnnMonitor(c, self.setup, self.mesh)
    self.analysis = analysis_monitor.AnalysisMonitor(c, self.setup, self.mesh, steps_per_epoch=self.steps_per_epoch,
                                                     state=self.state, log=self._log)
    n_params = state_lib.count_params(self.state["params"])
    self._log(f"{c.method} on {c.data.source} {info['image_shape']}: {n_params / 1e6:.2f}M student parameters, "
              f"{self.total_steps} steps ({self.steps_per_epoch}/epoch), batch {c.batch_size} over "
              f"{self.mesh.devices.size} device(s).")
    return self

  def build(self) -> dict:
    """Validates the config and builds the mesh, the data iterator, the state's shapes and
    shardings and the jitted step (nothing compiled, no state allocated); returns the
    dataset info. `prepare` and the benchmark (jssl.benchmark) both start here."""
    c = self.config
    self.mesh = sharding.make_mesh(None if c.num_devices < 0 else c.num_devices, fsdp=fsdp.mesh_config(c)[0])
    info = config_lib.validate(c, num_devices=self.mesh.devices.size)
    self.info = info
    self.steps_per_epoch = config_lib.steps_per_epoch(c, info["num_train"])
    self.total_steps = config_lib.total_steps(c, info["num_train"])
    self.setup, self._init_fn = state_lib.build(c, in_channels=info["image_shape"][-1],
                                                num_classes=info["num_classes"], total_steps=self.total_steps,
                                                steps_per_epoch=self.steps_per_epoch)
    self.abstract_state = jax.eval_shape(self._init_fn, jax.random.PRNGKey(c.seed))
    self.state_shardings = state_lib.state_shardings(c, self.abstract_state, self.mesh)
    self.batch_sharding = sharding.batch_sharded(self.mesh)
    self.data = pipeline.train_iterator(c.data, global_batch_size=c.batch_size, seed=c.seed)
    self.step_fn = jax.jit(make_train_step(c, self.setup, self.mesh),
                           in_shardings=(self.state_shardings, self.batch_sharding),
                           out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
                           donate_argnums=0)
    return info

  def init_state(self) -> dict:
    """A freshly initialised state (step 0), sharded as the step expects."""
    return jax.jit(self._init_fn, out_shardings=self.state_shardings)(jax.random.PRNGKey(self.config.seed))

  def _mfu_per_image(self, batch) -> float | None:
    """MFU per image/s: FLOPs per step of one device (XLA's count of the compiled step) /
    batch size / that device's peak FLOP/s; None on devices without a known peak
    (jssl/peaks.py), where nothing is done. The compilation is the one the first step
    needs anyway: jit reuses it."""
    known = peaks.peak_flops(jax.devices()[0].device_kind)
    if known is None:
      return None
    flops = peaks.compiled_flops(self.step_fn.lower(self.state, batch).compile())
    return flops / self.config.batch_size / known[0] if flops else None

  def _log(self, msg: str) -> None:
    logs.logger.info(msg)   # the log file; the terminal gets the printed line
    if self.verbose and jax.process_index() == 0:   # one printed line per run, whatever the process count
      print(msg, flush=True)

  def knn(self, label: str) -> dict:
    t0 = time.perf_counter()
    result = self.monitor.run(self.state)
    self._log(f"k-NN ({label}): " + ", ".join(f"{k}={v:.4f}" for k, v in result.items())
              + f" [{time.perf_counter() - t0:.1f}s]")
    return result

  def check_finite(self) -> None:
    """Reads the non-finite codes of the steps since the last look, in one transfer.

    With on_nonfinite='stop' raises NonFiniteError naming the first bad step;
    with 'skip' counts the skipped steps for the next metrics row.
    """
    if not self._pending:
      return
    steps, codes = zip(*self._pending)
    self._pending = []
    bad = [(s, int(c)) for s, c in zip(steps, jax.device_get(codes)) if c]
    if not bad:
      return
    step, code = bad[0]
    if self.config.on_nonfinite == "stop":
      raise guard.NonFiniteError(
          f"Step {step} gave a non-finite {guard.describe(code)}, so the run stopped without saving it "
          f"(lower optim.lr, set optim.clip_grad, or set on_nonfinite='skip' to drop such updates).")
    self._skipped += len(bad)
    self._log(f"Skipped the update of {len(bad)} step(s) from step {step} on (non-finite {guard.describe(code)}).")

  def save(self) -> None:
    self.check_finite()   # never write a non-finite state
    self.checkpointer.save(int(self.state["step"]), self.state, self.data, self.config)

  def finished(self) -> bool:
    """Whether the restored state is at total_steps (a finished run)."""
    return int(self.state["step"]) >= self.total_steps

  def _earlier(self, start: int) -> tuple[dict, dict, float]:
    """From the rows of earlier runs of this workdir: the init k-NN, the last training
    row's metrics and the training seconds spent so far."""
    if start == 0 or jax.process_index() != 0:
      return {}, {}, 0.0
    from jssl.writers import read_rows
    rows = read_rows(self.workdir)
    init = {k: v for r in rows if r["step"] == 0 for k, v in r.items() if k.startswith("init/")}
    trained = next((r for r in reversed(rows) if "loss" in r), {})
    seconds = float(trained.get("train_seconds", 0.0))
    trained = {k: v for k, v in trained.items() if k not in ("step", "time", "epoch", "images_per_s",
                                                              "train_seconds", "skipped_steps", "mfu")}
    return init, trained, seconds

  def run(self, until: int | None = None) -> dict:
    """Trains to total_steps; returns the final metrics (k-NN included) of the whole run,
    across resumes (the random-init k-NN, the training seconds of every part).

    With `until`, stops after that step with a checkpoint, as a preempted job
    would; the next run resumes from it. A finished run runs its final k-NN again.
    """
    from jssl.writers import MetricWriter, Progress, drop_eval_rows
    c = self.config
    start = int(self.state["step"])
    summary, last_metrics, seconds_before = self._earlier(start)
    if start >= self.total_steps and jax.process_index() == 0:
      drop_eval_rows(self.workdir, start)   # evaluated again below
    writer = MetricWriter(self.workdir, enabled=jax.process_index() == 0)
    if c.eval.at_init and start == 0:
      summary.update({f"init/{k}": v for k, v in self.knn("random init").items()})
      writer.write(0, summary)
    if start == 0 and self.analysis.due(0):
      writer.write(0, self.analysis.run(self.state, 0))
    extra_saves = set(config_lib.checkpoint_steps(c))
    if start == 0 and 0 in extra_saves:
      self.save()   # the untrained state (the most random targets of a supervised run)
    progress = Progress(self.total_steps, start, c.batch_size, enabled=self.verbose and jax.process_index() == 0)
    t_start, metrics = time.perf_counter(), {}
    mfu_per_image = None   # set at the first step where the device's peak is known
    step = start
    requests = StopRequests().install()
    try:
      stop = self.total_steps if until is None else min(until, self.total_steps)
      while step < stop:
        signum = requests.stop_before(step)
        if signum is not None:
          self.save()
          self.checkpointer.wait()
          progress.close()
          writer.close()
          message = (f"Stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved, "
                     f"rerun the same command to resume.")
          self._log(message)
          raise Preempted(message, signum)
        batch = pipeline.to_global(next(self.data), self.batch_sharding)
        if step == start:
          mfu_per_image = self._mfu_per_image(batch)
        self.state, metrics = self.step_fn(self.state, batch)
        step += 1
        self._pending.append((step, metrics["nonfinite"]))
        if step == start + 1 or progress.due():
          jax.block_until_ready(metrics["loss"])   # the bar shows steps done, not dispatched
          if step == start + 1:
            progress.compiled(step)
          else:
            progress.tick(step)
        if step % c.log_every_steps == 0 or step == self.total_steps:
          self.check_finite()
          host = jax.device_get(metrics)
          if c.on_nonfinite == "skip":
            host["skipped_steps"], self._skipped = self._skipped, 0
          rate = progress.update(step, host)
          if rate is not None:
            host["images_per_s"] = rate
            if mfu_per_image:
              host["mfu"] = rate * mfu_per_image
          host["epoch"] = step / self.steps_per_epoch
          host["train_seconds"] = seconds_before + time.perf_counter() - t_start
          writer.write(step, host)
        if c.eval.every_steps > 0 and step % c.eval.every_steps == 0 and step < self.total_steps:
          self.check_finite()
          writer.write(step, self.knn(f"step {step}"))
        if self.analysis.due(step) and step < self.total_steps:
          self.check_finite()
          writer.write(step, self.analysis.run(self.state, step))
        if step % c.checkpoint_every_steps == 0 or step in extra_saves:
          self.save()
      progress.close()
      if step > start:
        self.save()
      self.checkpointer.wait()   # the final checkpoint is on disk before evaluation
    finally:
      requests.restore()
      progress.close()   # before any error message, so the bar does not print after it
    if step < self.total_steps:
      writer.close()
      return summary
    train_time = seconds_before + time.perf_counter() - t_start if step > start else seconds_before
    final = self.knn(f"final, step {step}")
    if c.eval.pixels_baseline:
      t0 = time.perf_counter()
      pixels = {f"pixels/{k}": v for k, v in self.monitor.pixels().items()}
      self._log("k-NN (raw pixels, same protocol): " + ", ".join(f"{k[7:]}={v:.4f}" for k, v in pixels.items())
                + f" [{time.perf_counter() - t0:.1f}s]")
      final.update(pixels)
    writer.write(step, final)
    if self.analysis.enabled:
      writer.write(step, self.analysis.run(self.state, step))
    writer.close()
    summary.update(final)
    if metrics:
      last_metrics = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
    summary.update(last_metrics)
    summary["train_seconds"] = train_time
    return summary


def dry_run(config) -> str:
  """What a run of `config` would do, without training: the resolved config, the model's
  parameter count, the steps and the data it reads (shapes only; nothing is compiled)."""
  from jssl import cli
  from jssl.data import fashion_mnist, tfds_paths
  mesh = sharding.make_mesh(None if config.num_devices < 0 else config.num_devices, fsdp=fsdp.mesh_config(config)[0])
  info = config_lib.validate(config, num_devices=mesh.devices.size)
  per_epoch = config_lib.steps_per_epoch(config, info["num_train"])
  total = config_lib.total_steps(config, info["num_train"])
  setup, init_fn = state_lib.build(config, in_channels=info["image_shape"][-1], num_classes=info["num_classes"],
                                   total_steps=total, steps_per_epoch=per_epoch)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed))
  d = config.data
  if d.source == "fashion_mnist":
    where = (d.data_dir or os.environ.get(fashion_mnist.FASHION_MNIST_ENV) or fashion_mnist.DEFAULT_FASHION_MNIST_DIR)
  else:
    where = d.data_dir or (tfds_paths.tfds_data_dir() if d.source == "tfds" else "memory")
  lines = ["Config (override any field with --config.<field>=<value>):", *cli.config_fields(config), "",
           f"Model: {config.method}, {state_lib.count_params(abstract['params']) / 1e6:.2f}M student parameters "
           f"({setup.feature_dim}-d features).",
           f"Steps: {total} ({per_epoch} per epoch, {total / per_epoch:.2f} epochs), batch {config.batch_size} "
           f"over {mesh.devices.size} {mesh.devices.flat[0].platform} device(s).",
           f"Data: {d.source}{'/' + d.name if d.get('name') else ''} from {where}: train split "
           f"{d.train_split!r} ({info['num_train']} images {tuple(info['image_shape'])}, {info['num_classes']} "
           f"classes), k-NN on {d.eval_split!r}.",
           "Dry run: nothing was trained or written."]
  return "\n".join(lines)


def train(config, workdir: str, *, verbose: bool = True) -> dict:
  trainer = Trainer(config, workdir, verbose=verbose).prepare()
  try:
    return trainer.run()
  finally:
    trainer.checkpointer.close()
