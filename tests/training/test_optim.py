"""AdamW parameter groups: no decay on biases, norms and ViT tokens; layer-wise LR decay."""

from __future__ import annotations

import pytest
import timm
import torch
from synthetic import datasets

from medvit.models import create_student
from medvit.training import ClassificationTask, TrainConfig, fit
from medvit.training.optim import make_optimizer, warmup_cosine

CONFIG = TrainConfig(lr=1e-3, weight_decay=0.05, warmup_epochs=0, epochs=2)


def _setting(optimizer: torch.optim.Optimizer, model: torch.nn.Module, key: str) -> dict:
    """`key` ("weight_decay", "lr") of the group each named parameter is in."""
    by_id = {id(p): group[key] for group in optimizer.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


def test_vit_tokens_biases_and_norms_get_no_weight_decay():
    model = create_student("tiny", 2, 32)
    decay = _setting(make_optimizer(model, CONFIG), model, "weight_decay")
    for name in ("cls_token", "dist_token", "pos_embed", "norm.weight", "blocks.0.norm1.weight"):
        assert decay[name] == 0.0, name
    assert all(decay[name] == 0.0 for name in decay if name.endswith(".bias"))
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "head_dist.weight"):
        assert decay[name] == CONFIG.weight_decay, name


def test_cnn_convolutions_decay_and_batch_norms_do_not(make_cnn):
    model = make_cnn()
    decay = _setting(make_optimizer(model, CONFIG), model, "weight_decay")
    assert decay["0.weight"] == decay["8.weight"] == CONFIG.weight_decay  # conv, linear
    assert decay["1.weight"] == decay["1.bias"] == decay["0.bias"] == 0.0  # batch norm, bias


def test_layer_decay_scales_the_learning_rate_per_block_and_survives_the_schedule():
    model = create_student("tiny", 2, 32)
    config = CONFIG.model_copy(update={"layer_decay": 0.5})
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine(optimizer, config, steps_per_epoch=4)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    lr = _setting(optimizer, model, "lr")
    assert lr["head.weight"] == max(lr.values())
    # timm's DeiT layers: tokens and patch embedding 0, blocks 1 to 12, head 13
    assert lr["blocks.11.mlp.fc1.weight"] == pytest.approx(lr["head.weight"] * 0.5)
    assert lr["blocks.10.mlp.fc1.weight"] == pytest.approx(lr["blocks.11.mlp.fc1.weight"] * 0.5)
    assert lr["patch_embed.proj.weight"] == pytest.approx(lr["head.weight"] * 0.5**13)
    assert _setting(optimizer, model, "weight_decay")["blocks.3.norm2.bias"] == 0.0


def test_layer_decayed_vit_resumes_bit_identical(tmp_path):
    def vit() -> torch.nn.Module:
        torch.manual_seed(0)
        return timm.create_model(
            "vit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, in_chans=1, num_classes=2
        )

    train, val = datasets(n_train=32, n_val=16)
    config = TrainConfig(
        epochs=2, batch_size=16, layer_decay=0.7, warmup_epochs=1, device="cpu", progress=False
    )
    uninterrupted = fit(vit(), ClassificationTask(), train, val, config)

    class Stop(RuntimeError):
        pass

    def stop(metrics: dict, epoch: int) -> None:
        raise Stop

    resumable = config.model_copy(update={"checkpoint_dir": str(tmp_path)})
    with pytest.raises(Stop):
        fit(vit(), ClassificationTask(), train, val, resumable, on_epoch_end=stop)
    resumed = fit(vit(), ClassificationTask(), train, val, resumable)
    assert resumed.resumed_at == 1
    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
