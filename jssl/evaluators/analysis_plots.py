"""Plots of the clustering metrics a run tracked during training (paper 004, Figures 2-5).

  python -m jssl.evaluators.analysis_plots --workdir=runs/vicreg_res_lh [--out=DIR]

Reads the `analysis/<layer>/<labels>/<metric>` columns of workdir/metrics.jsonl (written
by jssl/evaluators/analysis_monitor.py) and writes PNGs to --out (default
workdir/analysis_plots):

  epochs_<labels>.png         NCC train, NCC test, CDNV (log scale) and the class
                              variance / class distance against the epoch, one line per
                              layer (Figures 2, 3 right)
  layers_<labels>.png         NCC test and CDNV against the layer, one line per evaluated
                              epoch, light to dark (Figure 5 left, middle)
  layers_final.png            NCC test, CDNV, class variance and class distance against the
                              layer at the last epoch, one line per label set (Figure 5)
  ratio_<other>_<first>.png   each metric under another label set over the first one
                              (semantic classes), against the epoch, one line per layer
                              (Figure 5 right); with random targets also
                              ratio_<first>_<most random>.png, semantic over the most random
                              set whose most frequent label covers at most half the images
                              (Figure 4 right)
  normalized.png              NCC train and NCC test of the last layer divided by their value
                              at step 0, against the epoch, one line per label set (Figure 2)
  random_targets.png          with random targets (predicted@STEP sets): NCC test and CDNV
                              against the targets' agreement with the true classes on the test
                              subset (the paper's randomness, 1 - STEP / last step, crowds most
                              checkpoints near 1), at the last layer one line per evaluated
                              epoch, and at the last epoch one line per layer (Figure 4 left,
                              middle); dashed: the share of each set's most frequent label
  loss_terms.png              VICReg's unweighted invariance, variance and covariance terms
                              and the online linear probe's accuracy on the training batches,
                              against the epoch (Figure 3 left); only for runs that log them
The predicted@STEP sets get only random_targets.png and the semantic-over-random ratio, not a
figure of their own each.
  mine.png                    MINE's I(input; layer) in nats against the epoch, one line per
                              layer, the band +- one standard deviation over the critics'
                              seeds (Figure 3 middle); only for runs with analysis.mine
"""
import collections
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jssl.writers import read_rows  # noqa: E402

TITLES = {"ncc_train": "NCC train accuracy", "ncc_test": "NCC test accuracy", "cdnv": "CDNV (log scale)",
          "class_variance": "Average class variance", "class_distance": "Average squared class-mean distance",
          "var_over_dist": "Class variance / class distance"}


def _analysis_rows(workdir: str) -> list[dict]:
  """The analysis rows of workdir/metrics.jsonl in step order; a step logged twice keeps its last row."""
  by_step = {row["step"]: row for row in read_rows(workdir) if "analysis/epoch" in row}
  return [by_step[s] for s in sorted(by_step)]


def load(workdir: str) -> tuple[np.ndarray, dict]:
  """(epochs [T], {(layer, labels, metric): values [T]}) of the analysis rows, in step order.

  A step logged twice (a finished run evaluated again) keeps its last row.
  """
  rows = _analysis_rows(workdir)
  if not rows:
    raise ValueError(f"{workdir}/metrics.jsonl has no analysis rows; train with --config.analysis.every_epochs=1.")
  series = collections.OrderedDict()
  for key in rows[-1]:
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "analysis":
      series[tuple(parts[1:])] = np.array([r.get(key, np.nan) for r in rows], np.float64)
  return np.array([r["analysis/epoch"] for r in rows]), series


def load_mine(workdir: str) -> tuple[np.ndarray, dict]:
  """(epochs [T], {layer: (mean [T], std [T])}) of the MINE columns; empty when the run has none."""
  rows = _analysis_rows(workdir)
  layers = [k.split("/")[1] for k in (rows[-1] if rows else {}) if k.startswith("analysis/") and k.endswith("/mine_ixz")]
  series = {layer: tuple(np.array([r.get(f"analysis/{layer}/{m}", np.nan) for r in rows], np.float64)
                         for m in ("mine_ixz", "mine_ixz_std")) for layer in layers}
  return np.array([r["analysis/epoch"] for r in rows]), series


def plot_mine(epochs, series: dict, path: str) -> str:
  fig, axes = _panels(1)
  ax = axes[0]
  for (layer, (mean, std)), color in zip(series.items(), plt.cm.viridis(np.linspace(0.0, 0.9, len(series)))):
    ax.plot(epochs, mean, marker="o", markersize=3, color=color, label=layer)
    ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
  ax.set_ylabel("nats", fontsize=11)
  _style(ax, "mine_ixz", "epoch")
  ax.set_title("I(input; layer), MINE", fontsize=12)
  return _finish(fig, axes, "Mutual information over training", path, "layer")


def _names(series: dict, i: int) -> list[str]:
  return list(dict.fromkeys(k[i] for k in series))


def _finish(fig, axes, title: str, path: str, legend_title: str) -> str:
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, title=legend_title, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=10,
             title_fontsize=11, frameon=False)
  fig.suptitle(title, fontsize=14)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def _panels(n: int):
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
  return fig, list(axes[0])


