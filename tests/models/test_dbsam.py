"""DB-SAM's blocks, frozen/trainable split, checkpoint checks, task, and a one-batch overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.models.sam.build import build_sam_vit_b

from medvit.models import ModelConfigError
from medvit.models.dbsam import (
    ENCODER_SIZES,
    SegmentationTask,
    SegmenterConfig,
    build_segmenter,
    parameter_counts,
    segmenter_from_payload,
    segmenter_payload,
)
from medvit.models.dbsam.blocks import (
    BilateralCrossAttention,
    ChannelAttention,
    ConvBranch,
    Fusion,
)
from medvit.models.dbsam.sam import build_sam

TINY = ENCODER_SIZES["tiny"]


@pytest.fixture(scope="module")
def dbsam() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_segmenter("dbsam", {"encoder": "tiny"})


def blob_batch(size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two noisy slices, each with one bright ellipse, its mask and its tight box."""
    generator = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.stack(
        [
            (((rows - 0.4 * size) ** 2 + ((cols - 0.5 * size) * 1.3) ** 2) < (0.15 * size) ** 2),
            (((rows - 0.6 * size) ** 2 + ((cols - 0.35 * size) * 1.3) ** 2) < (0.2 * size) ** 2),
        ]
    )[:, None].float()
    images = torch.rand(masks.shape, generator=generator) * 0.3 + 0.5 * masks
    boxes = torch.stack(
        [
            torch.tensor(
                [
                    cols[m[0] > 0].min(),
                    rows[m[0] > 0].min(),
                    cols[m[0] > 0].max() + 1,
                    rows[m[0] > 0].max() + 1,
                ]
            ).float()
            for m in masks
        ]
    )
    return images, masks, boxes


def test_channel_attention_keeps_shape_and_starts_as_identity() -> None:
    block = ChannelAttention(32)
    tokens = torch.randn(2, 8, 8, 32)
    assert torch.equal(block(tokens), tokens)
    torch.nn.init.normal_(block.pointwise.weight)
    out = block(tokens)
    assert out.shape == tokens.shape and not torch.equal(out, tokens)


def test_conv_branch_reaches_the_token_grid_and_half_of_it() -> None:
    branch = ConvBranch(TINY.width, TINY.conv_width)
    levels = branch(torch.randn(2, 3, TINY.image_size, TINY.image_size))
    grid = TINY.grid
    assert [tuple(level.shape) for level in levels] == [
        (2, TINY.width, grid, grid),
        (2, TINY.width, grid // 2, grid // 2),
    ]
    assert branch.to_grid(levels, (grid, grid)).shape == (2, grid, grid, TINY.width)


def test_bilateral_cross_attention_returns_both_branches_in_their_shapes() -> None:
    block = BilateralCrossAttention(32, 4, conv_levels=2)
    tokens = torch.randn(2, 8, 8, 32)
    levels = [torch.randn(2, 32, 8, 8), torch.randn(2, 32, 4, 4)]
    new_tokens, new_levels = block(tokens, levels)
    assert new_tokens.shape == tokens.shape
    assert [level.shape for level in new_levels] == [level.shape for level in levels]
    assert torch.equal(new_tokens, tokens)  # the ViT side is gated shut at initialisation
    assert not torch.equal(new_levels[0], levels[0])


def test_fusion_gates_between_the_branches() -> None:
    fusion = Fusion(32)
    vit, conv = torch.randn(2, 4, 4, 32), torch.randn(2, 4, 4, 32)
    fused = fusion(vit, conv)
    gate = torch.sigmoid(fusion.vit_gate(vit) + fusion.conv_gate(conv))
    torch.testing.assert_close(fused, gate * vit + (1 - gate) * conv)
    torch.testing.assert_close(fusion(vit, vit), vit)


@pytest.mark.parametrize("kind", ["dbsam", "sam_decoder"])
def test_frozen_and_trainable_parts(kind: str) -> None:
    model = build_segmenter(kind, SegmenterConfig())
    sam = model.sam
    frozen = [sam.image_encoder.patch_embed, sam.image_encoder.blocks, sam.prompt_encoder]
    assert not any(p.requires_grad for part in frozen for p in part.parameters())
    assert not sam.image_encoder.pos_embed.requires_grad
    assert all(p.requires_grad for p in sam.image_encoder.neck.parameters())
    assert all(p.requires_grad for p in sam.mask_decoder.transformer.parameters())
    counts = parameter_counts(model)
    assert counts["trainable"] + counts["frozen"] == sum(p.numel() for p in model.parameters())
    if kind == "dbsam":
        adapters = [model.channel_attention, model.conv_branch, model.cross_attention, model.fusion]
        assert all(p.requires_grad for part in adapters for p in part.parameters())


def test_dbsam_adds_trainable_parameters_only() -> None:
    base = parameter_counts(build_segmenter("sam_decoder"))
    dual = parameter_counts(build_segmenter("dbsam"))
    assert dual["frozen"] == base["frozen"]
    assert dual["trainable"] > base["trainable"]


def test_logits_come_back_at_the_input_resolution(dbsam: torch.nn.Module) -> None:
    images = torch.rand(2, 1, 96, 80)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 80.0, 96.0]])
    with torch.no_grad():
        logits = dbsam(images, boxes)
    assert logits.shape == (2, 1, 96, 80)
    assert torch.isfinite(logits).all()


