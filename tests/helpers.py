"""Small configs shared by the trainer tests: tiny models, tiny batches, real Fashion-MNIST."""
from jssl import config as cfg


def tiny_config(method: str = "byol", *, vit: bool = False):
  if method == "dino":
    c = cfg.base("dino", global_size=28, local_size=12, num_local=2, channels=1, small_images=True)
    c.dino.out_dim = 64
    c.dino.hidden_dim = 32
    c.dino.bottleneck_dim = 16
    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.04
    c.optim.weight_decay_end = 0.4
    c.optim.clip_grad = 3.0
    c.optim.frozen = "last_layer"
    c.optim.freeze_epochs = 1
    c.eval.network = "teacher"
  else:
    c = cfg.base("byol", global_size=28, channels=1, small_images=True)
    c.byol.proj_hidden = 32
    c.byol.proj_dim = 16
    c.byol.pred_hidden = 32
    c.optim.name = "lars"
    c.optim.lr = 0.5
  if vit:
    c.model.name = "vit"
    c.model.variant = "Ti/4"
    c.model.image_size = 28
    c.model.pool = "cls"
    c.model.drop_path = 0.1
    c.model.depth = 2
  else:
    c.model.variant = "resnet_tiny"
    c.model.small_stem = False
  c.batch_size = 16
  c.total_steps = 4
  c.optim.warmup_epochs = 0.0
  c.eval.train_examples = 256
  c.eval.test_examples = 128
  c.eval.batch_size = 64
  c.log_every_steps = 2
  c.checkpoint_every_steps = 2
  return c
