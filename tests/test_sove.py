"""SOVE: memory bank, judge selection and both losses against numpy; the trainer step on 1 vs 8 devices."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import config as cfg
from jssl import state as state_lib
from jssl.components import memory_bank
from jssl.losses import sove


def _unit(rng, *shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_bank_fifo_order_and_wraparound():
  state = memory_bank.init(jax.random.PRNGKey(0), 8, 2)
  np.testing.assert_allclose(np.linalg.norm(state["bank"], axis=-1), 1.0, rtol=1e-6)
  initial = np.asarray(state["bank"])
  batches = [np.full((4, 2), i, np.float32) for i in (1, 2, 3)]
  update = jax.jit(memory_bank.update)
  state = update(state, batches[0])
  assert int(state["ptr"]) == 4
  np.testing.assert_array_equal(state["bank"][:4], batches[0])
  np.testing.assert_array_equal(state["bank"][4:], initial[4:])
  state = update(state, batches[1])
  assert int(state["ptr"]) == 0
  state = update(state, batches[2])   # wraps: the oldest rows (batch 1) go first
  assert int(state["ptr"]) == 4
  np.testing.assert_array_equal(state["bank"], np.concatenate([batches[2], batches[1]]))


def test_bank_size_must_divide_by_batch():
  with pytest.raises(ValueError, match="sove.cls_bank_size=1000 must be a positive multiple of batch_size=256"):
    memory_bank.check_size(1000, 256, "sove.cls_bank_size")
  config = _tiny_config()
  config.sove.cls_bank_size = 100
  with pytest.raises(ValueError, match="sove.cls_bank_size"):
    state_lib.build(config, in_channels=1, num_classes=10, total_steps=4, steps_per_epoch=2)


def _reference_judges(anchor_idx, bank, k, *, one_hot, anchor_weight, exclude_anchors):
  """Brute force: full similarity matrix, stable descending sort, dense Y."""
  big_k = len(anchor_idx)
  sims = bank[anchor_idx] @ bank.T
  sims[np.arange(big_k), anchor_idx] = -np.inf
  if exclude_anchors:
    sims[:, anchor_idx] = -np.inf
  nbr = np.argsort(-sims, axis=1, kind="stable")[:, :k]
  top = np.take_along_axis(sims, nbr, axis=1)
  d = np.concatenate([bank[anchor_idx][:, None], bank[nbr]], axis=1).reshape(-1, bank.shape[1])
  y = np.zeros((big_k * (k + 1), big_k), np.float32)
  for i in range(big_k):
    for m in range(k + 1):
      w = (1.0 if anchor_weight is None else anchor_weight) if m == 0 else (1.0 if one_hot else max(top[i, m - 1], 0))
      y[i * (k + 1) + m] = (1 - w) / (big_k - 1)
      y[i * (k + 1) + m, i] = w
  return d, y


@pytest.mark.parametrize("one_hot,anchor_weight,exclude", [(False, None, False), (False, 0.9, True),
                                                           (True, None, False)])
def test_select_judges_matches_brute_force(one_hot, anchor_weight, exclude):
  bank = _unit(np.random.default_rng(0), 70, 8)
  rng = jax.random.PRNGKey(3)
  d, w = sove.select_judges(rng, jnp.asarray(bank), 5, 3, one_hot=one_hot, anchor_weight=anchor_weight,
                            exclude_anchors=exclude, block_size=16)   # 16 does not divide 70: padded block
  idx = np.asarray(sove.sample_anchors(rng, 70, 5))
  assert len(set(idx.tolist())) == 5
  d_ref, y_ref = _reference_judges(idx, bank, 3, one_hot=one_hot, anchor_weight=anchor_weight,
                                   exclude_anchors=exclude)
  np.testing.assert_array_equal(d, d_ref)
  y = np.asarray(sove.dense_labels(w))
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-5)


def _mesh8_bank(bank):
  from jax.sharding import NamedSharding, PartitionSpec as P
  from jssl import sharding
  mesh = sharding.make_mesh(8)
  return mesh, jax.device_put(jnp.asarray(bank), NamedSharding(mesh, P("data", None)))


def _tied_bank():
  # 32 distinct unit rows, each repeated 4 times 32 rows apart: every anchor has exact ties
  # held by other devices (16 rows per device), which must go to the lower index.
  return np.tile(_unit(np.random.default_rng(5), 32, 8), (4, 1))


@pytest.mark.parametrize("k", [0, 4])
@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_sharded_select_judges_equals_unsharded(k, exclude, tied):
  bank = _tied_bank() if tied else _unit(np.random.default_rng(4), 128, 8)
  mesh, sharded = _mesh8_bank(bank)
  kwargs = dict(exclude_anchors=exclude, block_size=8, anchor_weight=0.9)
  many = jax.jit(lambda key, b: sove.select_judges(key, b, 8, k, mesh=mesh, **kwargs))
  one = jax.jit(lambda key, b: sove.select_judges(key, b, 8, k, **kwargs))
  search = jax.jit(lambda b, i: sove.sharded_neighbours(b, i, k, mesh=mesh, exclude_anchors=exclude, block_size=8))
  for seed in range(3):
    key = jax.random.PRNGKey(seed)
    for got, want in zip(many(key, sharded), one(key, jnp.asarray(bank))):
      np.testing.assert_array_equal(got, want)
    if k:
      idx = sove.sample_anchors(key, 128, 8)
      excluded = jnp.zeros(128, bool).at[idx].set(True) if exclude else None
      _, want = sove.blockwise_topk(jnp.asarray(bank)[idx], jnp.asarray(bank), k, block_size=8, query_index=idx,
                                    excluded=excluded)
      _, got, _ = search(sharded, idx)
      np.testing.assert_array_equal(got, want)
      if tied and not exclude:   # first the anchor's three copies (ties at 1), in ascending index
        copies = [[r for r in range(int(a) % 32, 128, 32) if r != int(a)] for a in idx]
        np.testing.assert_array_equal(np.asarray(got)[:, :3], copies)
      if exclude:
        assert not np.isin(np.asarray(got), np.asarray(idx)).any()


def _all_gather_shapes(compiled_text):
  return [line.split("=", 1)[1].split("all-gather(")[0].strip().split("{")[0]
          for line in compiled_text.splitlines() if "all-gather(" in line]


def test_sharded_select_judges_never_gathers_the_bank():
  mesh, sharded = _mesh8_bank(_unit(np.random.default_rng(6), 256, 8))
  key = jax.random.PRNGKey(0)
  many = jax.jit(lambda key, b: sove.select_judges(key, b, 8, 4, mesh=mesh, exclude_anchors=True,
                                                          block_size=8))
  # Only the [K, D k] = [8, 8 x 4] candidate values and indices travel (anchors and neighbour
  # rows arrive by psum).
  assert sorted(_all_gather_shapes(many.lower(key, sharded).compile().as_text())) == ["f32[8,32]", "s32[8,32]"]


@pytest.mark.parametrize("size,batch", [(256, 32), (64, 32), (64, 64), (256, 8)])
def test_sharded_bank_write_equals_unsharded(size, batch):
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh, _ = _mesh8_bank(np.zeros((8, 1), np.float32))
  shardings = {"bank": NamedSharding(mesh, P("data", None)), "ptr": NamedSharding(mesh, P())}
  rows = NamedSharding(mesh, P("data"))
  many = jax.jit(lambda s, v: memory_bank.update(s, v, mesh=mesh), in_shardings=(shardings, rows),
                 out_shardings=shardings)
  one = jax.jit(memory_bank.update)
  state = memory_bank.init(jax.random.PRNGKey(0), size, 8)
  sharded = jax.device_put(state, shardings)
  for i in range(size // batch + 1):   # round the bank and past its end
    values = jnp.asarray(_unit(np.random.default_rng(i), batch, 8))
    sharded, state = many(sharded, jax.device_put(values, rows)), one(state, values)
    jax.tree.map(np.testing.assert_array_equal, sharded, state)
  # Only the batch is gathered, never the bank.
  assert _all_gather_shapes(many.lower(sharded, values).compile().as_text()) == [f"f32[{batch},8]"]


def _reference_p(u, d, y, tau):
  return _softmax(u @ d.T / tau) @ y


def test_cls_loss_matches_eq2():
  r = np.random.default_rng(1)
  student, teacher = _unit(r, 4, 3, 8), _unit(r, 2, 3, 8)
  d, w = sove.select_judges(jax.random.PRNGKey(0), jnp.asarray(_unit(r, 40, 8)), 6, 2)
  d, y = np.asarray(d), np.asarray(sove.dense_labels(w))
  total, pairs = 0.0, 0
  for i in range(2):
    for j in range(4):
      if i != j:
        pt, ps = _reference_p(teacher[i], d, y, 0.04), _reference_p(student[j], d, y, 0.1)
        total += np.mean(-np.sum(pt * np.log(ps), axis=-1))
        pairs += 1
  got = sove.cls_loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(d), w,
                      student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(got, total / pairs, rtol=1e-5)


def test_patch_loss_matches_eq4():
  r = np.random.default_rng(2)
  s, t = _unit(r, 3, 5, 8), _unit(r, 3, 5, 8)
  mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], bool)   # image 1: nothing masked
  d, w = sove.select_judges(jax.random.PRNGKey(1), jnp.asarray(_unit(r, 32, 8)), 4, 0, anchor_weight=0.9)
  d, y = np.asarray(d), np.asarray(sove.dense_labels(w))
  np.testing.assert_allclose(np.diag(y), 0.9, rtol=1e-6)      # the code's smoothed one-hot
  per_image = []
  for b in range(3):
    ce = -np.sum(_reference_p(t[b], d, y, 0.04) * np.log(_reference_p(s[b], d, y, 0.1)), axis=-1)
    per_image.append(np.sum(ce * mask[b]) / max(mask[b].sum(), 1))
  got = sove.patch_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask), jnp.asarray(d), w,
                        student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(got, np.mean(per_image), rtol=1e-5)


def _tiny_config():
  # One block and no local views keep the two compilations cheap; the pairs over
  # local views are covered by test_cls_loss_matches_eq2.
  c = cfg.base("sove", aug_recipe="dino", global_size=28, channels=1, small_images=True)
  c.model.name = "vit"
  c.model.variant = "Ti/4"
  c.model.image_size = 28
  c.model.depth = 1
  c.model.drop_path = 0.1
  c.sove.hidden_dim = 32
  c.sove.out_dim = 16
  c.sove.cls_bank_size = 64
  c.sove.patch_bank_size = 32
  c.sove.num_anchors = 8
  c.sove.num_neighbors = 2
  c.sove.num_patch_anchors = 4
  c.sove.num_tasks = 2
  c.sove.num_patch_tasks = 2
  c.sove.topk_block_size = 24
  c.optim.name = "adamw"
  c.optim.lr = 1e-3
  c.optim.weight_decay = 0.04
  c.optim.weight_decay_end = 0.4
  c.optim.clip_grad = 3.0
  c.optim.warmup_epochs = 0.0
  c.eval.network = "teacher"
  c.batch_size = 16
  c.total_steps = 2
  return c


def test_sove_step_one_and_eight_devices_agree():
  from tests.test_train import _batches, _run_steps
  config = _tiny_config()
  batches = _batches(config, 2)
  s1, m1 = _run_steps(config, 1, 2, batches)
  s8, m8 = _run_steps(config, 8, 2, batches)
  for a, b in zip(m1, m8):
    for key in ("loss", "cls_loss", "patch_loss"):
      assert np.isfinite(a[key])
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
  for key in ("params", "teacher_params", "method_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), s1[-1][key], s8[-1][key])
  banks = s1[-1]["method_state"]
  assert int(banks["cls_bank"]["ptr"]) == 32 and int(banks["patch_bank"]["ptr"]) == 0
  # Two steps of 16 teacher embeddings replaced the first 32 random rows of E_C.
  assert not np.allclose(banks["cls_bank"]["bank"][:32], s1[0]["method_state"]["cls_bank"]["bank"][:32])
  np.testing.assert_array_equal(banks["cls_bank"]["bank"][32:], s1[0]["method_state"]["cls_bank"]["bank"][32:])


def test_vitb_config_initialises():
  from tests.test_configs import ROOT, load
  config = load(os.path.join(ROOT, "configs", "sove_vitb.py"))
  setup, init_fn = state_lib.build(config, in_channels=3, num_classes=1000, total_steps=100, steps_per_epoch=10)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  assert abstract["method_state"]["cls_bank"]["bank"].shape == (65536, 256)
  assert abstract["method_state"]["patch_bank"]["bank"].shape == (8192, 256)
  assert 85e6 < state_lib.count_params(abstract["params"]["encoder"]) < 90e6


@pytest.mark.parametrize("knobs", [
    dict(mask_mode="random", global_repr="mean_patch", exclude_anchors=True, anchor_weight=0.9,
         patch_anchor_weight=0.9, patch_neighbors=2, one_hot=True, num_tasks=1),
    dict(mask_ratio=0.5, patch_teacher_temp=0.07, warmup_teacher_temp_epochs=0.0, lambda2=0.0)])
def test_ablation_knobs_trace(knobs):
  from jssl import train
  config = _tiny_config()
  config.aug.num_local = 2
  config.aug.local_size = 12
  config.sove.update(knobs)
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=4, steps_per_epoch=2)
  state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  batch = {"image": jax.ShapeDtypeStruct((16, 28, 28, 1), jnp.uint8), "label": jax.ShapeDtypeStruct((16,), jnp.int32)}
  new_state, metrics = jax.eval_shape(train.make_train_step(config, setup), state, batch)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(lambda a: (a.shape, a.dtype), state)
  assert {"cls_loss", "patch_loss", "teacher_entropy"} <= set(metrics)


def test_resume_restores_banks_exactly(tmp_path):
  from jssl import train

  def run(workdir, until=None):
    config = _tiny_config()
    config.eval.train_examples, config.eval.test_examples, config.eval.batch_size = 64, 32, 32
    config.checkpoint_every_steps = 100
    trainer = train.Trainer(config, str(workdir), verbose=False).prepare()
    try:
      trainer.run(until=until)
    finally:
      trainer.checkpointer.close()
    return jax.device_get(trainer.state)

  full = run(tmp_path / "full")
  run(tmp_path / "split", until=1)
  resumed = run(tmp_path / "split")
  assert int(resumed["method_state"]["cls_bank"]["ptr"]) == 32
  jax.tree.map(np.testing.assert_array_equal, full["method_state"], resumed["method_state"])
  jax.tree.map(np.testing.assert_array_equal, full["params"], resumed["params"])


def test_task_counts_and_reference_min_block(monkeypatch):
  # Each [CLS] task and each [MIM] task draws its own judges; blockwise masks use the
  # reference smallest block (min(h, w) // 3)**2 = 4 on the 7 x 7 grid of Ti/4 at 28 px.
  from jssl import train
  from jssl.data import masking
  from jssl.losses import sove as sove_losses
  calls, blocks = [], []
  select, blockwise = sove_losses.select_judges, masking.blockwise_mask

  def counting_select(key, bank, *args, **kwargs):
    calls.append(bank.shape[0])
    return select(key, bank, *args, **kwargs)

  def recording_blockwise(*args, min_block, **kwargs):
    blocks.append(min_block)
    return blockwise(*args, min_block=min_block, **kwargs)

  monkeypatch.setattr(sove_losses, "select_judges", counting_select)
  monkeypatch.setattr(masking, "blockwise_mask", recording_blockwise)
  config = _tiny_config()
  config.sove.num_tasks, config.sove.num_patch_tasks = 3, 2
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=4, steps_per_epoch=2)
  state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  batch = {"image": jax.ShapeDtypeStruct((16, 28, 28, 1), jnp.uint8), "label": jax.ShapeDtypeStruct((16,), jnp.int32)}
  jax.eval_shape(train.make_train_step(config, setup), state, batch)
  assert calls == [64] * 3 + [32] * 2      # E_C has 64 rows, E_P 32
  assert blocks == [4]
  assert masking.reference_min_block((14, 14)) == 16
  from jssl.methods import sove as sove_method
  assert (sove_method.default_config().num_tasks, sove_method.default_config().num_patch_tasks) == (4, 4)


@pytest.mark.parametrize("num_devices,sharded_search,expected", [(8, True, [64, 64, 32, 32]), (8, False, []),
                                                                  (1, True, [])])
def test_step_selects_judges_sharded_on_many_devices(monkeypatch, num_devices, sharded_search, expected):
  from jssl import sharding, train
  from jssl.losses import sove as sove_losses
  calls, original = [], sove_losses.sharded_neighbours

  def counting(bank, *args, **kwargs):
    calls.append(bank.shape[0])
    return original(bank, *args, **kwargs)

  monkeypatch.setattr(sove_losses, "sharded_neighbours", counting)
  config = _tiny_config()
  config.sove.sharded_search = sharded_search
  setup, init_fn = state_lib.build(config, in_channels=1, num_classes=10, total_steps=4, steps_per_epoch=2)
  state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  batch = {"image": jax.ShapeDtypeStruct((16, 28, 28, 1), jnp.uint8), "label": jax.ShapeDtypeStruct((16,), jnp.int32)}
  jax.eval_shape(train.make_train_step(config, setup, sharding.make_mesh(num_devices)), state, batch)
  assert calls == expected     # 2 [CLS] tasks on E_C (64 rows), 2 [MIM] tasks on E_P (32 rows)