def test_every_trainable_parameter_gets_a_gradient(dbsam: torch.nn.Module) -> None:
    """DDP waits for a gradient of every trainable parameter: none may be left out."""
    images, masks, boxes = blob_batch()
    dbsam.zero_grad()
    SegmentationTask().training_step(dbsam, (images, masks, boxes))[0].backward()
    missing = [n for n, p in dbsam.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_one_batch_overfit_reaches_dice_above_0_9() -> None:
    torch.manual_seed(0)
    model = build_segmenter("dbsam", {"encoder": "tiny"})
    task = SegmentationTask()
    batch = blob_batch()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01
    )
    dice = torch.zeros(2)
    for step in range(200):
        loss, _ = task.training_step(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            with torch.no_grad():
                dice = task.validation_step(model.eval(), batch)["dice"]
            model.train()
            if dice.min() > 0.9:
                break
    assert dice.min() > 0.9, f"Dice {dice.tolist()} after {step + 1} steps"


def test_task_scores_a_perfect_prediction() -> None:
    _, masks, boxes = blob_batch()

    class Oracle(torch.nn.Module):
        def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
            return (masks * 2 - 1) * 20

    task = SegmentationTask(return_masks=True)
    outputs = task.validation_step(Oracle(), (masks, masks, boxes))
    torch.testing.assert_close(outputs["dice"], torch.ones(2))
    assert outputs["mask"].dtype == torch.uint8 and torch.equal(outputs["mask"].float(), masks)
    assert outputs["loss"].shape == (2,) and outputs["loss"].max() < 0.05
    metrics = task.validation_metrics({"dice": np.array([1.0, 0.5]), "loss": np.array([0.1, 0.3])})
    assert metrics == pytest.approx({"dice": 0.75, "loss": 0.2})


def test_payload_round_trip_gives_the_same_logits(dbsam: torch.nn.Module) -> None:
    images, _, boxes = blob_batch()
    restored = segmenter_from_payload(segmenter_payload(dbsam))
    dbsam.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images, boxes), dbsam(images, boxes))
    assert restored.kind == "dbsam" and restored.config == dbsam.config


def test_a_matching_sam_checkpoint_is_loaded(tmp_path) -> None:
    torch.manual_seed(1)
    state = build_sam(TINY).state_dict()
    path = tmp_path / "sam_tiny.pt"
    torch.save({"model": state}, path)
    model = build_segmenter("sam_decoder", {"encoder": "tiny", "checkpoint": str(path)})
    torch.testing.assert_close(model.sam.state_dict(), state)


def test_a_checkpoint_of_another_size_names_both(tmp_path) -> None:
    """A ViT-B checkpoint (only the tensors that give its size) for the tiny encoder."""
    state = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.pos_embed": torch.zeros(1, 64, 64, 1),
        **{f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)},
    }
    path = tmp_path / "sam_b.pt"
    torch.save(state, path)
    with pytest.raises(ModelConfigError) as error:
        build_segmenter("dbsam", {"encoder": "tiny", "checkpoint": str(path)})
    message = str(error.value)
    assert "width 768, depth 12 at 1024 px" in message
    assert "'tiny' is width 128, depth 4 at 256 px" in message


def test_missing_or_foreign_checkpoints_are_refused(tmp_path) -> None:
    with pytest.raises(ModelConfigError, match="does not exist"):
        build_segmenter("dbsam", {"checkpoint": str(tmp_path / "absent.pt")})
    foreign = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ModelConfigError, match="not a SAM checkpoint"):
        build_segmenter("sam_decoder", {"checkpoint": str(foreign)})


def test_config_rejects_unknown_fields_and_kinds() -> None:
    with pytest.raises(ValueError, match="extra"):
        SegmenterConfig.model_validate({"encoder": "tiny", "width": 3})
    with pytest.raises(ModelConfigError, match="unknown segmenter"):
        build_segmenter("unet", {})  # type: ignore[arg-type]


def test_vit_b_is_laid_out_as_ultralytics_builds_sam_b() -> None:
    """Same keys and shapes as the model `sam_b.pt` loads into (built on the meta device)."""
    with torch.device("meta"):
        reference, ours = build_sam_vit_b(), build_sam(ENCODER_SIZES["vit_b"])
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (reference, ours)]
    assert shapes[0] == shapes[1]
