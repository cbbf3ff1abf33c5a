"""The configuration of `python -m jssl.evaluate`; recipes in configs/eval/ start from `base`."""
import ml_collections
from ml_collections import config_dict

from jssl.evaluators import linear

EVALS = ("knn", "linear", "ensemble", "plots", "analysis", "robustness", "treenet")


def base(arg: str | None = None, *, evals: str) -> ml_collections.ConfigDict:
  """Defaults; `arg` (the `:arg` of --config=...py:arg) is a comma-separated list of run directories."""
  c = ml_collections.ConfigDict()
  c.checkpoints = arg or ""     # comma-separated --workdir's of jssl.main runs
  c.step = -1                   # -1: each run's newest checkpoint
  c.network = "student"         # student | teacher | pixels (the preprocessed images: the no-learning
                                # baseline); comma-separated to give one per checkpoint
  c.layer = "pre_logits"        # an intermediate, "a+b", or "last_blocks:N"; comma-separated per checkpoint
  c.evals = evals               # comma-separated subset of knn,linear,ensemble,plots,analysis,robustness,
                                # treenet
  c.batch_size = 512            # feature-extraction batch (split over the devices)
  c.cache_dir = ""              # "": <checkpoint>/eval_features
  c.seed = 0

  # The dataset: empty fields keep the checkpoint's own data config.
  c.data = ml_collections.ConfigDict()
  c.data.source = config_dict.placeholder(str)
  c.data.name = config_dict.placeholder(str)
  c.data.data_dir = config_dict.placeholder(str)
  c.data.train_split = config_dict.placeholder(str)   # None: the checkpoint's data.train_split
  c.data.test_split = config_dict.placeholder(str)    # None: the checkpoint's data.eval_split
  c.data.max_train_examples = -1                      # -1: the whole split
  c.data.max_test_examples = -1

  c.knn = ml_collections.ConfigDict()
  c.knn.ks = (10, 20, 100, 200)
  c.knn.temperature = 0.07      # DINO's weighted cosine vote
  c.knn.lightly = True          # also InstDisc/Lightly: k = 200, T = 0.1
  c.knn.euclidean = False       # also the unweighted Euclidean majority vote (same ks)

  c.linear = ml_collections.ConfigDict(dict(linear.default_config()))
  c.linear.layers = ""          # comma-separated candidate layers, chosen on validation; "": c.layer

  c.ensemble = ml_collections.ConfigDict()
  c.ensemble.epochs = 50
  c.ensemble.batch_size = 256
  c.ensemble.lr = 3e-4
  c.ensemble.warmup_fraction = 0.5
  c.ensemble.k = 20
  c.ensemble.temperature = 0.07
  c.ensemble.output_activation = "auto"   # MLP output: auto (relu for non-negative features, else
                                          # identity) | relu | identity; comma-separated per member
  c.ensemble.members_alone = True    # also report each member alone as a baseline
  c.ensemble.transfer_source = ""    # data source to train the MLPs on (e.g. fashion_mnist); "": none
  c.ensemble.transfer_name = ""      # its TFDS name, for transfer_source=tfds
  c.ensemble.transfer_max_examples = -1

  c.plots = ml_collections.ConfigDict()
  c.plots.method = "tsne"       # tsne | umap (needs umap-learn)
  c.plots.split = "test"
  c.plots.max_points = 2000

  c.analysis = ml_collections.ConfigDict()   # clustering metrics (jssl/evaluators/analysis_eval.py)
  c.analysis.labels = "classes"   # comma-separated label sets: classes, superclasses (Fashion-MNIST),
                                  # samples (sample level, c.analysis.samples),
                                  # predicted:RUN@STEP or predicted:RUN@all (a supervised run's predictions)
  c.analysis.layers = ""          # comma-separated layers, each analysed; "": c.layer
  c.analysis.linear = False       # also the linear probe (c.linear's protocol) and NCC / linear
  c.analysis.block_size = 4096    # rows per blockwise step
  c.analysis.mine = False         # also I(input; layer) by MINE (jssl/evaluators/mine.py), in nats
  c.analysis.mine_examples = 2000   # the first N train images (-1: all)
  c.analysis.mine_seeds = 5         # critics averaged, as paper 004
  c.analysis.mine_steps = 2000
  c.analysis.mine_hidden = 128      # the critic's two hidden layers
  c.analysis.mine_pca_dim = 64      # > 0: each side projected on its top principal components first
  c.analysis.samples = ml_collections.ConfigDict()   # label set "samples" (jssl/evaluators/sample_level.py)
  c.analysis.samples.images = 500     # train images (a seeded permutation of the analysed train split),
                                      # each its own class
  c.analysis.samples.train_augs = 100   # augmented views of each image: the train set
  c.analysis.samples.test_augs = 20     # other augmented views of each image: the test set
  c.analysis.samples.seed = 0         # draws the images and every view's augmentation

  c.robustness = ml_collections.ConfigDict()   # paper 003's Tables 3-4 (jssl/evaluators/robustness.py)
  c.robustness.corruptions = ("gaussian_noise,shot_noise,impulse_noise,defocus_blur,glass_blur,motion_blur,"
                              "zoom_blur")   # ImageNet-C, jssl/data/corruptions.py
  c.robustness.severities = "1,2,3,4,5"
  c.robustness.length_scale = 0.0     # blur lengths x this; 0: automatic (image side / 224, >= 1 px)
  c.robustness.mask_drops = "0.5,0.6,0.7,0.8,0.9"   # fractions of "local" dropped before pooling
  c.robustness.mask_draws = 5         # random draws averaged per fraction
  c.robustness.attacks = ("0.003:40:1,0.01:40:1,0.03:40:1,0.1:40:1,0.003:40:5,0.01:40:5,0.003:10:1,"
                          "0.01:10:1")  # PGD eps:divisor:iterations (step eps/divisor), Table 4's
  c.robustness.random_start = True    # PGD starts uniformly in the eps ball (Foolbox's default)
  c.robustness.max_examples = -1      # test images attacked and corrupted; -1: all the test features'

  c.treenet = ml_collections.ConfigDict()   # paper 000's per-leaf evaluation (jssl/evaluators/treenet_eval.py)
  c.treenet.layers = "leaves"         # comma-separated per-leaf layers: leaves (outputs z_j), leaf_hidden, leaf_pooled
  c.treenet.protocols = "knn"         # comma-separated: knn (cosine, k = knn_k, T = c.knn.temperature), linear
                                      # (c.linear's probe); both validate on c.linear's val_fraction/seed split
  c.treenet.knn_k = 20
  c.treenet.subset_sizes = "1,2,4,8,all"   # concatenations of the s best leaves (by validation); all = every leaf
  c.treenet.saliency_images = 8       # first test images in the saliency PNG; 0: no PNG
  c.treenet.saliency_leaves = "best"  # leaves drawn as R, G, B: "best" (top 3 on validation) or e.g. "0,5,9"
  c.treenet.saliency_layer = "leaves"   # gradient of ||z_j|| of this per-leaf layer w.r.t. the pixels
  return c