def _with_ratio(series: dict) -> dict:
  """Adds class variance / class distance (CDNV's two factors side by side) per layer and label set."""
  out = dict(series)
  for layer in _names(series, 0):
    for labels in _names(series, 1):
      v, d = series.get((layer, labels, "class_variance")), series.get((layer, labels, "class_distance"))
      if v is not None and d is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
          out[layer, labels, "var_over_dist"] = v / d
  return out


def _style(ax, metric: str, xlabel: str) -> None:
  ax.set_title(TITLES.get(metric, metric), fontsize=12)
  ax.set_xlabel(xlabel, fontsize=11)
  if metric == "cdnv":
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))   # labels at 1, 2, 5 x 10^k
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):   # 2.5, not 2.5 x 10^0
      axis(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.grid(alpha=0.3)
  ax.tick_params(labelsize=10)


def plot_epochs(epochs, series, labels: str, path: str) -> str:
  metrics = ("ncc_train", "ncc_test", "cdnv", "var_over_dist")
  layers = _names(series, 0)
  colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(layers)))
  fig, axes = _panels(len(metrics))
  for ax, metric in zip(axes, metrics):
    for layer, color in zip(layers, colors):
      if (layer, labels, metric) in series:
        ax.plot(epochs, series[layer, labels, metric], marker="o", markersize=3, color=color, label=layer)
    _style(ax, metric, "epoch")
  return _finish(fig, axes, f"Clustering over training ({labels})", path, "layer")


def plot_layers(epochs, series, labels: str, path: str) -> str:
  metrics = ("ncc_test", "cdnv")
  layers = _names(series, 0)
  colors = plt.cm.viridis_r(np.linspace(0.1, 1.0, len(epochs)))   # light = early, dark = late
  fig, axes = _panels(len(metrics))
  for ax, metric in zip(axes, metrics):
    for t, (epoch, color) in enumerate(zip(epochs, colors)):
      values = [series.get((layer, labels, metric), np.full(len(epochs), np.nan))[t] for layer in layers]
      ax.plot(range(len(layers)), values, marker="o", markersize=3, color=color, label=f"{epoch:g}")
    _style(ax, metric, "layer")
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
  return _finish(fig, axes, f"Clustering across layers ({labels})", path, "epoch")


def plot_layers_final(epochs, series, path: str) -> str:
  metrics = ("ncc_test", "cdnv", "class_variance", "class_distance")
  layers, sets = _names(series, 0), _names(series, 1)
  fig, axes = _panels(len(metrics))
  for ax, metric in zip(axes, metrics):
    for labels in sets:
      values = [series.get((layer, labels, metric), [np.nan])[-1] for layer in layers]
      ax.plot(range(len(layers)), values, marker="o", markersize=4, label=labels)
    _style(ax, metric, "layer")
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
  return _finish(fig, axes, f"Clustering across layers at epoch {epochs[-1]:g}", path, "label set")


def plot_ratio(epochs, series, other: str, base: str, path: str) -> str:
  metrics = ("ncc_test", "cdnv", "class_variance", "class_distance")
  layers = _names(series, 0)
  colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(layers)))
  fig, axes = _panels(len(metrics))
  for ax, metric in zip(axes, metrics):
    for layer, color in zip(layers, colors):
      a, b = series.get((layer, other, metric)), series.get((layer, base, metric))
      if a is not None and b is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
          ax.plot(epochs, a / b, marker="o", markersize=3, color=color, label=layer)
    _style(ax, metric, "epoch")
    ax.set_title(f"{TITLES[metric].replace(' (log scale)', '')}\n{other} / {base}", fontsize=11)
    ax.set_yscale("linear")
  return _finish(fig, axes, f"Label set {other} relative to {base}", path, "layer")


def load_targets(workdir: str, field: str = "randomness") -> dict:
  """{predicted@STEP: field} of the random-target label sets a run analysed (empty without them).

  field: randomness | agreement_train | agreement_test.
  """
  rows = _analysis_rows(workdir)
  prefix, suffix = "analysis_targets/", f"/{field}"
  return {k[len(prefix):-len(suffix)]: v for k, v in (rows[-1].items() if rows else ())
          if k.startswith(prefix) and k.endswith(suffix)}


def plot_normalized(epochs, series, sets: list[str], path: str) -> str:
  metrics = ("ncc_train", "ncc_test")
  layer = _names(series, 0)[-1]
  fig, axes = _panels(len(metrics))
  for ax, metric in zip(axes, metrics):
    for labels in sets:
      values = series.get((layer, labels, metric))
      if values is not None:
        ax.plot(epochs, values / values[0], marker="o", markersize=3, label=labels)
    _style(ax, metric, "epoch")
    ax.set_title(f"{TITLES[metric]} / its value at step 0", fontsize=11)
  return _finish(fig, axes, f"Clustering relative to initialisation ({layer})", path, "label set")


