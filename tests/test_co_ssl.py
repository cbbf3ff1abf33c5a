"""CO-SSL (CO-BYOL, CO-DINO, CO-MoCoV3): local losses against loop-by-loop references of the
paper's formula, local-map downsampling, w_s = 0 equals the base method, 1 vs 8 devices."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl.losses import co_ssl as losses
from jssl.methods import co_ssl
from tests.helpers import tiny_config
from tests.test_train import _batches, _run_steps


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def _np_byol_local(lp, gp, lt, gt):
  """Paper eq. L_l(L, p_g, L', z'_g) = -2/n^2 sum_i [cos(p_l^i, z'_g) + cos(p_g, z'^i_l)], summed over view orders."""
  _, b, n, _ = lp.shape
  total = 0.0
  for v, w in ((0, 1), (1, 0)):
    for j in range(b):
      total += -2.0 / n * sum(_cos(lp[v, j, i], gt[w, j]) + _cos(gp[v, j], lt[w, j, i]) for i in range(n)) / b
  return total


def test_byol_local_loss_matches_paper():
  rng = np.random.default_rng(0)
  lp, lt = rng.normal(size=(2, 2, 3, 4, 5)).astype(np.float32)
  gp, gt = rng.normal(size=(2, 2, 3, 5)).astype(np.float32)
  got = float(losses.byol_local_loss(*map(jnp.asarray, (lp, gp, lt, gt))))
  # 2 - 2 cos instead of -2 cos: +4 per view order.
  np.testing.assert_allclose(got, _np_byol_local(lp, gp, lt, gt) + 8.0, rtol=1e-5)
  # Everything aligned with its counterpart: zero loss.
  e = np.zeros((2, 3, 5), np.float32)
  e[..., 0] = 1.0
  local = np.repeat(e[:, :, None], 4, axis=2)
  np.testing.assert_allclose(float(losses.byol_local_loss(*map(jnp.asarray, (local, 2 * e, 3 * local, e)))), 0.0,
                             atol=1e-6)


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


def test_dino_local_loss_matches_definition():
  rng = np.random.default_rng(1)
  b, n, k, ts, tt = 3, 4, 6, 0.1, 0.05
  sg, tg = rng.normal(size=(2, 2, b, k))
  sl, tl = rng.normal(size=(2, 2, b, n, k))
  c, lc = rng.normal(size=(2, k))

  def h(p, q):
    return -np.sum(p * np.log(q))

  total = 0.0
  for t, s in ((0, 1), (1, 0)):
    for j in range(b):
      for i in range(n):
        total += h(_softmax((tg[t, j] - c) / tt), _softmax(sl[s, j, i] / ts)) / (b * n)
        total += h(_softmax((tl[t, j, i] - lc) / tt), _softmax(sg[s, j] / ts)) / (b * n)
  got = losses.dino_local_loss(*map(jnp.asarray, (sg, sl, tg, tl, c, lc)), student_temp=ts, teacher_temp=tt)
  np.testing.assert_allclose(float(got), total / 2, rtol=1e-5)


def test_mocov3_local_loss_matches_definition():
  rng = np.random.default_rng(2)
  b, n, d, tau = 4, 3, 5, 0.2
  lq, lk = rng.normal(size=(2, 2, b, n, d))
  gq, gk = rng.normal(size=(2, 2, b, d))

  def ctr(q, keys, pos):   # 2 tau * -log softmax_j(cos(q, k_j) / tau)[pos]
    s = np.array([_cos(q, kj) for kj in keys]) / tau
    return -2 * tau * (s[pos] - np.log(np.sum(np.exp(s))))

  total = 0.0
  for v, w in ((0, 1), (1, 0)):
    for i in range(n):
      for j in range(b):
        total += ctr(lq[v, j, i], gk[w], j) / (n * b) + ctr(gq[v, j], lk[w, :, i], j) / (n * b)
  got = losses.mocov3_local_loss(*map(jnp.asarray, (lq, gq, lk, gk)), tau)
  np.testing.assert_allclose(float(got), total, rtol=1e-5)


def test_local_tokens_downsampling():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  assert co_ssl.local_tokens(x, 0).shape == (2, 16, 3)
  np.testing.assert_array_equal(co_ssl.local_tokens(x, 4), co_ssl.local_tokens(x, 0))
  one = co_ssl.local_tokens(x, 1)
  assert one.shape == (2, 1, 3)
  np.testing.assert_allclose(one[:, 0], x.mean(axis=(1, 2)), rtol=1e-6)
  two = co_ssl.local_tokens(x, 2)
  assert two.shape == (2, 4, 3)
  np.testing.assert_allclose(two[:, 1], x[:, 0:2, 2:4].mean(axis=(1, 2)), rtol=1e-6)   # row 0, column 1
  # 3 -> 2 positions: adaptive bins [0, 2) and [1, 3) overlap.
  y = jnp.arange(9, dtype=jnp.float32).reshape(1, 3, 3, 1)
  np.testing.assert_allclose(co_ssl.local_tokens(y, 2)[0, :, 0], [2.0, 3.0, 5.0, 6.0])
  with pytest.raises(ValueError, match="local_grid"):
    co_ssl.local_tokens(x, 5)


def _co_config(method: str, **local):
  """tiny_config of the base method turned into its CO variant (same base fields), 2 x 2 local maps."""
  base = {"co_byol": "byol", "co_dino": "dino"}.get(method)
  if base is not None:
    c = tiny_config(base)
  else:   # co_mocov3: tiny_config has no MoCo v3 block
    c = tiny_config("byol")
    c.mocov3 = importlib.import_module("jssl.methods.mocov3").default_config()
    c.mocov3.update(proj_hidden=32, proj_dim=16, pred_hidden=32)
    del c["byol"]
  c.model.stem_pool = False   # 28 px -> a 2 x 2 last-stage map
  c.method = method
  c[method] = importlib.import_module(f"jssl.methods.{method}").default_config()
  for key in ("local_proj_hidden", "local_pred_hidden"):
    if key in c[method]:
      c[method][key] = 32
  c[method].update(local)
  return c


def test_local_heads_see_n_squared_positions():
  from jssl.methods import co_byol
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 4, 28, 28, 1)), jnp.float32)
  shapes = {}
  for grid in (0, 1):
    config = _co_config("co_byol", local_grid=grid)
    student, teacher = co_byol.build(config, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
    out = co_byol.byol.forward(student, teacher, x)
    preds, targets = co_ssl.local_mlp_outputs(student, teacher, out.online, out.target, grid)
    assert out.online[0]["local"].shape[1:3] == (2, 2)
    shapes[grid] = (preds.shape, targets.shape)
  assert shapes[0] == (((2, 4, 4, 16),) * 2)
  assert shapes[1] == (((2, 4, 1, 16),) * 2)


def test_w_s_zero_is_byol():
  byol_config = tiny_config("byol")
  byol_config.model.stem_pool = False
  co_config = _co_config("co_byol", w_s=0.0)
  batches = _batches(byol_config, 1)
  (_, a), _ = _run_steps(byol_config, 1, 1, batches)
  (_, b), metrics = _run_steps(co_config, 1, 1, batches)
  assert metrics[0]["local_loss"] > 0
  for key in ("params", "teacher_params", "batch_stats", "teacher_stats"):
    for name in a[key]:   # BYOL's networks; CO-BYOL also has local heads
      jax.tree.map(np.testing.assert_array_equal, a[key][name], b[key][name])


@pytest.mark.parametrize("method", ["co_byol", "co_dino", "co_mocov3"])
def test_one_and_eight_devices_agree(method):
  config = _co_config(method, local_grid=0)
  batches = _batches(config, 1)
  s1, m1 = _run_steps(config, 1, 1, batches)
  s8, m8 = _run_steps(config, 8, 1, batches)
  for key in ("loss", "local_loss"):
    np.testing.assert_allclose(m1[0][key], m8[0][key], rtol=1e-5, atol=1e-6)
  assert m1[0]["local_loss"] > 0
  # Adam / LARS amplify float32 reduction-order differences near zero gradients (tests/test_train.py).
  for key in ("params", "teacher_params", "batch_stats", "method_state"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), s1[-1][key], s8[-1][key])


def test_co_dino_separate_local_head():
  from jssl.methods import co_dino
  from jssl.methods.common import StepContext
  config = _co_config("co_dino", local_head="separate", local_grid=1)
  student, teacher = co_dino.build(config, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
  assert hasattr(student, "local_head") and hasattr(teacher, "local_head")
  rng = np.random.default_rng(4)
  views = {"global": jnp.asarray(rng.normal(size=(2, 4, 28, 28, 1)), jnp.float32),
           "local": jnp.asarray(rng.normal(size=(2, 4, 12, 12, 1)), jnp.float32)}
  state = co_dino.init_state(config)
  value, (new_state, metrics, feats) = co_dino.loss(student, teacher, state, views, rng=jax.random.key(1),
                                                    ctx=StepContext(jnp.asarray(0), 2, 4), config=config)
  np.testing.assert_allclose(float(value), float(metrics["dino_loss"] + 0.5 * metrics["local_loss"]), rtol=1e-6)
  assert new_state["local_center"].shape == state["local_center"].shape == (64,)
  assert not np.allclose(new_state["local_center"], 0.0)
  assert feats.shape == (4, student.encoder.out_dim)
  with pytest.raises(ValueError, match="co_dino.local_head"):
    co_dino.build(_co_config("co_dino", local_head="both"), in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))


@pytest.mark.parametrize("method,base", [("co_dino", "dino"), ("co_mocov3", "mocov3")])
def test_global_term_is_the_base_loss(method, base):
  """The CO method's logged global term is the base method's loss on the same networks and inputs."""
  from jssl.methods.common import StepContext
  co, base_module = importlib.import_module(f"jssl.methods.{method}"), importlib.import_module(f"jssl.methods.{base}")
  config = _co_config(method)
  student, teacher = co.build(config, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 4, 28, 28, 1)), jnp.float32)
  args = dict(views={"global": x}, rng=jax.random.key(1), ctx=StepContext(jnp.asarray(0), 2, 4), config=config)
  _, (_, metrics, feats) = co.loss(student, teacher, co.init_state(config), **args)
  want, (_, _, want_feats) = base_module.loss(student, teacher, base_module.init_state(config), **args)
  np.testing.assert_array_equal(metrics[f"{base}_loss"], want)
  np.testing.assert_array_equal(feats, want_feats)


def test_byol_projector_depth():
  """`byol.proj_layers` deepens the BYOL family's projector (student and EMA target alike);
  the default is BYOL's one hidden layer."""
  from jssl.methods import byol
  config = tiny_config("byol")
  sizes = {}
  for layers in (2, 3):
    config.byol.proj_layers = layers
    student, teacher = byol.build(config, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
    kernels = lambda m: [p for path, p in nnx.to_flat_state(nnx.state(m, nnx.Param)) if path[-1] == "kernel"]
    sizes[layers] = (len(kernels(student.projector)), len(kernels(teacher.projector)))
  assert sizes == {2: (2, 2), 3: (3, 3)}
  config.byol.proj_layers = 1
  with pytest.raises(ValueError, match="byol.proj_layers"):
    byol.build(config, in_channels=1, rngs=nnx.Rngs(params=jax.random.key(0)))
