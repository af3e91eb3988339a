"""Tumour slices with their masks and one box prompt each, from the memory-mapped slice store.

Box prompts follow MedSAM and DB-SAM: the box around the mask's foreground (or a given box, e.g.
the detector's), each side pushed outward by a uniform 0..`jitter_px` at training so the model
learns to segment from a loose box rather than to copy the box's edges. `jitter_px` is counted
in pixels of a 1024-px image, the scale those papers train at (20 px there is ~2 % of the side);
that fraction of the side is what is kept at any stored or model size. Evaluation datasets pass
`jitter_px=0`. The jitter draws from torch's global RNG, which the training loop seeds per epoch,
so an epoch (and a resumed one) replays the same boxes.

Slices that cannot give a fair score are screened once, at construction, and listed in
`skipped` with the reason; none is dropped without a record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from medvit.training.data import SliceDataset

logger = logging.getLogger(__name__)

REFERENCE_SIZE = 1024  # the image side `jitter_px` is counted in (MedSAM, DB-SAM)


@dataclass(frozen=True)
class Skipped:
    """A slice left out: its position in the refs given to the dataset, and why."""

    position: int
    image_ref: int
    reason: str


def mask_box(mask: np.ndarray) -> np.ndarray:
    """xyxy around all foreground pixels, right/bottom edges exclusive (as ingestion's boxes)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def jitter_boxes(
    boxes: torch.Tensor,
    max_shift: float,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each side of each xyxy box moved outward by U(0, max_shift) pixels, clipped to the image.

    Outward only, as MedSAM does: the prompt stays a superset of the tumour, never cutting it.
    `size` is (height, width); the result stays within [0, width] x [0, height].
    """
    shift = torch.rand(boxes.shape, generator=generator) * max_shift
    moved = boxes + shift.to(boxes) * boxes.new_tensor([-1.0, -1.0, 1.0, 1.0])
    height, width = size
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(moved.clamp(min=0), limits)


def _box_problem(box: np.ndarray, side: int) -> str | None:
    if not np.all(np.isfinite(box)):
        return f"box {box.tolist()} is not finite"
    if box[2] <= box[0] or box[3] <= box[1]:
        return f"box {box.tolist()} has zero area"
    if box[2] <= 0 or box[3] <= 0 or box[0] >= side or box[1] >= side:
        return f"box {box.tolist()} lies outside the {side}x{side} image"
    return None


def _mask_problem(mask: np.ndarray) -> str | None:
    if not mask.any():
        return "mask is empty: no tumour to prompt for"
    if mask.all():
        return "mask is all foreground: no boundary to learn or score"
    return None


class SegmentationSliceDataset(SliceDataset):
    """`(image, mask, box)`: a 1 x S x S float image in [0, 1], its 1 x S x S 0/1 mask and an
    xyxy box (4,) in pixels of that S x S image, S = `image_size`.

    `images` and `masks` are the store's arrays (memmaps, reopened lazily in each worker as
    `SliceDataset` does); `mask_refs` may hold None for slices without a mask, which are then
    skipped. `boxes` (stored-image pixels, one per slice) replaces the boxes derived from the
    masks, e.g. by the detector's. After screening, `positions` maps each item back to its
    position in the given refs, `skipped` lists the others and `clipped_boxes` counts given
    boxes that ran past the image edge and were clipped to it.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        image_refs: Sequence[int],
        mask_refs: Sequence[int | None],
        boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
        jitter_px: float = 0.0,
        image_size: int = 256,
    ) -> None:
        if len(mask_refs) != len(image_refs):
            raise ValueError(f"{len(image_refs)} image refs but {len(mask_refs)} mask refs")
        if boxes is not None and len(boxes) != len(image_refs):
            raise ValueError(f"{len(image_refs)} image refs but {len(boxes)} boxes")
        if masks.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"masks are {masks.shape[2]}x{masks.shape[1]} but images are"
                f" {images.shape[2]}x{images.shape[1]}: a mask must have its image's size;"
                " re-run ingestion so both come from the same letterbox"
            )
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"slices must be square as the store writes them, not {images.shape}")
        if jitter_px < 0:
            raise ValueError(f"jitter_px must be >= 0, got {jitter_px}")
        self.side = int(images.shape[-1])
        kept, kept_boxes, self.skipped, self.clipped_boxes = [], [], [], 0
        for position, (image_ref, mask_ref) in enumerate(zip(image_refs, mask_refs, strict=True)):
            reason, box = self._screen(masks, mask_ref, None if boxes is None else boxes[position])
            if reason is not None:
                self.skipped.append(Skipped(position, int(image_ref), reason))
                continue
            kept.append(position)
            kept_boxes.append(box)
        if self.skipped:
            kinds = Counter(item.reason.split(":")[0] for item in self.skipped)
            logger.warning(
                "%d of %d slices skipped for segmentation (%s); first: %s",
                len(self.skipped),
                len(image_refs),
                ", ".join(f"{count} x {kind}" for kind, count in kinds.most_common(3)),
                self.skipped[0],
            )
        if not kept:
            raise ValueError(f"no usable slice among {len(image_refs)}: {self.skipped[:3]}")
        self.positions = np.asarray(kept, dtype=np.int64)
        picked_mask_refs = [int(mask_refs[position]) for position in kept]
        labels = np.zeros(len(kept), dtype=np.int64)
        super().__init__(images, np.asarray(image_refs)[self.positions], labels, v2.Identity())
        self.mask_rows = SliceDataset(masks, picked_mask_refs, labels, v2.Identity())
        self.boxes = np.stack(kept_boxes).astype(np.float32)
        self.jitter_px, self.image_size = float(jitter_px), image_size

    def _screen(
        self, masks: np.ndarray, mask_ref: int | None, given: Sequence[float] | None
    ) -> tuple[str | None, np.ndarray | None]:
        """(reason to skip, None) or (None, the slice's box in stored pixels)."""
        if pd.isna(mask_ref):
            return "no mask: the slice has no ground truth to segment against", None
        mask = np.asarray(masks[int(mask_ref)]) > 0
        problem = _mask_problem(mask)
        if problem is not None:
            return problem, None
        if given is None:
            return None, mask_box(mask)
        box = np.asarray(given, dtype=np.float32)
        problem = _box_problem(box, self.side)
        if problem is not None:
            return problem, None
        clipped = np.clip(box, 0, self.side)
        self.clipped_boxes += int(not np.array_equal(clipped, box))
        return None, clipped

    def identity(self) -> dict:
        """What this dataset's samples depend on beyond the pixels, for `fit(identity=...)`."""
        return {
            "image_refs": self.refs,
            "mask_refs": self.mask_rows.refs,
            "boxes": self.boxes,
            "jitter_px": self.jitter_px,
            "image_size": self.image_size,
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = [self.image_size, self.image_size]
        image = torch.from_numpy(np.array(self.images[self.refs[index]], dtype=np.uint8))[None]
        mask = self.mask_rows.images[self.mask_rows.refs[index]]
        mask = torch.from_numpy(np.asarray(mask) > 0)[None].to(torch.uint8)
        if self.side != self.image_size:
            image = TF.resize(image, size, antialias=True)
            mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        image, mask = TF.to_dtype(image, torch.float32, scale=True), mask.float()
        box = torch.from_numpy(self.boxes[index]) * (self.image_size / self.side)
        if self.jitter_px > 0:
            shift = self.jitter_px * self.image_size / REFERENCE_SIZE
            box = jitter_boxes(box[None], shift, (self.image_size, self.image_size))[0]
        return image, mask, box
