"""The multi-label classifier: MAE hand-over, a rebuilt spec, and one fit through the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvit.models import ModelConfigError, model_from_payload, model_payload
from medvit.models.mae import MaskedAutoencoderViT
from medvit.models.multilabel import (
    MultiLabelTask,
    create_multilabel_classifier,
    finetune_transform,
    mean_auroc,
)
from medvit.training import SliceDataset, TrainConfig, fit

TINY = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory) -> tuple[MaskedAutoencoderViT, str]:
    torch.manual_seed(0)
    mae = MaskedAutoencoderViT(TINY, img_size=64, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    path = tmp_path_factory.mktemp("mae") / "encoder.pt"
    torch.save({"architecture": TINY, "encoder": mae.encoder_state_dict()}, path)
    return mae, str(path)


def test_classifier_from_mae_checkpoint_takes_the_encoder(mae_checkpoint) -> None:
    mae, path = mae_checkpoint
    model = create_multilabel_classifier(TINY, 4, 96, init="mae", mae_encoder=path)
    encoder = mae.encoder.state_dict()
    state = model.state_dict()
    for key in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight", "patch_embed.proj.weight"):
        assert torch.equal(state[key], encoder[key])
    assert state["pos_embed"].shape[1] == 1 + (96 // 16) ** 2  # resampled from the 4 x 4 grid
    assert model.global_pool == "avg" and "fc_norm.weight" in state
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 4)


def test_saved_classifier_rebuilds_with_its_pooling(mae_checkpoint) -> None:
    _, path = mae_checkpoint
    model = create_multilabel_classifier(TINY, 3, 32, init="mae", mae_encoder=path)
    rebuilt = model_from_payload(model_payload(model))
    assert "fc_norm.weight" in rebuilt.state_dict()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(images), rebuilt(images))


def test_incompatible_encoder_names_both_architectures(mae_checkpoint) -> None:
    _, path = mae_checkpoint
    both = r"vit_tiny\S* \(width 192.*does not fit vit_small\S* \(width 384"
    with pytest.raises(ModelConfigError, match=both):
        create_multilabel_classifier("vit_small_patch16_224", 3, 32, init="mae", mae_encoder=path)
    with pytest.raises(ModelConfigError, match="ViTs only"):
        create_multilabel_classifier("densenet121", 3, 32, init="mae", mae_encoder=path)
    with pytest.raises(ModelConfigError, match="needs an MAE encoder"):
        create_multilabel_classifier(TINY, 3, 32, init="mae")


def test_mean_auroc_skips_one_class_findings() -> None:
    target = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.5, 0.2], [0.1, 0.5, 0.8], [0.6, 0.5, 0.1], [0.7, 0.5, 0.9]])
    # finding 0: 3 of 4 pairs; finding 1 has no positive; finding 2: 4 of 4
    assert mean_auroc(target, scores) == pytest.approx((0.75 + 1.0) / 2)


def test_one_epoch_through_the_training_loop() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(16, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 2, size=(16, 3))
    labels[:2] = [[1, 1, 1], [0, 0, 0]]  # both classes of every finding in validation
    train = SliceDataset(images, range(16), labels, finetune_transform(32, train=True))
    val = SliceDataset(images, range(8), labels[:8], finetune_transform(32, train=False))
    torch.manual_seed(0)
    model = create_multilabel_classifier(TINY, 3, 32)
    config = TrainConfig(epochs=1, batch_size=8, layer_decay=0.55, progress=False, device="cpu")
    result = fit(model, MultiLabelTask(torch.ones(3)), train, val, config)
    metrics = result.history[0]
    assert np.isfinite(metrics["val_loss"]) and 0 <= metrics["val_mean_auroc"] <= 1
