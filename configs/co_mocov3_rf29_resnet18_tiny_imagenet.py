"""CO-MoCoV3, RF29-ResNet18, Tiny-ImageNet (64 px), 400 epochs (paper 003's Table 8 Tiny-ImageNet row).

  python -m jssl.main --config=configs/co_mocov3_rf29_resnet18_tiny_imagenet.py --workdir=runs/co_mocov3_rf29_tin

Needs Tiny-ImageNet prepared as a TFDS ArrayRecord dataset named `tiny_imagenet` (see
configs/co_byol_rf29_resnet18_tiny_imagenet.py). The paper trains CO-MoCoV3 with "the
same hyperparameters as BYOL and CO-BYOL and a temperature of 0.2" (appendix A.1), so
this is configs/co_byol_rf29_resnet18_tiny_imagenet.py's recipe: batch 256 (ours; the
paper gives none), LARS lr 0.3 x batch/256, weight decay 1e-6, 10 warm-up epochs then
cosine, momentum 0.99 -> 1, BYOL's asymmetric augmentations (blur kept at 64 px) at
crops of 20-100%, 400 epochs, RF29-ResNet18 (a 16 x 16 local map at 64 px; Table 8
does not name the backbone, this is the paper's Tiny-ImageNet CO-SSL default), local
heads 4096 -> 256, w_s = 0.5, all 256 positions; with MoCo v3's loss at tau = 0.2 and
MoCo v3's ResNet heads (jssl.methods.mocov3: a 2-layer projector 4096 -> 256 and a
predictor 4096 -> 256 without output BatchNorm). LARS uses optax's trust coefficient
0.001. The paper also tuned the initial lr in {0.2, 0.4, 0.8, 1.6} (chosen values not
reported). Paper's linear top-1 for reference (Table 8, online probe on the validation
set): MoCoV3 51.78, CO-MoCoV3 56.02. The MoCo v3 baseline: `--config.co_mocov3.w_s=0
--config.model.name=resnet --config.model.variant=resnet18` (its small-image stem is
already set). Not measured yet.
"""
from jssl import config as cfg


def get_config():
  c = cfg.base("co_mocov3", data_source="tfds", data_name="tiny_imagenet", aug_recipe="byol", global_size=64,
               channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.num_classes = 200
  c.aug.global_scale = (0.2, 1.0)
  c.model.name = "rf_resnet"
  c.model.variant = "rf29_resnet18"
  c.model.small_stem = True       # read by the ResNet-18 baseline only; a preset fixes its own stem
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
  c.optim.update(name="lars", lr=0.3, min_lr=0.0, warmup_epochs=10.0, weight_decay=1e-6)
  c.ema.base = 0.99
  c.eval.every_steps = 20 * 390
  c.checkpoint_every_steps = 2000
  return c
