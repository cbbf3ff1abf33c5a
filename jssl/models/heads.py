"""Projection / prediction heads for joint-embedding methods.

`MLP` is the BYOL/SimCLR-style projector and predictor; `DINOHead` is DINO's
projection head ending in a weight-normalised prototype layer (Caron et al., 2021).
Both act on the last axis, so they apply equally to pooled features [B, D] and to
local features such as tokens [B, N, D] or maps [B, h, w, D] (BatchNorm then
normalises over every leading axis).

Precision: parameters and BatchNorm statistics are float32; matmuls run in the compute
dtype `dtype`; BatchNorm and the L2 normalisation are computed in float32. Outputs are
in the compute dtype: losses cast to float32 where their softmax / cosine is, which
keeps large logits (DINO's [B, 65536]) half the size in bfloat16.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_ACTIVATIONS = {
  "relu": jax.nn.relu,
  # Exact erf GELU, as PyTorch's nn.GELU in the reference implementations.
  "gelu": functools.partial(jax.nn.gelu, approximate=False),
}
_INIT = nnx.initializers.truncated_normal(stddev=0.02)


def _compute_dtype(dtype: Any) -> Any:
  if isinstance(dtype, str):
    if dtype not in _DTYPES:
      raise ValueError(
        f"head dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    return _DTYPES[dtype]
  return dtype


def _batchnorm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  # float32 so statistics and normalisation stay float32 in bfloat16 compute.
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=jnp.float32,
                       rngs=rngs)


class MLP(nnx.Module):
  """Linear -> [BN] -> act, (num_layers - 1) times, then Linear [-> BN].

  BYOL projector and predictor: MLP(d, 4096, 256, 2, batchnorm=True).
  """

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int,
               num_layers: int = 2, *, batchnorm: bool = True,
               act: str = "relu", last_bn: bool = False,
               dtype: Any = "float32", rngs: nnx.Rngs):
    """Builds the MLP.

    Args:
      in_dim: input width.
      hidden_dim: width of the hidden layers (unused when num_layers == 1).
      out_dim: output width.
      num_layers: number of linear layers, >= 1.
      batchnorm: BatchNorm after each hidden linear layer.
      act: hidden activation, "relu" or "gelu".
      last_bn: BatchNorm (with scale and bias) after the last linear layer.
      dtype: compute dtype ("float32", "bfloat16" or a jnp dtype).
      rngs: initialisation randomness.
    """
    if num_layers < 1:
      raise ValueError(f"MLP num_layers must be >= 1, got {num_layers}.")
    if act not in _ACTIVATIONS:
      raise ValueError(
        f"MLP act must be one of {sorted(_ACTIVATIONS)}, got {act!r}.")
    self.dtype = _compute_dtype(dtype)
    self.act = act
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    self.linears = nnx.List([
      nnx.Linear(d_in, d_out, dtype=self.dtype, kernel_init=_INIT, rngs=rngs)
      for d_in, d_out in zip(dims[:-1], dims[1:])])
    self.norms = nnx.List(
      [_batchnorm(d, rngs) for d in dims[1:-1]] if batchnorm else [])
    self.last_norm = _batchnorm(out_dim, rngs) if last_bn else None

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[..., in_dim] -> [..., out_dim] in the compute dtype.

    `train` selects batch (True, and updates the running statistics) or running
    (False) BatchNorm statistics.
    """
    act = _ACTIVATIONS[self.act]
    x = x.astype(self.dtype)
    for i, linear in enumerate(self.linears[:-1]):
      x = linear(x)
      if self.norms:
        x = self.norms[i](x, use_running_average=not train).astype(self.dtype)
      x = act(x)
    x = self.linears[-1](x)
    if self.last_norm is not None:
      x = self.last_norm(x, use_running_average=not train).astype(self.dtype)
    return x


class WeightNormLinear(nnx.Module):
  """Bias-free linear layer with weight normalisation (Salimans & Kingma, 2016).

  The effective kernel is W[:, j] = g_j * v[:, j] / ||v[:, j]|| for each output
  unit j: the direction `v` ([in_dim, out_dim], an nnx.Param) is learned apart
  from the length `g`. With `fixed_scale=True` (DINO's norm_last_layer) g is the
  constant 1: no variable is stored for it, so it is in no state, is never
  trained and cannot be touched by an optimiser. Otherwise `g` is an nnx.Param
  [out_dim] initialised to 1.
  """

  def __init__(self, in_dim: int, out_dim: int, *, fixed_scale: bool = True,
               dtype: Any = "float32", rngs: nnx.Rngs):
    self.dtype = _compute_dtype(dtype)
    self.v = nnx.Param(_INIT(rngs.params(), (in_dim, out_dim)))
    self.g = None if fixed_scale else nnx.Param(jnp.ones((out_dim,)))

  def kernel(self) -> jax.Array:
    """The effective float32 kernel [in_dim, out_dim]."""
    v = self.v[...]
    w = v * jax.lax.rsqrt(jnp.sum(v * v, axis=0, keepdims=True))
    if self.g is not None:
      w = w * self.g[...]
    return w

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., in_dim] -> [..., out_dim] in the compute dtype."""
    return jnp.dot(x.astype(self.dtype), self.kernel().astype(self.dtype))


class DINOHead(nnx.Module):
  """DINO projection head: MLP -> bottleneck -> L2 normalise -> prototypes.

  logits = last_layer(normalize(mlp(x))), where mlp has `num_layers` linear layers
  (GELU between them, optional BatchNorm) ending at `bottleneck_dim`, and
  `last_layer` is a bias-free WeightNormLinear to `out_dim` prototypes. The
  submodule is named `last_layer` so the trainer can freeze it by path during
  the first epoch.
  """

  def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048,
               bottleneck_dim: int = 256, num_layers: int = 3, *,
               norm_last_layer: bool = True, batchnorm: bool = False,
               dtype: Any = "float32", rngs: nnx.Rngs):
    """Builds the head.

    Args:
      in_dim: backbone feature width.
      out_dim: number of prototypes K.
      hidden_dim: width of the hidden MLP layers.
      bottleneck_dim: width of the L2-normalised bottleneck.
      num_layers: linear layers before the bottleneck, >= 1.
      norm_last_layer: fix the weight-norm length g of the prototypes at 1.
      batchnorm: BatchNorm after the hidden linear layers.
      dtype: compute dtype ("float32", "bfloat16" or a jnp dtype).
      rngs: initialisation randomness.
    """
    self.mlp = MLP(in_dim, hidden_dim, bottleneck_dim, num_layers,
                   batchnorm=batchnorm, act="gelu", dtype=dtype, rngs=rngs)
    self.last_layer = WeightNormLinear(bottleneck_dim, out_dim,
                                       fixed_scale=norm_last_layer,
                                       dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[..., in_dim] -> logits [..., out_dim] in the compute dtype."""
    z = self.mlp(x, train=train).astype(jnp.float32)
    # x / max(||x||, 1e-12) as F.normalize, written with rsqrt so the gradient
    # stays finite at zero.
    z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, -1, keepdims=True), 1e-24))
    return self.last_layer(z)