def plot_random_targets(epochs, series, agreement: dict, majority: dict, path: str) -> str:
  keys = sorted(agreement, key=agreement.get)
  x = [agreement[k] for k in keys]
  layers = _names(series, 0)
  fig, axes = _panels(4)
  shown = np.unique(np.linspace(0, len(epochs) - 1, min(len(epochs), 6)).round().astype(int))   # <= 6 epochs
  colors = plt.cm.viridis_r(np.linspace(0.1, 1.0, len(shown)))   # light = early, dark = late
  for ax, metric in zip(axes[:2], ("ncc_test", "cdnv")):
    for t, color in zip(shown, colors):
      ax.plot(x, [series[layers[-1], k, metric][t] for k in keys], marker="o", markersize=3, color=color,
              label=f"epoch {epochs[t]:g}")
    _style(ax, metric, "targets' agreement with the classes")
    ax.set_title(f"{TITLES[metric]}\n{layers[-1]}, per epoch", fontsize=11)
  layer_colors = plt.cm.plasma(np.linspace(0.0, 0.85, len(layers)))
  for ax, metric in zip(axes[2:], ("ncc_test", "cdnv")):
    for layer, color in zip(layers, layer_colors):
      ax.plot(x, [series[layer, k, metric][-1] for k in keys], marker="o", markersize=3, color=color, label=layer)
    _style(ax, metric, "targets' agreement with the classes")
    ax.set_title(f"{TITLES[metric]}\nepoch {epochs[-1]:g}, per layer", fontsize=11)
  if set(keys) <= set(majority):
    for ax in (axes[0], axes[2]):
      ax.plot(x, [majority[k] for k in keys], color="0.5", linestyle="--", label="most frequent label's share")
  for ax in axes:
    ax.legend(fontsize=7)
  fig.suptitle("Random targets: a classifier's predictions from its initialisation (left of each panel) to "
               "the end of its training (right)", fontsize=13)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


LOSS_TERMS = (("invariance", "Invariance (unweighted)"), ("variance", "Variance hinge (unweighted)"),
              ("covariance", "Covariance (unweighted)"), ("probe_acc", "Online probe accuracy (train batches)"))


def plot_loss_terms(workdir: str, path: str) -> str | None:
  """VICReg's loss terms and the online probe against the epoch; None when the run logs no such terms."""
  rows = [r for r in read_rows(workdir) if "invariance" in r and "epoch" in r]
  if not rows:
    return None
  epochs = np.array([r["epoch"] for r in rows])
  fig, axes = _panels(len(LOSS_TERMS))
  for ax, (key, title) in zip(axes, LOSS_TERMS):
    ax.plot(epochs, [r.get(key, np.nan) for r in rows], color="C0", linewidth=1)
    _style(ax, key, "epoch")
    ax.set_title(title, fontsize=12)
  fig.suptitle("Loss terms over training", fontsize=14)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def plot_run(workdir: str, out: str | None = None) -> list[str]:
  """Writes every figure of the run in `workdir`; returns the PNG paths."""
  out = out or os.path.join(workdir, "analysis_plots")
  os.makedirs(out, exist_ok=True)
  epochs, series = load(workdir)
  series = _with_ratio(series)
  randomness = load_targets(workdir)
  sets = [labels for labels in _names(series, 1) if labels not in randomness]
  paths = []
  for labels in sets:
    paths.append(plot_epochs(epochs, series, labels, os.path.join(out, f"epochs_{labels}.png")))
    paths.append(plot_layers(epochs, series, labels, os.path.join(out, f"layers_{labels}.png")))
  final = {k: v for k, v in series.items() if k[1] not in randomness}
  paths.append(plot_layers_final(epochs, final, os.path.join(out, "layers_final.png")))
  for other in sets[1:]:
    paths.append(plot_ratio(epochs, series, other, sets[0], os.path.join(out, f"ratio_{other}_{sets[0]}.png")))
  if randomness and sets:
    # the most random set that is not degenerate (one label for most images), when the run recorded shares
    majority = load_targets(workdir, "majority_test")
    usable = [k for k in randomness if majority.get(k, 0.0) <= 0.5] or list(randomness)
    most_random = max(usable, key=randomness.get)
    paths.append(plot_ratio(epochs, series, sets[0], most_random,
                            os.path.join(out, f"ratio_{sets[0]}_{most_random}.png")))
  if randomness:
    paths.append(plot_random_targets(epochs, series, load_targets(workdir, "agreement_test"),
                                     load_targets(workdir, "majority_test"), os.path.join(out, "random_targets.png")))
  if len(epochs) > 1:
    paths.append(plot_normalized(epochs, series, sets, os.path.join(out, "normalized.png")))
  terms = plot_loss_terms(workdir, os.path.join(out, "loss_terms.png"))
  if terms:
    paths.append(terms)
  mine_epochs, mine_series = load_mine(workdir)
  if mine_series:
    paths.append(plot_mine(mine_epochs, mine_series, os.path.join(out, "mine.png")))
  return paths


def main(argv):
  del argv
  for path in plot_run(flags.FLAGS.workdir, flags.FLAGS.out):
    print(path)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "Run directory holding metrics.jsonl.", required=True)
  flags.DEFINE_string("out", None, "Where the PNGs go (default: <workdir>/analysis_plots).")
  app.run(main)
