"""What MFU needs: the peak FLOP/s of a device and XLA's FLOP count of a compiled step.

MFU (model FLOPs utilisation) = FLOPs per step / step time / (peak FLOP/s per device x
devices). The peaks below are the dense (no sparsity) bf16 tensor-core / MXU figures of
the vendors' datasheets, per JAX device: one GPU, one TPU chip. They are matched on
`jax.devices()[0].device_kind`, e.g. "NVIDIA H100 80GB HBM3", "TPU v5 lite".

CPUs have no entry: their peak depends on the core count, the vector units, the clock and
whatever else runs on the machine. `measure_matmul_peak` times a dense matmul on the
device instead; jssl.benchmark takes it with `--peak_flops=measure` (or a number with
`--peak_flops=1.5e12`), and an MFU computed that way is relative to that assumed peak,
not to a datasheet.

The FLOPs come from XLA's cost analysis of the compiled step. For a program partitioned
over several devices it counts one device's program, so the step's total is that times
the number of devices. It counts everything the step executes (augmentation, loss,
backward pass, optimizer, EMA update, any recomputation), not only the model's forward
and backward matmuls.
"""
import re
import time

# (pattern on device_kind, case-insensitive; name; dense bf16 FLOP/s per device)
PEAKS = (
    (r"\bA100\b", "A100", 312e12),                      # SXM and PCIe alike
    (r"\bH100\b.*(HBM3|SXM)", "H100 SXM", 989e12),      # "NVIDIA H100 80GB HBM3"; not PCIe or NVL
    (r"\bH200\b(?!.*NVL)", "H200", 989e12),              # "NVIDIA H200" (SXM); not NVL
    (r"^TPU v4$", "TPU v4", 275e12),                     # not "TPU v4 lite" (v4i)
    (r"^TPU v5( lite|e)$", "TPU v5e", 197e12),
    (r"^TPU v5p?$", "TPU v5p", 459e12),
    (r"^TPU v6( lite|e)$", "TPU v6e", 918e12),
)


def peak_flops(device_kind: str) -> tuple[float, str] | None:
  """(dense bf16 peak FLOP/s of one device, the name it matched), or None if unknown."""
  kind = device_kind.strip()
  for pattern, name, peak in PEAKS:
    if re.search(pattern, kind, flags=re.IGNORECASE):
      return peak, name
  return None


def compiled_flops(compiled) -> float | None:
  """FLOPs of one execution of a compiled function on one device, from XLA's cost
  analysis; None when the backend gives none.

  `compiled.cost_analysis()` has returned a dict, a list holding that dict, or None,
  depending on the JAX version and backend.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # backends without a cost model raise various errors
    return None
  if isinstance(analysis, (list, tuple)):   # older JAX: [dict] for the one program
    analysis = next((a for a in analysis if isinstance(a, dict)), None)
  flops = analysis.get("flops") if isinstance(analysis, dict) else None
  if flops is None or not float(flops) > 0:
    return None
  return float(flops)


def measure_matmul_peak(device=None, *, size: int | None = None, repeats: int = 5) -> float:
  """FLOP/s of the fastest of `repeats` dense square matmuls on `device` (default: the
  first device): float32 on a CPU, bfloat16 elsewhere. An assumed peak for devices the
  table does not know, not a datasheet figure."""
  import jax
  import jax.numpy as jnp
  device = device or jax.devices()[0]
  cpu = device.platform == "cpu"
  n = size or (1024 if cpu else 8192)
  dtype = jnp.float32 if cpu else jnp.bfloat16
  a = jax.device_put(jnp.ones((n, n), dtype), device)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()   # compile
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 / best
