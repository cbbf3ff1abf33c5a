"""Times the blockwise k-NN top-k against the bare similarity matmul under it.

Both run on the same devices over the same synthetic bank, with queries in the
same chunks; the matmul baseline computes each chunk's full [chunk, N]
similarity matrix and reduces it with a row max (the cheapest thing that keeps
XLA from dropping the product). The ratio top-k / matmul is the price of exact
selection. ``--full_topk`` adds ``lax.top_k`` over whole [chunk, N] rows, the
single-stage search that XLA:GPU turns into a full sort for k > 16.

  # CPU default (100k bank x 2k queries x 384):
  python benchmarks/knn_bench.py
  # 8 simulated CPU devices:
  python benchmarks/knn_bench.py --host_devices=8 --devices=8
  # The large setting (1M bank x 10k queries x 768) on a GPU:
  python benchmarks/knn_bench.py --n=1000000 --q=10000 --d=768 --k=20 200
"""
import argparse
import os
import sys
import time


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=100_000, help="bank rows N")
  parser.add_argument("--q", type=int, default=2_000, help="queries Q")
  parser.add_argument("--d", type=int, default=384, help="feature size D")
  parser.add_argument("--k", type=int, nargs="+", default=[20, 200],
                      help="neighbour counts, each timed separately")
  parser.add_argument("--block_size", type=int, default=4096)
  parser.add_argument("--query_chunk", type=int, default=1024)
  parser.add_argument("--metric", default="cosine",
                      choices=["cosine", "euclidean"])
  parser.add_argument("--dtype", default="float32",
                      choices=["float32", "bfloat16"],
                      help="storage dtype of bank and queries")
  parser.add_argument("--devices", type=int, default=0,
                      help="devices in the mesh; 0: no mesh, one device")
  parser.add_argument("--host_devices", type=int, default=0,
                      help="simulated CPU devices (sets XLA_FLAGS)")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed runs after one warm-up; the median is shown")
  parser.add_argument("--full_topk", action="store_true",
                      help="also time lax.top_k over full [chunk, N] rows")
  return parser.parse_args()


ARGS = _parse_args()
if ARGS.host_devices:
  # Must be set before jax is imported.
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") +
      f" --xla_force_host_platform_device_count={ARGS.host_devices}")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jssl.evaluators import knn


def _median_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # Compile and warm up outside the timing.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _chunked(fn, queries, chunk: int, sharding):
  """Runs fn over fixed-size query chunks, as topk_blockwise does."""
  outs = []
  for start in range(0, queries.shape[0], chunk):
    q = queries[start:start + chunk]
    if q.shape[0] < chunk:
      q = jnp.pad(q, ((0, chunk - q.shape[0]), (0, 0)))
    if sharding is not None:
      q = jax.device_put(q, sharding)
    outs.append(fn(q))
  return outs


def main():
  args = ARGS
  dtype = jnp.dtype(args.dtype)
  mesh = None
  if args.devices:
    mesh = jax.make_mesh((args.devices,), ("data",),
                         axis_types=(AxisType.Auto,),
                         devices=jax.devices()[:args.devices])
  key_bank, key_q = jax.random.split(jax.random.key(0))
  bank = jax.random.normal(key_bank, (args.n, args.d), jnp.float32)
  queries = jax.random.normal(key_q, (args.q, args.d), jnp.float32)
  if args.metric == "cosine":
    bank = bank / jnp.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / jnp.linalg.norm(queries, axis=1, keepdims=True)
  bank, queries = bank.astype(dtype), queries.astype(dtype)
  replicated = None if mesh is None else NamedSharding(mesh, P())
  if mesh is not None:
    # The baseline gets the bank laid out as topk_blockwise lays it out.
    n_even = -(-args.n // args.devices) * args.devices
    bank = jax.device_put(jnp.pad(bank, ((0, n_even - args.n), (0, 0))),
                          NamedSharding(mesh, P("data", None)))
  else:
    n_even = args.n
  chunk = min(args.query_chunk, args.q)

  def similarity(q, b):
    return jnp.dot(q.astype(jnp.float32), b.astype(jnp.float32).T,
                   precision=jax.lax.Precision.HIGHEST)

  # The bank is an argument, not a closed-over constant, so it is not baked
  # into the compiled program.
  matmul_max = jax.jit(lambda q, b: jnp.max(similarity(q, b), axis=1))
  matmul_s = _median_seconds(
      lambda: _chunked(lambda q: matmul_max(q, bank), queries, chunk,
                       replicated), args.repeats)
  unpadded = bank[:args.n] if n_even != args.n else bank

  rows = [("matmul + row max", "-", matmul_s)]
  for k in args.k:
    seconds = _median_seconds(
        lambda k=k: knn.topk_blockwise(
            queries, unpadded, k, block_size=args.block_size,
            query_chunk=args.query_chunk, metric=args.metric, mesh=mesh),
        args.repeats)
    rows.append(("blockwise top-k", k, seconds))
    if args.full_topk:
      full = jax.jit(lambda q, b, k=k: jax.lax.top_k(similarity(q, b), k))
      seconds = _median_seconds(
          lambda full=full: _chunked(lambda q: full(q, bank), queries, chunk,
                                     replicated), args.repeats)
      rows.append(("full-row lax.top_k", k, seconds))

  devices = args.devices or 1
  print(f"device: {jax.devices()[0].device_kind} x {devices}, "
        f"dtype {args.dtype}, metric {args.metric}, "
        f"block {args.block_size}, query chunk {chunk}")
  header = (f"{'method':<20} {'N':>9} {'Q':>7} {'D':>5} {'k':>5} "
            f"{'seconds':>9} {'ratio':>7}")
  print(header)
  print("-" * len(header))
  for name, k, seconds in rows:
    print(f"{name:<20} {args.n:>9} {args.q:>7} {args.d:>5} {k!s:>5} "
          f"{seconds:>9.3f} {seconds / matmul_s:>7.2f}")


if __name__ == "__main__":
  main()
