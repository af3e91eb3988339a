"""Intensity windowing and geometry shared by every reader.

Every source ends up as the same thing training expects: an 8-bit square image of the configured
size. Windowing happens in float before the 8-bit cast so 12/16-bit MR keeps its contrast, and the
geometry is a letterbox (pad to square, then resize) so anatomy is never stretched; boxes go
through the same transform so they stay in pixels of the stored image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def window_linear(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 linear VOI function, mapped to [0, 1]."""
    width = max(float(width), 1.0)
    low = center - 0.5 - (width - 1) / 2
    return np.clip((image - low) / (width - 1), 0.0, 1.0).astype(np.float32)


def window_percentile(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Robust window for data without display tags (NIfTI, DICOM lacking WindowCenter)."""
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_uint8(unit_image: np.ndarray) -> np.ndarray:
    return np.rint(unit_image * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class Letterbox:
    """How an image of `rows` x `cols` maps into the stored square: scale, then offset."""

    rows: int
    cols: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.rows, self.cols)

    @property
    def offset(self) -> tuple[int, int]:
        """(x, y) padding in stored pixels, centring the scaled image."""
        scaled_cols = round(self.cols * self.scale)
        scaled_rows = round(self.rows * self.scale)
        return (self.size - scaled_cols) // 2, (self.size - scaled_rows) // 2

    def image(self, image: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """Resize keeping aspect ratio and pad to the square; nearest-neighbour for masks."""
        scaled = (round(self.cols * self.scale), round(self.rows * self.scale))
        if nearest:
            interpolation = cv2.INTER_NEAREST
        else:
            interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, scaled, interpolation=interpolation)
        out = np.zeros((self.size, self.size), dtype=image.dtype)
        x0, y0 = self.offset
        out[y0 : y0 + scaled[1], x0 : x0 + scaled[0]] = resized
        return out

    def boxes(self, boxes: list[list[float]]) -> list[list[float]]:
        """Map [x1, y1, x2, y2] boxes from source pixels to stored pixels."""
        x0, y0 = self.offset
        s = self.scale
        return [
            [
                round(b[0] * s + x0, 2),
                round(b[1] * s + y0, 2),
                round(b[2] * s + x0, 2),
                round(b[3] * s + y0, 2),
            ]
            for b in boxes
        ]


def box_problem(box: list[float], rows: int, cols: int, tolerance: float = 0.5) -> str | None:
    """Why a box cannot be trusted, or None; a half-pixel tolerance absorbs rounding."""
    x1, y1, x2, y2 = box
    if not np.all(np.isfinite(box)):
        return f"box {box} has non-finite coordinates"
    if x2 <= x1 or y2 <= y1:
        return f"box {box} is empty or inverted"
    if x1 < -tolerance or y1 < -tolerance or x2 > cols + tolerance or y2 > rows + tolerance:
        return f"box {box} lies outside the {cols}x{rows} image"
    return None


def clip_box(box: list[float], rows: int, cols: int) -> list[float]:
    return [max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(cols)), min(box[3], float(rows))]
