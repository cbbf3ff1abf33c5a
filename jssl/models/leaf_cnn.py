"""TreeNet's leaf CNN (paper 000, Sec. 5.1), and m such leaves run as one grouped network.

One leaf, as Sec. 5.1 describes the experiments' network (channels 8-16-32-48-64):

  conv k x k (C_in -> 8)                                  # the first layer: no norm, no ReLU
  4 x [LayerNorm -> conv k x k -> ReLU]                   # 8 -> 16 -> 32 -> 48 -> 64
  spatial mean -> LayerNorm -> dense (64 -> H) -> ReLU -> dense (H -> D)

Every convolution has a bias, a 2 x 2 kernel (k = 2), padding 0 and stride 1, so an S x S
image leaves an (S - 5 (k - 1))^2 map (23 x 23 at 28 px, 27 x 27 at 32 px), and any image
size works (Sec. 3.2.1 asks for that). Sec. 3.2.1 says instead that every convolution is
followed by a LayerNorm and a ReLU; jssl follows Sec. 5.1, the implementation details.

Choices the paper leaves open:
- The LayerNorm on a convolution map normalises each leaf's [h, w, C] map of each image
  (mean and variance over positions and channels) with a per-channel scale and bias: the
  "grouped normalization" of Sec. 3.4 (GroupNorm with one group per leaf), which does not
  tie the network to one image size. The LayerNorm after pooling normalises the C channels.
  epsilon 1e-5 (PyTorch's).
- H (`hidden_dim`) and D (`out_dim`) are not given; jssl's defaults are 64 and 64.
- Initialisation: LeCun normal kernels (fan-in, truncated normal), zero biases, unit
  scales; each leaf draws its own values. The stacked kernels are drawn as one flat
  vector and reshaped: XLA:CPU compiles the random bits of a rank-5 array many times
  slower (seconds per kernel) than those of a flat one.

`LeafCNN` is one leaf in plain Flax layers. `LeafStack` runs m leaves at once with stacked
parameters: kernels carry a leading [m] axis ([m, k, k, C_in, C_out] and [m, in, out]);
per-channel vectors (biases, norm scales) are stored flat as [m * C] in leaf-major order
(leaf j owns entries j C ... (j + 1) C - 1), so that the optimizer's weight-decay mask
(parameters with ndim > 1) leaves them undecayed, as it does for one network. A k x k
convolution of all leaves is k^2 shifted slices of the [m, B, h, w, C] maps concatenated
on channels, then one matmul batched over leaves. On XLA:CPU a grouped convolution
(`feature_group_count = m`, also what a `vmap` of `lax.conv` over leaves lowers to) is
about 45x slower than this; against a Python loop over m separate leaf networks traced
into one program this form is about as fast per step (0.9-1.3x on the 2-core CPU) and
compiles 6-7x faster (benchmarks/treenet_grouping.py has the numbers).
`leaf_params(stack_params, j)` reads leaf j's parameters in `LeafCNN`'s layout.
"""
from typing import Any, Sequence

import math

import jax
import jax.numpy as jnp
from flax import nnx

CHANNELS = (8, 16, 32, 48, 64)
EPSILON = 1e-5
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
  if name not in _DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(_DTYPES)}, got {name!r}.")
  return _DTYPES[name]


def _lecun_normal(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
  """Flax's `lecun_normal` (truncated at 2 standard deviations, variance 1 / fan_in after
  truncation), drawn flat and reshaped to `shape`, float32."""
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978   # the std of a unit normal truncated at +-2
  flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),), jnp.float32)
  return (flat * std).reshape(shape)


