"""CO-BYOL, ResNet-50, ImageNet-100, 400 epochs (paper 003's ImageNet-100 setting).

  python -m jssl.main --config=configs/co_byol_resnet50_in100.py --workdir=gs://bucket/co_byol_r50_in100

Needs ImageNet-100 (the 100-class ImageNet subset of CMC, Tian et al. 2020, as in
solo-learn) prepared as a TFDS ArrayRecord dataset named `imagenet100` with
"train" and "validation" splits in --config.data.data_dir. The paper follows
solo-learn's ImageNet-100 BYOL recipe: batch 256, LARS lr 0.5 (x batch/256),
weight decay 1e-6, 10 warm-up epochs then cosine, EMA 0.99 -> 1, projector 4096 ->
256, predictor hidden 8192, 400 epochs; BYOL's asymmetric augmentations with
crops of 20-100% (the paper's c_min for CO-SSL); local heads 4096 -> 256, w_s = 0.5,
all 7 x 7 positions. Differences: LARS uses optax's trust coefficient 0.001
(solo-learn: 0.02). The paper's CO-BYOL default backbone is RF99-ResNet50 (88.0%
with w_s = 0.5, Table 5); with a ResNet-50 this recipe is its "CO-BYOL (R50)"
ablation. Paper's linear top-1 for reference: BYOL 83.5, BYOL-mc 84.7, CO-BYOL 87.6
(Table 2). The BYOL baseline on the same recipe: `--config.co_byol.w_s=0`.
The paper also tuned the initial lr in {0.2, 0.4, 0.8, 1.6}
(chosen values not reported). The paper's CO-SSL backbone: `--config.model.name=rf_resnet
--config.model.variant=rf99_resnet50` (jssl.models.rf_resnet). Not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("co_byol", data_source="tfds", data_name="imagenet100", aug_recipe="byol", global_size=224,
               channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.data.num_classes = 100
  c.aug.global_scale = (0.2, 1.0)
  c.model.variant = "resnet50"
  c.model.small_stem = False
  c.model.dtype = "bfloat16"
  c.byol.proj_hidden = 4096
  c.byol.proj_dim = 256
  c.byol.pred_hidden = 8192
  c.co_byol.local_proj_hidden = 4096
  c.co_byol.local_pred_hidden = 4096
  c.co_byol.w_s = 0.5
  c.co_byol.local_grid = 0
  c.batch_size = 256
  c.num_epochs = 400
  c.optim.name = "lars"
  c.optim.lr = 0.5
  c.optim.warmup_epochs = 10
  c.optim.weight_decay = 1e-6
  c.ema.base = 0.99
  c.eval.every_steps = 20 * 494
  c.checkpoint_every_steps = 2000
  return c
