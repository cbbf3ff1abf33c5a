"""SOVE, ViT-L/16, ImageNet-1k, 2 x 224 + 10 x 96 multi-crop, 250 epochs.

  python -m jssl.main --config=configs/sove_vitl16.py --workdir=gs://bucket/sove_vitl16

Paper (250 epochs): 79.2% k-NN / 81.2% linear. Recipe as configs/sove_vitb.py
(METHODS.md section 002); batch 1024 is our choice. Parameters, teacher and optimiser
state are split over the devices (FSDP, docs/performance.md) and each block's
activations are recomputed in the backward pass (model.remat).
"""
from jssl import config as cfg


def get_config():
  # Optimiser, EMA and the teacher monitor: DINO's recipe (training_defaults of the method).
  c = cfg.base("sove", data_source="tfds", data_name="imagenet2012", aug_recipe="dino", global_size=224, local_size=96,
               num_local=10, channels=3, small_images=False)
  c.data.eval_split = "validation"
  c.data.image_size = 256
  c.aug.global_scale = (0.14, 1.0)   # the SOVE code's global crop scale (DINO: 0.4-1)
  c.model.name = "vit"
  c.model.variant = "L/16"
  c.model.image_size = 224
  c.model.pool = "cls"
  c.model.drop_path = 0.1
  c.model.dtype = "bfloat16"
  # 304M parameters: student, EMA teacher and AdamW's two moments are 4 float32 copies
  # (4.9 GB) before any activation. FSDP splits all four over the devices (-1: every
  # device on the fsdp axis; one device: plain data parallelism) and block remat keeps
  # only each block's input for the backward pass (about a third more FLOPs), which
  # leaves room for the 2 x 224 + 10 x 96 crops of a large per-device batch.
  c.mesh.fsdp = -1
  c.model.remat = "block"
  c.batch_size = 1024
  c.num_epochs = 250
  c.eval.every_steps = 10 * (1281167 // 1024)
  c.eval.train_examples = 100_000
  c.checkpoint_every_steps = 2000
  return c
