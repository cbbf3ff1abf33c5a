"""Is a convolution faster on this backend as patches + matmul than as XLA's convolution?

  python benchmarks/conv_lowering.py

For the convolution shapes of configs/quickstart.py (and the stride-1-stem
variant), times the jitted forward + backward (gradients for the input and the
kernel) of three formulations giving the same numbers:
  lax:     jax.lax.conv_general_dilated (what nnx.Conv runs);
  patches: jax.lax.conv_general_dilated_patches, then a matmul;
  slices:  k x k shifted slices concatenated on channels, then a matmul.
Prints one row per shape: ms per call of each, and the largest difference of
the outputs from lax's.
"""
import time

import jax
import jax.numpy as jnp

SHAPES = [  # batch, side, in channels, out channels, kernel, stride
    (256, 28, 1, 16, 7, 2), (256, 7, 16, 16, 3, 1), (256, 7, 16, 32, 3, 2), (256, 4, 32, 32, 3, 1),
    (256, 28, 16, 16, 3, 1), (256, 14, 32, 32, 3, 1),
]
_DN = ("NHWC", "HWIO", "NHWC")


def lax_conv(x, w, stride):
  p = w.shape[0] // 2
  return jax.lax.conv_general_dilated(x, w, (stride, stride), ((p, p), (p, p)), dimension_numbers=_DN)


def patches_conv(x, w, stride):
  k, p = w.shape[0], w.shape[0] // 2
  cols = jax.lax.conv_general_dilated_patches(x, (k, k), (stride, stride), ((p, p), (p, p)), dimension_numbers=_DN)
  return cols @ jnp.transpose(w, (2, 0, 1, 3)).reshape(-1, w.shape[-1])   # patch channels are (C, kh, kw)


def slices_conv(x, w, stride):
  k, p = w.shape[0], w.shape[0] // 2
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  h = (x.shape[1] + 2 * p - k) // stride + 1
  span = stride * (h - 1) + 1
  cols = jnp.concatenate([xp[:, i:i + span:stride, j:j + span:stride, :] for i in range(k) for j in range(k)], -1)
  return cols @ w.reshape(-1, w.shape[-1])


def time_grad(fn, x, w, stride, repeats=10):
  grad = jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w, stride) ** 2), argnums=(0, 1)))
  jax.block_until_ready(grad(x, w))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = grad(x, w)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats * 1e3


def main():
  key = jax.random.PRNGKey(0)
  print(f"device={jax.devices()[0].device_kind} x{jax.device_count()}; forward + backward, ms per call")
  print("shape (B, side, C_in, C_out, k, stride) | lax | patches | slices | max |diff|")
  for b, side, cin, cout, k, s in SHAPES:
    x = jax.random.normal(key, (b, side, side, cin))
    w = jax.random.normal(key, (k, k, cin, cout)) * 0.1
    ref = lax_conv(x, w, s)
    diff = max(float(jnp.max(jnp.abs(f(x, w, s) - ref))) for f in (patches_conv, slices_conv))
    times = [time_grad(f, x, w, s) for f in (lax_conv, patches_conv, slices_conv)]
    print(f"{(b, side, cin, cout, k, s)} | " + " | ".join(f"{t:.1f}" for t in times) + f" | {diff:.1e}")


if __name__ == "__main__":
  main()
