"""`devices` in the config: `fit` starts its own DDP processes (elastic launcher, gloo on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvit.models import MAETask, MaskedAutoencoderViT
from medvit.training import TrainConfig, fit, unlabelled_slices
from medvit.training.launch import process_plan


@pytest.mark.slow  # two spawned processes import torch, timm and medvit: ~30 s of CPU
def test_two_cpu_processes_from_one_call(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    images = np.random.default_rng(0).integers(0, 255, (40, 64, 64), dtype=np.uint8)
    train, val = unlabelled_slices(images, range(32)), unlabelled_slices(images, range(32, 40))
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(
        "vit_tiny_patch16_224", img_size=64, depth=1, decoder_dim=32, decoder_depth=1,
        decoder_heads=4,
    )  # fmt: skip
    initial = [p.detach().clone() for p in model.parameters()]
    logged: list[tuple[int, float]] = []
    config = TrainConfig(
        epochs=2, batch_size=8, base_lr=1.5e-4, early_stopping=None, device="cpu",
        devices=[0, 1], progress=False,
    )  # fmt: skip
    result = fit(
        model,
        MAETask(),
        train,
        val,
        config,
        on_epoch_end=lambda metrics, epoch: logged.append((epoch, metrics["train_loss"])),
    )
    # rank 0's metrics reached this process's callback, epoch by epoch
    assert [epoch for epoch, _ in logged] == [0, 1]
    assert [loss for _, loss in logged] == [m["train_loss"] for m in result.history]
    assert np.isfinite(result.history[-1]["val_loss"])
    # two processes of 8: the learning rate scaled with the global batch of 16
    assert result.history[0]["lr"] <= 1.5e-4 * 16 / 256
    assert result.model is model  # the caller's model now holds the trained weights
    assert any(not torch.equal(a, b) for a, b in zip(initial, model.parameters(), strict=True))


def test_plans():
    assert process_plan(TrainConfig()) is None
    assert process_plan(TrainConfig(device="cpu", devices=[0, 1, 2])) == (3, None)
    if not torch.cuda.is_available():
        assert process_plan(TrainConfig(devices="auto")) is None  # no GPU: this process
        with pytest.raises(ValueError, match="device: cpu"):
            process_plan(TrainConfig(devices=[0, 1]))
    with pytest.raises(ValueError, match="twice"):
        TrainConfig(device="cpu", devices=[0, 0])
