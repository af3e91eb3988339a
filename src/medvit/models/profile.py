"""Size and speed of a model, as the distillation report compares teacher and student."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@torch.inference_mode()
def latency_ms(
    model: nn.Module, image_size: int, in_chans: int = 1, repeats: int = 20, warmup: int = 3
) -> float:
    """Median milliseconds for one image (batch of 1) in eval mode on the model's device."""
    device = next(model.parameters()).device
    image = torch.zeros(1, in_chans, image_size, image_size, device=device)
    was_training = model.training
    model.eval()
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        model(image)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            times.append((time.perf_counter() - started) * 1000)
    model.train(was_training)
    return statistics.median(times)
