"""The MAE recipe's optimiser settings: scaled learning rate, AdamW betas, what decays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medvit.models import MaskedAutoencoderViT
from medvit.training import TrainConfig
from medvit.training.optim import make_optimizer


def test_base_lr_scales_with_the_batch_over_all_processes():
    config = TrainConfig(base_lr=1.5e-4, batch_size=64)
    assert config.learning_rate() == pytest.approx(1.5e-4 * 64 / 256)
    assert config.learning_rate(world_size=4) == pytest.approx(1.5e-4 * 256 / 256)
    assert TrainConfig(lr=3e-4).learning_rate(world_size=4) == 3e-4  # lr is taken as given


def test_lr_and_base_lr_together_are_refused():
    with pytest.raises(ValidationError, match="give one"):
        TrainConfig(lr=1e-3, base_lr=1.5e-4)


def test_mae_optimizer_has_the_recipe_betas_and_spares_tokens():
    mae = MaskedAutoencoderViT("vit_tiny_patch16_224", img_size=64, depth=1, decoder_dim=32,
                               decoder_depth=1, decoder_heads=4)  # fmt: skip
    config = TrainConfig(base_lr=1.5e-4, batch_size=512, betas=(0.9, 0.95), weight_decay=0.05)
    optimizer = make_optimizer(mae, config, world_size=2)
    assert all(group["betas"] == (0.9, 0.95) for group in optimizer.param_groups)
    assert optimizer.defaults["lr"] == pytest.approx(1.5e-4 * 1024 / 256)
    decay = {
        id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]
    }
    named = dict(mae.named_parameters())
    for name in ("encoder.cls_token", "mask_token", "encoder.norm.weight", "decoder_embed.bias"):
        assert decay[id(named[name])] == 0.0, name
    assert decay[id(named["encoder.blocks.0.attn.qkv.weight"])] == 0.05
    assert id(mae.encoder.pos_embed) not in decay  # fixed sin-cos: not optimised at all
