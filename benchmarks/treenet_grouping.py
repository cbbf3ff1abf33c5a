"""How much faster is one grouped network of m TreeNet leaves than m separate leaf networks?

  python benchmarks/treenet_grouping.py [--leaves=32] [--batch=16] [--side=32] [--channels=3]

Times a jitted forward + backward (gradients of every leaf parameter for the mean square
of the leaf outputs) of m leaves (jssl.models.leaf_cnn, 8-16-32-48-64) on one image batch,
written three ways with the same parameters and the same numbers:
  grouped:       LeafStack, as TreeNet runs: stacked parameters, each 2 x 2 convolution of
                 all leaves as shifted slices and one matmul batched over leaves;
  grouped_conv:  the same stacked parameters through XLA grouped convolutions
                 (`feature_group_count = m`, the paper's PyTorch implementation, Sec. 3.4);
  loop:          a Python loop over m separate LeafCNNs (nnx.Conv), traced into one program.
Prints ms per call and the largest difference of each output from grouped's, and the
first call's time (compile included).

On the 2-core CPU shared with other jobs (load about 4-5), 32 leaves, 32 x 32 x 3:
  batch 8:  grouped 1395 ms (first call 6 s), grouped_conv 64148 ms (68 s), loop 1224 ms (94 s)
  batch 32: grouped 5451 ms (16 s), loop 6888 ms (116 s)   (--skip=grouped_conv)
All three agree to 1.4e-5. XLA:CPU's grouped convolutions are the slow path; the
paper's "up to 20x" from grouping (Sec. 3.4, PyTorch on GPU) is not measured here.
"""
import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jssl.models import leaf_cnn

_DN = ("NHWC", "HWIO", "NHWC")


def grouped_conv_forward(p: dict, x: jax.Array, m: int, num_convs: int) -> jax.Array:
  """LeafStack's function with XLA grouped convolutions over [B, h, w, m C] maps -> [B, m, D]."""
  def conv(h, layer):
    k = p[layer]["kernel"]                                  # [m, k, k, C_in, C_out]
    kernel = jnp.transpose(k, (1, 2, 3, 0, 4)).reshape(k.shape[1], k.shape[2], k.shape[3], -1)
    groups = 1 if layer == "conv1" else m                   # the first layer: every leaf reads the image
    return jax.lax.conv_general_dilated(h, kernel, (1, 1), "VALID", dimension_numbers=_DN,
                                        feature_group_count=groups) + p[layer]["bias"]

  def norm(h, layer):                                       # per leaf over (h, w, C): GroupNorm, m groups
    b, hh, ww, _ = h.shape
    g = h.reshape(b, hh, ww, m, -1)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = jnp.square(g - mean).mean(axis=(1, 2, 4), keepdims=True)
    g = ((g - mean) * jax.lax.rsqrt(var + leaf_cnn.EPSILON)).reshape(h.shape)
    return g * p[layer]["scale"] + p[layer]["bias"]

  h = conv(x, "conv1")
  for i in range(2, num_convs + 1):
    h = jax.nn.relu(conv(norm(h, f"norm{i}"), f"conv{i}"))
  pooled = h.mean(axis=(1, 2)).reshape(x.shape[0], m, -1)   # [B, m, C]
  mean = pooled.mean(-1, keepdims=True)
  var = jnp.square(pooled - mean).mean(-1, keepdims=True)
  ln = (pooled - mean) * jax.lax.rsqrt(var + leaf_cnn.EPSILON)
  ln = ln * p["head_norm"]["scale"].reshape(m, -1) + p["head_norm"]["bias"].reshape(m, -1)
  hidden = jax.nn.relu(jnp.einsum("bmi,mio->bmo", ln, p["dense1"]["kernel"]) + p["dense1"]["bias"].reshape(m, -1))
  return jnp.einsum("bmi,mio->bmo", hidden, p["dense2"]["kernel"]) + p["dense2"]["bias"].reshape(m, -1)


def time_call(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--leaves", type=int, default=32)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--side", type=int, default=32)
  parser.add_argument("--channels", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--skip", default="", help="comma-separated variants not to run")
  args = parser.parse_args()
  m = args.leaves
  stack = leaf_cnn.LeafStack(m, args.channels, rngs=nnx.Rngs(0))
  stack_def, state = nnx.split(stack, nnx.Param)
  params = nnx.to_pure_dict(state)
  leaf_def = nnx.graphdef(nnx.eval_shape(lambda: leaf_cnn.LeafCNN(args.channels, rngs=nnx.Rngs(0))))
  x = jax.random.normal(jax.random.key(1), (args.batch, args.side, args.side, args.channels))

  variants = {
      "grouped": lambda p: nnx.merge(stack_def, p)(x)["out"],
      "grouped_conv": lambda p: grouped_conv_forward(p, x, m, stack.num_convs),
      "loop": lambda p: jnp.stack([nnx.merge(leaf_def, leaf_cnn.leaf_params(p, j))(x)["out"] for j in range(m)], 1),
  }
  skip = set(filter(None, args.skip.split(",")))
  print(f"device={jax.devices()[0].device_kind}; {m} leaves, batch {args.batch}, {args.side} x {args.side} x "
        f"{args.channels}; forward + backward, ms per call")
  reference = jax.jit(variants["grouped"])(params)
  for name, forward in variants.items():
    if name in skip:
      continue
    grad = jax.jit(jax.grad(lambda p, f=forward: jnp.mean(jnp.square(f(p)))))
    t0 = time.perf_counter()
    jax.block_until_ready(grad(params))
    compile_s = time.perf_counter() - t0
    ms = time_call(grad, params, repeats=args.repeats)
    diff = float(jnp.max(jnp.abs(jax.jit(forward)(params) - reference)))
    print(f"{name:<13} {ms:10.1f} ms   (first call {compile_s:6.1f} s)   max |out - grouped| {diff:.1e}", flush=True)


if __name__ == "__main__":
  main()
