"""CO-MoCoV3, ResNet-50, ImageNet-100, 400 epochs (paper 003's ImageNet-100 setting, Table 8).

  python -m jssl.main --config=configs/co_mocov3_resnet50_in100.py --workdir=gs://bucket/co_mocov3_r50_in100

Needs ImageNet-100 prepared as a TFDS ArrayRecord dataset named `imagenet100`
(see configs/co_byol_resnet50_in100.py). The paper trains CO-MoCoV3 with "the same
hyperparameters as BYOL and CO-BYOL and a temperature of 0.2" (appendix A.1), so
this is configs/co_byol_resnet50_in100.py's recipe: batch 256, LARS lr 0.5 (x
batch/256), weight decay 1e-6, 10 warm-up epochs then cosine, momentum 0.99 -> 1,
BYOL's asymmetric augmentations with crops of 20-100% (c_min), 400 epochs, local heads
4096 -> 256, w_s = 0.5, all 7 x 7 positions; with MoCo v3's loss at tau = 0.2 and
MoCo v3's ResNet heads (jssl.methods.mocov3: a 2-layer projector 4096 -> 256 and a
predictor 4096 -> 256 without output BatchNorm). Our reading, as the paper does not
list them: the heads are MoCo v3's (hidden 4096, as solo-learn's ImageNet-100 MoCo v3
file), not BYOL's 8192-wide predictor. solo-learn's own ImageNet-100 MoCo v3 file
uses lr 0.3: `--config.optim.lr=0.3`. Differences: LARS uses optax's trust
coefficient 0.001 (solo-learn: 0.02); the paper's CO-SSL backbone is RF99-ResNet50.
Paper's linear top-1 for reference: MoCoV3 81.8, CO-MoCoV3 84.4 (Table 8; backbone
not stated there). The MoCo v3 baseline: `--config.co_mocov3.w_s=0`. The paper also
tuned the initial lr in {0.2, 0.4, 0.8, 1.6} (chosen values not reported). The
paper's CO-SSL backbone: `--config.model.name=rf_resnet
--config.model.variant=rf99_resnet50` (jssl.models.rf_resnet). Not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("co_mocov3", data_source="tfds", data_name="imagenet100", aug_recipe="byol", global_size=224,
               channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.data.num_classes = 100
  c.aug.global_scale = (0.2, 1.0)
  c.model.variant = "resnet50"
  c.model.small_stem = False
  c.model.dtype = "bfloat16"
  c.mocov3.proj_hidden = 4096
  c.mocov3.proj_dim = 256
  c.mocov3.proj_layers = 2
  c.mocov3.pred_hidden = 4096
  c.mocov3.pred_last_bn = False
  c.mocov3.temperature = 0.2
  c.co_mocov3.local_proj_hidden = 4096
  c.co_mocov3.local_pred_hidden = 4096
  c.co_mocov3.w_s = 0.5
  c.co_mocov3.local_grid = 0
  c.batch_size = 256
  c.num_epochs = 400
  # CO-BYOL's optimiser and momentum (the paper), replacing MoCo v3's own recipe.
  c.optim.update(name="lars", lr=0.5, min_lr=0.0, warmup_epochs=10.0, weight_decay=1e-6)
  c.ema.base = 0.99
  c.eval.every_steps = 20 * 494
  c.checkpoint_every_steps = 2000
  return c
