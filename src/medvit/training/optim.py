"""AdamW with timm's parameter groups, linear warmup and cosine decay, stepped per batch.

No weight decay on biases, norms and what a timm model lists in `no_weight_decay()` (`cls_token`,
`dist_token`, `pos_embed`): decaying them only fights normalisation or pulls the tokens toward
zero. timm builds the groups (`param_groups_weight_decay`, or `param_groups_layer_decay` for
layer-wise LR decay), in parameter order, so a resumed optimiser state lines up group for group.
timm's `lr_scale` is applied by timm's own schedulers; ours is torch's `LambdaLR`, so the scale is
folded into each group's base `lr` here. The fused AdamW kernel (CPU and CUDA) updates all
parameters in one call instead of a Python loop over ~150 tensors per step.
"""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn

from medvit.training.config import TrainConfig


def parameter_groups(model: nn.Module, config: TrainConfig, lr: float) -> list[dict]:
    """timm's groups: weight decay per parameter kind and, with `layer_decay`, lr per block."""
    no_decay = getattr(model, "no_weight_decay", set)()
    if config.layer_decay is None:
        return param_groups_weight_decay(model, config.weight_decay, no_weight_decay_list=no_decay)
    groups = param_groups_layer_decay(
        model, config.weight_decay, no_weight_decay_list=no_decay, layer_decay=config.layer_decay
    )
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale")
    return groups


def make_optimizer(model: nn.Module, config: TrainConfig, world_size: int = 1) -> torch.optim.AdamW:
    """`world_size` matters only under `base_lr`, whose learning rate scales with the batch."""
    lr = config.learning_rate(world_size)
    groups = parameter_groups(model, config, lr)
    return torch.optim.AdamW(groups, lr=lr, betas=config.betas, fused=True)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear from ~0 to `lr` over `warmup_epochs`, then cosine down to `lr * min_lr_ratio`."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(config.epochs * steps_per_epoch, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
