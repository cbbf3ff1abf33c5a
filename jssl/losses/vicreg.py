"""VICReg's three terms (Bardes et al., 2022, eqs. 1-6).

For embeddings Z, Z' of shape [n, d] (two views of the same n images):

  s(Z, Z') = invariance: squared distance between the paired embeddings;
  v(Z)     = 1/d sum_j max(0, gamma - sqrt(Var(z^j) + eps)), gamma = 1, eps = 1e-4;
  c(Z)     = 1/d sum_{i != j} C(Z)_ij^2, C(Z) the covariance matrix of Z.

Variance and covariance use the unbiased (n - 1) estimator, as the paper's
equations and `torch.var` / the official code do. The total follows the official
code's reductions (METHODS.md, section "Reduction conventions"): invariance is the
MSE (mean over n and d), the variance term is averaged over the two views and the
covariance term summed over them:

  L = lambda * mse(Z, Z') + mu * (v(Z) + v(Z')) / 2 + nu * (c(Z) + c(Z')).

`reduction="paper"` gives eq. 6 literally instead: s = 1/n sum_i ||z_i - z'_i||^2
(d times the MSE) and v(Z) + v(Z') summed.

Under jit with the batch sharded over devices the arrays are global, so the
statistics span the global batch, as the official code's all-gather does.
"""
import jax
import jax.numpy as jnp

REDUCTIONS = ("official", "paper")


def invariance(z1: jax.Array, z2: jax.Array) -> jax.Array:
  """Mean squared error over the n x d entries (the official code's F.mse_loss)."""
  return jnp.mean(jnp.square(z1.astype(jnp.float32) - z2.astype(jnp.float32)))


def variance(z: jax.Array, gamma: float = 1.0, eps: float = 1e-4) -> jax.Array:
  """v(Z): hinge on the standard deviation of each dimension, averaged over dimensions."""
  z = z.astype(jnp.float32)
  std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
  return jnp.mean(jax.nn.relu(gamma - std))


def covariance(z: jax.Array) -> jax.Array:
  """c(Z): sum of the squared off-diagonal covariances, divided by d."""
  z = z.astype(jnp.float32)
  n, d = z.shape
  zc = z - jnp.mean(z, axis=0)
  cov = (zc.T @ zc) / (n - 1)
  off_diagonal = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))
  return off_diagonal / d


def vicreg_loss(z1: jax.Array, z2: jax.Array, *, inv_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, gamma: float = 1.0, eps: float = 1e-4,
                reduction: str = "official") -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted VICReg loss and its unweighted terms.

  Args:
    z1, z2: [n, d] expander outputs of view 1 and view 2.
    inv_weight, var_weight, cov_weight: lambda, mu, nu.
    gamma, eps: the variance hinge target and the constant under the square root.
    reduction: "official" (the default, see the module docstring) or "paper".

  Returns:
    (loss, terms): scalar float32 loss; terms holds "invariance", "variance" and
    "covariance", each as it enters the loss before its weight.
  """
  if reduction not in REDUCTIONS:
    raise ValueError(f"vicreg reduction={reduction!r} must be one of {REDUCTIONS}.")
  inv = invariance(z1, z2)
  var = variance(z1, gamma, eps) + variance(z2, gamma, eps)
  if reduction == "official":
    var = var / 2
  else:
    inv = inv * z1.shape[-1]
  cov = covariance(z1) + covariance(z2)
  total = inv_weight * inv + var_weight * var + cov_weight * cov
  return total, {"invariance": inv, "variance": var, "covariance": cov}
