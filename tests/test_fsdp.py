"""FSDP: a ("data", "fsdp") mesh trains like pure data parallelism on the same 8 devices,
with params, teacher and optimiser state split over `fsdp`, SOVE's banks over both axes,
and checkpoints that restore into that layout."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jssl import config as config_lib
from jssl import fsdp, sharding, train
from jssl import state as state_lib
from jssl.components import memory_bank
from jssl.data import pipeline
from jssl.losses import sove as sove_losses
from tests.helpers import tiny_config

_RUNS, _HLO = {}, {}   # (state, metrics) pairs by method; compiled steps by (method, fsdp)


def _config(method: str):
  """A one-block, 64-wide ViT for every method, so each compiled step stays cheap; parameters
  of >= 1024 elements are split (the default minimum would leave this model replicated)."""
  if method == "sove":
    from tests.test_sove import _tiny_config
    c = _tiny_config()
  else:
    c = tiny_config(method, vit=True)
  c.model.update(width=64, num_heads=2, depth=1)
  c.mesh.fsdp_min_size = 1024
  c.total_steps = 2
  return c


# XLA:CPU's LLVM optimisation level changes no sharding decision (those are made on HLO, before
# code generation), and level 0 halves the compile time of these steps.
_FAST = {"xla_backend_optimization_level": 0}


def _run(config, fsdp_size: int, batches):
  """Train steps on 8 devices with mesh.fsdp = fsdp_size, one per batch: (device state, metrics list)."""
  config.mesh.fsdp = fsdp_size
  mesh = sharding.make_mesh(8, fsdp=fsdp_size)
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=config.total_steps,
                                   steps_per_epoch=2)
  rng = jax.random.PRNGKey(config.seed)
  shardings = state_lib.state_shardings(config, jax.eval_shape(init_fn, rng), mesh)
  state = jax.jit(init_fn, out_shardings=shardings).lower(rng).compile(_FAST)(rng)
  data = sharding.batch_sharded(mesh)
  step = jax.jit(train.make_train_step(config, setup, mesh), in_shardings=(shardings, data),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)
  step = step.lower(state, pipeline.to_global(batches[0], data)).compile(_FAST)
  history = []
  for batch in batches:
    state, metrics = step(state, pipeline.to_global(batch, data))
    history.append(jax.device_get(metrics))
  _HLO[(config.method, fsdp_size)] = step.as_text()
  return state, history


def _pair(method: str):
  """(pure data parallel 8 x 1, FSDP 2 x 4) runs of `method` on the same batches, computed once."""
  if method not in _RUNS:
    config = _config(method)
    it = pipeline.train_iterator(config.data, global_batch_size=config.batch_size, seed=0)
    batches = [next(it) for _ in range(2)]
    _RUNS[method] = (_run(config, 1, batches), _run(_config(method), 4, batches))
  return _RUNS[method]


@pytest.mark.parametrize("method", ["byol", "dino", "sove"])
def test_fsdp_trains_like_data_parallelism(method):
  (dp, dp_metrics), (fs, fs_metrics) = _pair(method)
  for a, b in zip(dp_metrics, fs_metrics):
    for key in ("loss",) + (("cls_loss", "patch_loss") if method == "sove" else ()):
      assert np.isfinite(a[key])
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    # A norm over every gradient, which FSDP sums shard by shard: another float32 order
    # (measured: 1.5e-5 relative).
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
  dp, fs = jax.device_get(dp), jax.device_get(fs)
  # Same float32 arithmetic in another reduction order; Adam's 1/sqrt(v) magnifies that for
  # near-zero gradients. Measured: at most 2.6e-6 (DINO's parameters), hence 2e-5.
  for key in ("params", "teacher_params", "opt_state", "batch_stats", "method_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5), dp[key], fs[key])


def _split_leaves(tree):
  """Paths of the leaves whose sharding names `fsdp` and whose local shard is smaller."""
  out = []
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    if "fsdp" in str(x.sharding.spec) and x.addressable_shards[0].data.size < x.size:
      out.append(jax.tree_util.keystr(path))
  return out


def test_params_teacher_and_optimizer_state_are_split():
  (dp, _), (fs, _) = _pair("sove")
  assert not _split_leaves(dp["params"]) and not _split_leaves(dp["opt_state"])
  split = _split_leaves(fs["params"])
  assert any("qkv" in p and "kernel" in p for p in split) and any("head" in p for p in split)
  assert _split_leaves(fs["teacher_params"]) == [p for p in split if "head" in p or "encoder" in p]
  moments = _split_leaves(fs["opt_state"])
  assert len(moments) >= 2 * len(split)    # Adam's mu and nu of every split parameter
  qkv = fs["params"]["encoder"]["blocks"][0]["attn"]["qkv"]["kernel"]   # [64, 192]: split along 192
  assert qkv.sharding.spec == P(None, "fsdp") and qkv.addressable_shards[0].data.shape == (64, 48)
  small = fs["params"]["encoder"]["blocks"][0]["norm1"]["scale"]   # 64 elements < fsdp_min_size
  assert small.sharding.spec == P()
  # Each device holds 1/8 of each bank: rows over ("data", "fsdp").
  bank = fs["method_state"]["cls_bank"]["bank"]
  assert bank.sharding.spec == P(("data", "fsdp"), None) and bank.addressable_shards[0].data.shape[0] == 64 // 8


def _all_gathers(hlo: str) -> list[str]:
  return [re.search(r"= (\S+) all-gather", line).group(1).split("{")[0]
          for line in hlo.splitlines() if re.search(r"= \S+ all-gather(-start)?\(", line)]


def test_fsdp_gathers_weights_not_activations():
  _pair("sove")
  gathered = _all_gathers(_HLO[("sove", 4)])
  # The ViT's split kernels are gathered where a block uses them ...
  assert {"f32[64,192]", "f32[64,256]", "f32[256,64]"} <= set(gathered)
  # ... while its [V B, 1 + 49, 64] activations stay split by batch (sharding.constrain_batch).
  assert not [g for g in gathered if re.fullmatch(r"f32\[\d+,50,\d+\]", g)], gathered
  assert not any(re.fullmatch(r"f32\[(64,192|64,256|256,64)\]", g) for g in _all_gathers(_HLO[("sove", 1)]))


def test_rules_choose_parameters_and_dimension():
  rules = fsdp.patterns(r"encoder/blocks/\d+/fc1, head")
  spec = lambda path, shape, min_size=0: fsdp.param_spec(path, shape, 4, rules, min_size)
  assert spec("encoder/blocks/3/fc1/kernel", (64, 256)) == P(None, "fsdp")   # largest divisible dimension
  assert spec("encoder/blocks/3/fc1/kernel", (256, 6)) == P("fsdp")
  assert spec("encoder/blocks/3/fc2/kernel", (256, 64)) == P()                # no pattern matches
  assert spec("head/mlp/linears/0/kernel", (6, 10)) == P()                   # no dimension divides by 4
  assert spec("head/mlp/linears/0/kernel", (64, 64), min_size=8192) == P()   # too small
  assert spec("head/mlp/linears/0/kernel", (64, 64)) == P("fsdp")           # first of equal dimensions
  assert fsdp.param_spec("head/kernel", (64, 64), 1, (), 0) == P()           # fsdp = 1: nothing split
  assert fsdp.patterns(" , ") == ()


@pytest.mark.parametrize("field,value,message", [
    ("fsdp", 3, "mesh.fsdp=3 must be -1 (all devices) or a positive integer that divides the 8 devices."),
    ("fsdp", 0, "mesh.fsdp=0 must be -1 (all devices) or a positive integer that divides the 8 devices."),
    ("fsdp_rules", "encoder, blocks/(", "mesh.fsdp_rules has 'blocks/(', which is not a valid regular expression"),
    ("fsdp_min_size", -1, "mesh.fsdp_min_size=-1 must be an integer >= 0 (elements)."),
])
def test_bad_mesh_fields_are_one_sentence(field, value, message):
  config = tiny_config("byol")
  config.mesh[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(config, num_devices=8)
  if field == "fsdp":
    with pytest.raises(ValueError, match=re.escape(message)):
      sharding.make_mesh(8, fsdp=value)


def test_fsdp_one_is_todays_mesh_and_shardings():
  config = _config("byol")
  mesh = sharding.make_mesh(8)
  assert mesh.axis_names == ("data",) and sharding.batch_sharded(mesh).spec == P("data")
  assert dict(sharding.make_mesh(8, fsdp=-1).shape) == {"data": 1, "fsdp": 8}
  assert dict(sharding.make_mesh(1, fsdp=-1).shape) == {"data": 1}
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=2, steps_per_epoch=2)
  shardings = state_lib.state_shardings(config, jax.eval_shape(init_fn, jax.random.PRNGKey(0)), mesh)
  assert all(s.spec == P() for s in jax.tree.leaves(shardings))


@pytest.mark.parametrize("k,exclude", [(4, False), (4, True), (0, False)])
def test_sove_judges_on_both_axes(k, exclude):
  # The bank's rows over ("data", "fsdp") = 8 devices: the judges equal the global-view code's.
  mesh = sharding.make_mesh(8, fsdp=4)
  axes = sharding.batch_axes(mesh)
  rows = NamedSharding(mesh, P(axes, None))
  bank = np.tile(np.random.default_rng(5).normal(size=(32, 8)).astype(np.float32), (4, 1))   # ties across devices
  bank /= np.linalg.norm(bank, axis=1, keepdims=True)
  kwargs = dict(exclude_anchors=exclude, block_size=8, anchor_weight=0.9)
  many = jax.jit(lambda key, b: sove_losses.select_judges(key, b, 8, k, mesh=mesh, axis_name=axes, **kwargs))
  one = jax.jit(lambda key, b: sove_losses.select_judges(key, b, 8, k, **kwargs))
  for seed in range(2):
    key = jax.random.PRNGKey(seed)
    for got, want in zip(many(key, jax.device_put(bank, rows)), one(key, jnp.asarray(bank))):
      np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("size,batch", [(64, 16), (256, 8)])
def test_sove_bank_write_on_both_axes(size, batch):
  mesh = sharding.make_mesh(8, fsdp=4)
  axes = sharding.batch_axes(mesh)
  shardings = {"bank": NamedSharding(mesh, P(axes, None)), "ptr": NamedSharding(mesh, P())}
  write = jax.jit(lambda s, v: memory_bank.update(s, v, mesh=mesh, axis_name=axes), out_shardings=shardings)
  state = memory_bank.init(jax.random.PRNGKey(0), size, 8)
  sharded = jax.device_put(state, shardings)
  for i in range(size // batch + 1):   # round the bank and past its end
    values = jnp.asarray(np.random.default_rng(i).normal(size=(batch, 8)), jnp.float32)
    sharded, state = write(sharded, values), memory_bank.update(state, values)
    jax.tree.map(np.testing.assert_array_equal, sharded, state)


def test_checkpoint_resumes_into_the_split_layout(tmp_path):
  config = _config("sove")
  config.mesh.fsdp = 4
  first = train.Trainer(config, str(tmp_path), verbose=False).prepare()
  try:
    first.run(until=1)
  finally:
    first.checkpointer.close()
  resumed = train.Trainer(config, str(tmp_path), verbose=False).prepare()
  resumed.checkpointer.close()
  assert int(resumed.state["step"]) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(first.state), jax.device_get(resumed.state))
  for got, want in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(resumed.state_shardings)):
    assert got.sharding.is_equivalent_to(want, got.ndim)
  assert _split_leaves(resumed.state["params"]) and _split_leaves(resumed.state["opt_state"])
  # The next step from the restored state (and data position) is the uninterrupted run's next
  # step; the first run's compiled step takes the restored state as it is laid out.
  batch = lambda t: pipeline.to_global(next(t.data), t.batch_sharding)
  cont, _ = first.step_fn(first.state, batch(first))
  again, _ = first.step_fn(resumed.state, batch(resumed))
  assert first.step_fn._cache_size() == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(cont), jax.device_get(again))
