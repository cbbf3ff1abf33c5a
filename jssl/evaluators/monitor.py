"""The k-NN monitor run during training: DINO's protocol on the held-out split."""
import numpy as np

from jssl.data import sources
from jssl.evaluators import feature_cache, features, knn


class KnnMonitor:
  """k-NN accuracy (cosine, exp(sim / T) vote) of the encoder's pooled output.

  The bank is the train split (or its first eval.train_examples images), the
  queries the held-out split named by data.eval_split.
  """

  def __init__(self, config, setup, mesh):
    e = config.eval
    self.config, self.setup, self.mesh = config, setup, mesh
    limit = lambda n: None if n < 0 else n
    self.train_x, self.train_y = sources.load_arrays(config.data, config.data.train_split, limit(e.train_examples))
    self.test_x, self.test_y = sources.load_arrays(config.data, config.data.eval_split, limit(e.test_examples))
    self.num_classes = setup.num_classes
    self._fn = features.make_feature_fn(setup.encoder_def, config.aug, layer="output")

  def features(self, state, images: np.ndarray, desc: str | None = None) -> np.ndarray:
    params, stats = self.setup.encoder_params(state, self.config.eval.network)
    return features.extract(self._fn, params, stats, images, batch_size=self.config.eval.batch_size,
                            mesh=self.mesh, desc=desc)

  def pixels(self) -> dict[str, float]:
    """The same k-NN on the raw images (after the evaluation preprocessing): the no-learning baseline."""
    fn = feature_cache.make_pixels_fn(self.config.aug)
    feats = [features.extract(fn, {}, {}, x, batch_size=self.config.eval.batch_size, mesh=self.mesh,
                              desc=f"k-NN pixels, {name}") for x, name in ((self.train_x, "bank"), (self.test_x, "queries"))]
    e = self.config.eval
    return knn.knn_accuracy(feats[0], self.train_y, feats[1], self.test_y, num_classes=self.num_classes,
                            ks=(e.knn_k,), temperature=e.knn_temperature, protocol="cosine", mesh=self.mesh)

  def run(self, state) -> dict[str, float]:
    train_f = self.features(state, self.train_x, f"k-NN features, bank of {len(self.train_x)}")
    test_f = self.features(state, self.test_x, f"k-NN features, {len(self.test_x)} queries")
    e = self.config.eval
    return knn.knn_accuracy(train_f, self.train_y, test_f, self.test_y, num_classes=self.num_classes,
                            ks=(e.knn_k,), temperature=e.knn_temperature, protocol="cosine", mesh=self.mesh)
