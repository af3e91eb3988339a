"""Augmentation of a whole batch on its device: one `grid_sample` instead of a PIL call per image.

RandomResizedCrop and the horizontal flip become one affine sampling grid per sample, drawn as
tensors from torch's RNG (the loop seeds it per epoch and rank, so an epoch replays after a
resume). On a GPU this costs a fraction of a millisecond per batch and keeps the loader workers
to copying uint8 bytes, which is what lets MAE pretraining run at thousands of images per second.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medvit.training.data import PIXEL_MEAN, PIXEL_STD


def to_model_input(images: torch.Tensor, in_chans: int = 1) -> torch.Tensor:
    """uint8 (or [0, 255] float) N x 1 x H x W -> normalised float with `in_chans` channels."""
    x = (images.float() / 255 - PIXEL_MEAN) / PIXEL_STD
    return x.expand(-1, in_chans, -1, -1) if in_chans != x.shape[1] else x


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of a float batch to size x size (a no-op when it fits)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def random_resized_crop(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per sample: a crop of `scale` of the area at aspect `ratio`, resized to size x size and
    mirrored left-right with probability 1/2 (torchvision's RandomResizedCrop + flip).

    Where torchvision redraws a crop that does not fit the image, the crop's sides are clipped
    to the image instead (rare at scale >= 0.5). The batch is first shrunk with antialiasing so
    that the bilinear sampling never shrinks by more than the crop itself does.
    """
    x = images.float()
    n, _, height, width = x.shape
    largest = math.ceil(size / math.sqrt(scale[0]))
    if min(height, width) > largest:
        x = resize(x, largest)
        height = width = largest

    def uniform(low: float, high: float) -> torch.Tensor:
        draw = torch.rand(n, device=x.device, generator=generator)
        return low + (high - low) * draw

    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    # crop sides as fractions of the image's width and height
    crop_w = torch.sqrt(area * aspect * height / width).clamp(max=1)
    crop_h = torch.sqrt(area / aspect * width / height).clamp(max=1)
    centre_x = (2 * uniform(0, 1) - 1) * (1 - crop_w)  # in affine_grid's [-1, 1] coordinates
    centre_y = (2 * uniform(0, 1) - 1) * (1 - crop_h)
    mirror = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if flip else torch.ones_like(area)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = crop_w * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
