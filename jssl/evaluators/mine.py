"""Mutual information neural estimation (MINE; Belghazi et al., 2018), used by paper 004 for
I(X; Z) between the input X and a representation Z (its Figure 3, middle: 5 seeds averaged).

The Donsker-Varadhan (DV) representation of the KL divergence gives, for any function T,

  I(X; Z) >= E_{P_XZ}[T(x, z)] - log E_{P_X x P_Z}[exp T(x, z')],

with equality for T = log dP_XZ / d(P_X x P_Z) + const. T is a small MLP on the
concatenation [x, z] (two hidden ELU layers), trained with Adam by stochastic ascent on
the bound: joint pairs are (x_i, z_i) of a minibatch, product-of-marginals pairs
(x_i, z_j) with j drawn independently.

Bias-corrected gradients (Belghazi et al., section 3.2): the minibatch gradient of
log E[e^T] is E_B[grad T e^T] / E_B[e^T], biased because the denominator is a batch
estimate. MINE replaces it with an exponential moving average m of E_B[e^T] (rate
`ema_rate`, 0.01 as in the paper's code), i.e. ascends E_B[T_joint] - E_B[e^T_marg] / sg(m),
whose gradient is E_B[grad T] - E_B[grad T e^T] / m. m is kept in log space so large
T does not overflow.

After training, the bound is evaluated on all N pairs: mean_i T(x_i, z_i) -
log mean_i exp T(x_i, z_pi(i)), averaged over `eval_permutations` random permutations
pi. Every seed trains its own T from its own initialisation and minibatch order; the
seeds run together (`jax.vmap`) in one compiled program. Values are in nats.

Inputs (`prepare`): each side is flattened to [N, D], optionally projected on its top
`pca_dim` principal components (for images: 784 pixels -> e.g. 64 components; MI is
then that of the projection, at most the MI of the full input), and standardised per
dimension (MI is unchanged by invertible per-dimension affine maps; the network trains
better on unit-scale inputs). For a deterministic encoder Z = f(X) the true I(X; Z) of
continuous variables is infinite; what MINE reports is the information a fixed-capacity
critic can extract from N samples, comparable across checkpoints measured alike, as in
the paper.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def prepare(a: np.ndarray, pca_dim: int = 0) -> np.ndarray:
  """[N, ...] -> float32 [N, D']: flattened, optionally PCA-projected to pca_dim components, standardised."""
  a = np.asarray(a, np.float64).reshape(len(a), -1)
  a = a - a.mean(axis=0)
  if 0 < pca_dim < a.shape[1]:
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    a = a @ vt[:pca_dim].T
  std = a.std(axis=0)
  return (a / np.where(std > 0, std, 1.0)).astype(np.float32)


def _init(key, in_dim: int, hidden: int) -> list:
  sizes = [in_dim, hidden, hidden, 1]
  keys = jax.random.split(key, len(sizes) - 1)
  return [{"w": jax.random.normal(k, (i, o)) * jnp.sqrt(1.0 / i), "b": jnp.zeros(o)}
          for k, i, o in zip(keys, sizes[:-1], sizes[1:])]


def statistic(params: list, x: jax.Array, z: jax.Array) -> jax.Array:
  """T(x, z): [B, Dx], [B, Dz] -> [B]."""
  h = jnp.concatenate([x, z], axis=-1)
  for layer in params[:-1]:
    h = jax.nn.elu(h @ layer["w"] + layer["b"])
  return (h @ params[-1]["w"] + params[-1]["b"])[:, 0]


def dv_bound(params, x, z, z_marginal) -> jax.Array:
  """E[T(x, z)] - log E[exp T(x, z')] over the rows given."""
  t_joint, t_marg = statistic(params, x, z), statistic(params, x, z_marginal)
  return jnp.mean(t_joint) - (jax.nn.logsumexp(t_marg) - jnp.log(t_marg.shape[0]))


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "hidden", "lr", "ema_rate", "eval_permutations"))
def _train(keys, x, z, *, steps, batch_size, hidden, lr, ema_rate, eval_permutations):
  """Trains one critic per key; returns (final bounds [S], training-time bounds [S, steps])."""
  n = x.shape[0]
  opt = optax.adam(lr)

  def one_seed(key):
    init_key, key = jax.random.split(key)
    params = _init(init_key, x.shape[1] + z.shape[1], hidden)

    def step(carry, key):
      params, opt_state, log_ma, t = carry
      k_joint, k_marg = jax.random.split(key)
      i = jax.random.randint(k_joint, (batch_size,), 0, n)
      j = jax.random.randint(k_marg, (batch_size,), 0, n)
      xb, zb, zm = x[i], z[i], z[j]
      t_marg = statistic(params, xb, zm)
      log_mean = jax.nn.logsumexp(t_marg) - jnp.log(batch_size)
      log_ma = jnp.where(t == 0, log_mean,
                         jnp.logaddexp(jnp.log1p(-ema_rate) + log_ma, jnp.log(ema_rate) + log_mean))
      log_ma = jax.lax.stop_gradient(log_ma)

      def surrogate(p):   # its gradient is the bias-corrected gradient of the DV bound
        return -(jnp.mean(statistic(p, xb, zb)) - jnp.mean(jnp.exp(statistic(p, xb, zm) - log_ma)))

      grads = jax.grad(surrogate)(params)
      updates, opt_state = opt.update(grads, opt_state, params)
      bound = dv_bound(params, xb, zb, zm)
      return (optax.apply_updates(params, updates), opt_state, log_ma, t + 1), bound

    carry = (params, opt.init(params), jnp.zeros(()), jnp.zeros((), jnp.int32))
    train_key, eval_key = jax.random.split(key)
    (params, *_), history = jax.lax.scan(step, carry, jax.random.split(train_key, steps))
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(eval_key, eval_permutations))
    final = jnp.mean(jax.vmap(lambda p: dv_bound(params, x, z, z[p]))(perms))
    return final, history

  return jax.vmap(one_seed)(keys)


def estimate(x, z, *, seeds: int = 5, steps: int = 2000, batch_size: int = 256, hidden: int = 128,
             lr: float = 1e-3, ema_rate: float = 0.01, eval_permutations: int = 10, pca_dim: int = 0,
             seed: int = 0) -> dict:
  """MINE's estimate of I(X; Z) in nats, averaged over `seeds` critics.

  Args:
    x: [N, ...] inputs (images are flattened); z: [N, ...] representations of the same examples.
    pca_dim: > 0 projects each side on that many principal components first (see `prepare`).

  Returns:
    {"mi": mean over seeds, "mi_std": their standard deviation, "per_seed": [seeds],
     "history": [seeds, steps] minibatch DV bounds during training}.
  """
  if len(x) != len(z) or len(x) < 2:
    raise ValueError(f"MINE needs x and z with the same number (>= 2) of rows; got {len(x)} and {len(z)}.")
  if seeds < 1 or steps < 1:
    raise ValueError(f"MINE needs seeds >= 1 and steps >= 1; got seeds={seeds}, steps={steps}.")
  xs, zs = jnp.asarray(prepare(x, pca_dim)), jnp.asarray(prepare(z, pca_dim))
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
  final, history = _train(keys, xs, zs, steps=steps, batch_size=min(batch_size, len(xs)), hidden=hidden,
                          lr=lr, ema_rate=ema_rate, eval_permutations=eval_permutations)
  final = np.asarray(final, np.float64)
  return {"mi": float(final.mean()), "mi_std": float(final.std()), "per_seed": final.tolist(),
          "history": np.asarray(history)}
