"""The masked autoencoder: masking, loss, batched augmentation, task, and the encoder hand-over."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from medvit.evaluation.mae_figures import reconstruction_figure
from medvit.models import (
    MAETask,
    MaskedAutoencoderViT,
    ModelConfigError,
    create_student,
    load_mae_encoder,
    random_masking,
)
from medvit.models.mae import sincos_pos_embed
from medvit.training import TrainConfig, fit, unlabelled_slices
from medvit.training.batch_augment import random_resized_crop, resize

TINY = "vit_tiny_patch16_224"


def tiny_mae(**kwargs) -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    settings = {"img_size": 64, "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 4}
    return MaskedAutoencoderViT(TINY, depth=2, **{**settings, **kwargs})


def test_masking_keeps_the_asked_fraction_and_the_kept_tokens():
    x = torch.arange(2 * 20 * 3, dtype=torch.float32).reshape(2, 20, 3)
    kept, mask, ids_restore = random_masking(x, 0.75)
    assert kept.shape == (2, 5, 3)
    assert mask.sum(dim=1).tolist() == [15, 15]
    for sample in range(2):  # the kept tokens are exactly those the mask marks visible
        visible = x[sample][mask[sample] == 0]
        assert sorted(kept[sample, :, 0].tolist()) == sorted(visible[:, 0].tolist())
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(20).expand(2, -1))


def test_masking_is_reproducible_with_a_seed():
    x = torch.randn(4, 16, 8)
    first = random_masking(x, 0.9, torch.Generator().manual_seed(3))[1]
    again = random_masking(x, 0.9, torch.Generator().manual_seed(3))[1]
    other = random_masking(x, 0.9, torch.Generator().manual_seed(4))[1]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_loss_counts_masked_patches_only():
    mae = tiny_mae()
    images = torch.randn(3, 1, 64, 64)
    output = mae(images)
    pred = output.pred.detach().requires_grad_(True)
    loss = mae.per_sample_loss(images, pred, output.mask).mean()
    loss.backward()
    touched = pred.grad.abs().sum(dim=-1) > 0
    assert torch.equal(touched, output.mask.bool())
    assert torch.allclose(loss, output.loss)


def test_norm_pix_loss_regresses_normalised_patches():
    mae = tiny_mae(norm_pix_loss=True)
    target = mae.target(torch.randn(2, 1, 64, 64) * 5 + 3)
    assert torch.allclose(target.mean(dim=-1), torch.zeros(2, 16), atol=1e-4)
    assert torch.allclose(target.std(dim=-1), torch.ones(2, 16), atol=1e-2)


def test_position_embeddings_are_fixed_sin_cos():
    mae = tiny_mae()
    assert mae.encoder.pos_embed.shape == (1, 1 + 16, 192)
    assert not mae.encoder.pos_embed.requires_grad
    assert torch.equal(mae.encoder.pos_embed, sincos_pos_embed(192, 4))
    assert mae.decoder_pos_embed.shape == (1, 1 + 16, 32)
    assert torch.equal(mae.decoder_pos_embed[0, 0], torch.zeros(32))  # class slot
    assert "decoder_pos_embed" not in dict(mae.named_parameters())


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.1])
def test_mask_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ModelConfigError, match="outside \\(0, 1\\)"):
        tiny_mae(mask_ratio=ratio)


@pytest.mark.parametrize("size", [16, 32, 72])
def test_image_without_a_visible_patch_grid_is_refused(size):
    with pytest.raises(ModelConfigError, match="at least 64"):
        tiny_mae(img_size=size)


def test_encoder_must_be_a_plain_vit():
    with pytest.raises(ModelConfigError, match="not a plain timm ViT"):
        MaskedAutoencoderViT("deit_tiny_distilled_patch16_224")


def test_batched_crop_shapes_and_seed():
    images = torch.randint(0, 256, (6, 1, 80, 80), dtype=torch.uint8)
    first = random_resized_crop(images, 32, generator=torch.Generator().manual_seed(0))
    again = random_resized_crop(images, 32, generator=torch.Generator().manual_seed(0))
    other = random_resized_crop(images, 32, generator=torch.Generator().manual_seed(1))
    assert first.shape == (6, 1, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 255


def test_whole_image_crop_is_a_resize_or_its_mirror():
    images = torch.rand(8, 1, 32, 32) * 255
    crops = random_resized_crop(images, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    for crop, image in zip(crops, images, strict=True):
        assert torch.allclose(crop, image, atol=1e-3) or torch.allclose(
            crop, image.flip(-1), atol=1e-3
        )
    assert resize(images, 16).shape == (8, 1, 16, 16)


def test_task_trains_through_fit_on_unlabelled_slices():
    images = np.random.default_rng(0).integers(0, 255, (24, 72, 72), dtype=np.uint8)
    train, val = unlabelled_slices(images, range(16)), unlabelled_slices(images, range(16, 24))
    config = TrainConfig(
        epochs=1, batch_size=8, base_lr=1.5e-4, betas=(0.9, 0.95), early_stopping=None,
        device="cpu", progress=False,
    )  # fmt: skip
    result = fit(tiny_mae(), MAETask(), train, val, config)
    metrics = result.history[-1]
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["val_loss"])
    assert metrics["lr"] <= 1.5e-4 * 8 / 256


def test_validation_masks_with_a_fixed_seed():
    mae = tiny_mae().eval()
    batch = (torch.randint(0, 256, (4, 1, 64, 64), dtype=torch.uint8), torch.zeros(4))
    task = MAETask(val_mask_seed=7)
    assert torch.equal(
        task.validation_step(mae, batch)["loss"], task.validation_step(mae, batch)["loss"]
    )


def test_hand_over_to_a_classifier_of_another_size():
    mae = tiny_mae()
    classifier = timm.create_model(
        TINY, num_classes=3, img_size=96, in_chans=1, depth=2, global_pool="avg"
    )
    report = load_mae_encoder(classifier, mae)
    assert report.missing == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert report.unused == ["norm.bias", "norm.weight"]  # average pooling uses fc_norm
    assert "pos_embed" in report.adapted
    assert classifier.pos_embed.shape == (1, 1 + 36, 192)  # resampled from 4 x 4 to 6 x 6
    assert torch.equal(classifier.blocks[1].mlp.fc2.weight, mae.encoder.blocks[1].mlp.fc2.weight)
    assert torch.equal(classifier.cls_token, mae.encoder.cls_token)


def test_hand_over_to_the_distilled_student_from_a_file(tmp_path):
    mae = tiny_mae()
    path = tmp_path / "mae.pt"
    torch.save({"architecture": mae.architecture, "encoder": mae.encoder_state_dict()}, path)
    student = create_student("tiny", 2, 32)
    student.blocks = student.blocks[:2]  # the tiny MAE has two blocks
    report = load_mae_encoder(student, path)
    assert set(report.adapted) == {"dist_token", "pos_embed"}
    assert torch.equal(student.dist_token, mae.encoder.cls_token)
    assert torch.equal(student.pos_embed[:, 1], student.pos_embed[:, 0])  # dist = cls position
    assert student.pos_embed.shape == (1, 2 + 4, 192)
    assert report.missing == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    class_logits, distill_logits = student(torch.randn(2, 1, 32, 32))
    assert class_logits.shape == distill_logits.shape == (2, 2)


def test_incompatible_encoder_names_both_architectures():
    small = timm.create_model("vit_small_patch16_224", img_size=64, in_chans=1, depth=2)
    with pytest.raises(ModelConfigError, match=r"vit_tiny_patch16_224 .* does not fit vit_small"):
        load_mae_encoder(small, tiny_mae())
    deeper = timm.create_model(TINY, num_classes=2, img_size=64, in_chans=1, depth=3)
    with pytest.raises(ModelConfigError, match=r"blocks\.2\..* missing from the encoder"):
        load_mae_encoder(deeper, tiny_mae())
    with pytest.raises(ModelConfigError, match="not a ViT"):
        load_mae_encoder(timm.create_model("resnet10t", in_chans=1), tiny_mae())


def test_reconstruction_figure_has_three_columns_per_slice():
    slices = np.random.default_rng(0).integers(0, 255, (2, 80, 80), dtype=np.uint8)
    mae = tiny_mae(norm_pix_loss=True).train()
    figure = reconstruction_figure(mae, slices, "demo, validation")
    assert len(figure.axes) == 6
    assert mae.training  # left in the mode it was found in