class LeafCNN(nnx.Module):
  """One leaf in plain Flax layers (the reference for `LeafStack`)."""

  def __init__(self, in_channels: int, channels: Sequence[int] = CHANNELS, *, kernel_size: int = 2,
               hidden_dim: int = 64, out_dim: int = 64, rngs: nnx.Rngs):
    k, widths = (kernel_size, kernel_size), (in_channels,) + tuple(channels)
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]), start=1):
      if i > 1:
        setattr(self, f"norm{i}", nnx.LayerNorm(cin, epsilon=EPSILON, reduction_axes=(-3, -2, -1), rngs=rngs))
      setattr(self, f"conv{i}", nnx.Conv(cin, cout, k, padding="VALID", rngs=rngs))
    self.num_convs = len(channels)
    self.head_norm = nnx.LayerNorm(channels[-1], epsilon=EPSILON, rngs=rngs)
    self.dense1 = nnx.Linear(channels[-1], hidden_dim, rngs=rngs)
    self.dense2 = nnx.Linear(hidden_dim, out_dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> dict:
    """x: [B, S, S, C_in] -> {"pooled": [B, C_last], "hidden": [B, H], "out": [B, D]}."""
    for i in range(1, self.num_convs + 1):
      if i == 1:
        x = self.conv1(x)
      else:
        x = jax.nn.relu(getattr(self, f"conv{i}")(getattr(self, f"norm{i}")(x)))
    pooled = x.mean(axis=(1, 2))
    hidden = jax.nn.relu(self.dense1(self.head_norm(pooled)))
    return {"pooled": pooled, "hidden": hidden, "out": self.dense2(hidden)}


class _Conv(nnx.Module):
  """m k x k VALID convolutions: kernel [m, k, k, C_in, C_out], bias [m * C_out]."""

  def __init__(self, m: int, cin: int, cout: int, k: int, *, dtype: Any, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_lecun_normal(rngs.params(), (m, k, k, cin, cout), k * k * cin))
    self.bias = nnx.Param(jnp.zeros((m * cout,), jnp.float32))
    self.m, self.k, self.dtype = m, k, dtype

  def __call__(self, x: jax.Array, *, shared: bool = False) -> jax.Array:
    """x: [m, B, h, w, C_in] (or [B, h, w, C_in] fed to every leaf, shared=True)
    -> [m, B, h - k + 1, w - k + 1, C_out]."""
    k, m = self.k, self.m
    h, w = x.shape[-3:-1]
    cols = jnp.concatenate([x[..., i:h - k + 1 + i, j:w - k + 1 + j, :] for i in range(k) for j in range(k)],
                           axis=-1).astype(self.dtype)
    kernel = self.kernel[...].reshape(m, -1, self.kernel.shape[-1]).astype(self.dtype)
    spec = "bhwc,mco->mbhwo" if shared else "mbhwc,mco->mbhwo"
    y = jnp.einsum(spec, cols, kernel, preferred_element_type=jnp.float32)
    return (y + self.bias[...].reshape(m, 1, 1, 1, -1)).astype(self.dtype)


class _Norm(nnx.Module):
  """m LayerNorms over `axes` of [m, B, ..., C], per-channel scale and bias [m * C], in float32."""

  def __init__(self, m: int, channels: int, axes: tuple[int, ...]):
    self.scale = nnx.Param(jnp.ones((m * channels,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((m * channels,), jnp.float32))
    self.m, self.axes = m, axes

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=self.axes, keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=self.axes, keepdims=True)
    shape = (self.m,) + (1,) * (x.ndim - 2) + (-1,)
    y = (x32 - mean) * jax.lax.rsqrt(var + EPSILON)
    return (y * self.scale[...].reshape(shape) + self.bias[...].reshape(shape)).astype(x.dtype)


class _Dense(nnx.Module):
  """m dense layers: kernel [m, in, out], bias [m * out]; [m, B, in] -> [m, B, out]."""

  def __init__(self, m: int, din: int, dout: int, *, dtype: Any, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_lecun_normal(rngs.params(), (m, din, dout), din))
    self.bias = nnx.Param(jnp.zeros((m * dout,), jnp.float32))
    self.m, self.dtype = m, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.einsum("mbi,mio->mbo", x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                   preferred_element_type=jnp.float32)
    return y + self.bias[...].reshape(self.m, 1, -1)


class LeafStack(nnx.Module):
  """m independently initialised leaves run together (see the module docstring).

  Parameter names match `LeafCNN`'s (conv1..conv5, norm2..norm5, head_norm, dense1, dense2).
  """

  def __init__(self, num_leaves: int, in_channels: int, channels: Sequence[int] = CHANNELS, *,
               kernel_size: int = 2, hidden_dim: int = 64, out_dim: int = 64, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    m, widths = num_leaves, (in_channels,) + tuple(channels)
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]), start=1):
      if i > 1:
        setattr(self, f"norm{i}", _Norm(m, cin, axes=(2, 3, 4)))
      setattr(self, f"conv{i}", _Conv(m, cin, cout, kernel_size, dtype=dtype, rngs=rngs))
    self.head_norm = _Norm(m, channels[-1], axes=(2,))
    self.dense1 = _Dense(m, channels[-1], hidden_dim, dtype=dtype, rngs=rngs)
    self.dense2 = _Dense(m, hidden_dim, out_dim, dtype=dtype, rngs=rngs)
    self.num_leaves, self.num_convs = m, len(channels)
    self.kernel_size = kernel_size

  def __call__(self, x: jax.Array) -> dict:
    """x: [B, S, S, C_in], the same image for every leaf ->
    {"pooled": [B, m, C_last], "hidden": [B, m, H], "out": [B, m, D]}, float32."""
    if min(x.shape[1:3]) < self.num_convs * (self.kernel_size - 1) + 1:
      raise ValueError(f"images of side {min(x.shape[1:3])} are too small for {self.num_convs} VALID "
                       f"{self.kernel_size} x {self.kernel_size} convolutions.")
    for i in range(1, self.num_convs + 1):
      if i == 1:
        h = self.conv1(x, shared=True)
      else:
        h = jax.nn.relu(getattr(self, f"conv{i}")(getattr(self, f"norm{i}")(h)))
    pooled = h.astype(jnp.float32).mean(axis=(2, 3))              # [m, B, C]
    hidden = jax.nn.relu(self.dense1(self.head_norm(pooled)))
    out = self.dense2(hidden)
    return {name: jnp.swapaxes(t, 0, 1) for name, t in (("pooled", pooled), ("hidden", hidden), ("out", out))}


def leaf_params(stack_params: dict, j) -> dict:
  """Leaf j of a `LeafStack`'s parameters (a pure dict, e.g. `nnx.to_pure_dict(nnx.state(stack, nnx.Param))`),
  as a pure dict in `LeafCNN`'s layout. Differentiable in `stack_params`."""
  def pick(path, p):
    m = stack_params["conv1"]["kernel"].shape[0]
    name = path[-1].key
    return p[j] if name == "kernel" else p.reshape(m, -1)[j]
  return jax.tree_util.tree_map_with_path(pick, stack_params)
