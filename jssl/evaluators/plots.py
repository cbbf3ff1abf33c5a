"""2-D embeddings of features coloured by label, written as PNG (t-SNE; UMAP when installed).

Legends name the classes of the datasets whose names are known (Fashion-MNIST,
CIFAR-10, MNIST); others show the class ids.
"""
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "mnist": tuple(str(i) for i in range(10)),
}


def class_names(data: dict | None) -> tuple[str, ...] | None:
  """The class names of a dataset given its data config ({"source", "name", ...}), or None."""
  data = data or {}
  key = data.get("name") if data.get("source") == "tfds" else data.get("source")
  return CLASS_NAMES.get(str(key).split(":")[0].split("/")[0])


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
                max_points: int = 2000, seed: int = 0, names: tuple[str, ...] | None = None) -> str:
  """Embeds (a seeded subset of at most max_points of) feats [N, D] and saves a scatter plot;
  `names[i]` labels class i in the legend."""
  rng = np.random.default_rng(seed)
  keep = np.sort(rng.permutation(len(feats))[:max_points])
  xy = embed_2d(feats[keep], method, seed)
  fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
  cmap = plt.get_cmap("tab10" if labels.max(initial=0) < 10 else "tab20")
  for c in np.unique(labels[keep]):
    at = labels[keep] == c
    name = names[c] if names is not None and 0 <= c < len(names) else str(c)
    ax.scatter(xy[at, 0], xy[at, 1], color=cmap(int(c) % cmap.N), s=4, label=name)
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, title="class", markerscale=3)
  ax.set_title(f"{title}\n{method} of {len(keep)} points", fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return path
