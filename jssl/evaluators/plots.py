"""2-D embeddings of features coloured by label, written as PNG (t-SNE; UMAP when installed)."""
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def embed_2d(feats: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
  """[N, D] -> [N, 2] with t-SNE (cosine metric, on L2-normalised rows) or UMAP."""
  x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
  if method == "umap":
    try:
      import umap
    except ImportError as e:
      raise ValueError("plots method 'umap' needs the umap-learn package; use 'tsne' or pip install umap-learn.") from e
    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x)
  if method != "tsne":
    raise ValueError(f"plots method must be 'tsne' or 'umap', got {method!r}.")
  from sklearn.manifold import TSNE
  perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
  return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
              random_state=seed).fit_transform(x)


def scatter_png(feats: np.ndarray, labels: np.ndarray, path: str, *, title: str, method: str = "tsne",
                max_points: int = 2000, seed: int = 0) -> str:
  """Embeds (a seeded subset of at most max_points of) feats [N, D] and saves a scatter plot."""
  rng = np.random.default_rng(seed)
  keep = np.sort(rng.permutation(len(feats))[:max_points])
  xy = embed_2d(feats[keep], method, seed)
  fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
  points = ax.scatter(xy[:, 0], xy[:, 1], c=labels[keep], cmap="tab10", s=4)
  ax.legend(*points.legend_elements(), loc="best", fontsize=7, title="label")
  ax.set_title(title, fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return path
