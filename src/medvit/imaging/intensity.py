"""Intensity windowing and geometry shared by every reader.

Every source ends up as the same thing training expects: an 8-bit square image of the configured
size. Windowing happens in float before the 8-bit cast so 12/16-bit MR keeps its contrast, and the
geometry is a letterbox (pad to square, then resize) so anatomy is never stretched; boxes go
through the same transform so they stay in pixels of the stored image.

Optionally (`ingestion.preprocessing`) a slice is first cropped to the head and standardised per
image: without it, letterbox bars and brightness tell a model which archive an image came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from monai.transforms.utils import generate_spatial_bounding_box


def window_linear_exact(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.2 LINEAR_EXACT VOI function, mapped to [0, 1].

    The output range is [0, 1] rather than the standard's [y_min, y_max] of the modality values:
    that range only rescales what the 8-bit cast rescales again. A zero width is a threshold.
    """
    values = np.asarray(image, dtype=np.float64)
    low = center - width / 2
    if width <= 0:
        return (values > low).astype(np.float32)
    return np.clip((values - low) / width, 0.0, 1.0).astype(np.float32)


def window_linear(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR (the default): LINEAR_EXACT on centre - 0.5, width - 1."""
    return window_linear_exact(image, center - 0.5, width - 1.0)


def window_sigmoid(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.1 SIGMOID VOI function, mapped to [0, 1]."""
    values = np.asarray(image, dtype=np.float64)
    with np.errstate(over="ignore"):  # far below the centre exp overflows to inf: 1/inf = 0
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)


VOI_FUNCTIONS = {
    "LINEAR": window_linear,
    "LINEAR_EXACT": window_linear_exact,
    "SIGMOID": window_sigmoid,
}


def voi_window_problem(function: str, width: float) -> str | None:
    """Why a VOILUTFunction / WindowWidth pair cannot be applied (pydicom refuses the same), or
    None."""
    if function not in VOI_FUNCTIONS:
        return f"VOILUTFunction {function!r} is not one of {', '.join(VOI_FUNCTIONS)}"
    if function == "LINEAR" and width < 1:
        return f"WindowWidth {width} is below 1, the least a LINEAR window allows"
    if width <= 0:
        return f"WindowWidth {width} is not positive, as a {function} window needs"
    return None


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

    def spacing(self, spacing: tuple[float, float] | None) -> list[float] | None:
        """(row, column) mm of a stored pixel from those of a source pixel.

        Per axis from the rounded scaled size, which is what the resize produced.
        """
        if spacing is None:
            return None
        scaled_rows = round(self.rows * self.scale)
        scaled_cols = round(self.cols * self.scale)
        return [
            round(spacing[0] * self.rows / scaled_rows, 6),
            round(spacing[1] * self.cols / scaled_cols, 6),
        ]

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


def box_problem(box: list[float], rows: int, cols: int) -> str | None:
    """Why a box cannot be used, or None.

    A box that runs past the image edge is clipped, not refused: annotators box the lesion, and
    one that touches the border often ends a few pixels outside (2 of 494 Br35H tumour boxes).
    Only a box with nothing left inside the image tells nothing about it.
    """
    if not np.all(np.isfinite(box)):
        return f"box {box} has non-finite coordinates"
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return f"box {box} is empty or inverted"
    x1, y1, x2, y2 = clip_box(box, rows, cols)
    if x2 <= x1 or y2 <= y1:
        return f"box {box} lies outside the {cols}x{rows} image"
    return None


def clip_box(box: list[float], rows: int, cols: int) -> list[float]:
    return [max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(cols)), min(box[3], float(rows))]


def box_clipped(box: list[float], rows: int, cols: int, tolerance: float = 0.5) -> bool:
    """Whether clipping cuts more than rounding (half a pixel) off the box: what gets counted."""
    x1, y1, x2, y2 = box
    return x1 < -tolerance or y1 < -tolerance or x2 > cols + tolerance or y2 > rows + tolerance


def head_mask(image: np.ndarray, threshold: float = 0.1, work_size: int = 256) -> np.ndarray:
    """The head: the largest connected region of the blurred image above `threshold` of its
    robust intensity range.

    Blurring first and keeping one component makes the mask robust to background noise, burned-in
    text and letterbox bars of another grey, which a plain `> 0` (MONAI's default selector) would
    all count as foreground. The range is relative (0.5th to 99.5th percentile), so a scanner's
    gain and offset move the threshold with the image and select the same pixels. Found on a copy
    at most `work_size` pixels wide (a few times faster on 512-pixel slices), then scaled back.
    """
    values = np.asarray(image, dtype=np.float32)
    rows, cols = values.shape
    scale = min(1.0, work_size / max(rows, cols))
    small = values
    if scale < 1.0:
        shape = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        small = cv2.resize(values, shape, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.01 * max(small.shape)))
    low, high = np.percentile(blurred, [0.5, 99.5])
    if _flat(high - low, high):  # nothing stands out as a head
        return np.ones(values.shape, dtype=bool)
    above = (blurred > low + threshold * (high - low)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    if count <= 1:
        return np.ones(values.shape, dtype=bool)
    largest = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    if scale < 1.0:
        largest = cv2.resize(largest, (cols, rows), interpolation=cv2.INTER_NEAREST)
    return largest.astype(bool)


def foreground_box(mask: np.ndarray, margin: float = 0.02) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), end exclusive: the mask's bounding box (MONAI's
    `generate_spatial_bounding_box`, as `CropForeground` uses it) widened by `margin` of its
    longer side and kept inside the image."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, mask.shape[0], 0, mask.shape[1]
    pixels = round(margin * max(np.ptp(ys) + 1, np.ptp(xs) + 1))
    start, end = generate_spatial_bounding_box(mask[None], margin=pixels)
    (rows, cols), (y0, x0), (y1, x1) = mask.shape, start, end  # the margin may run off the edge
    return max(int(y0), 0), min(int(y1), rows), max(int(x0), 0), min(int(x1), cols)


def standardise(
    image: np.ndarray,
    method: Literal["percentile", "zscore"],
    *,
    percentiles: tuple[float, float] = (1.0, 99.0),
    clip: float = 3.0,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image intensity standardisation to [0, 1], statistics taken over `foreground` pixels.

    Both methods are invariant to a scanner's gain and offset (a x + b, a > 0), so brightness
    and contrast no longer tell which scanner, site or archive an image came from. Statistics of
    the head alone keep how much background a slice holds from changing its contrast.
    """
    values = np.asarray(image, dtype=np.float32)
    pixels = values[foreground] if foreground is not None and foreground.any() else values
    if method == "percentile":
        low, high = np.percentile(pixels, percentiles)
        if _flat(high - low, high):
            return np.zeros(values.shape, dtype=np.float32)
        return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)
    mean, std = float(pixels.mean()), float(pixels.std())
    if _flat(std, mean):
        return np.zeros(values.shape, dtype=np.float32)
    z = np.clip((values - mean) / std, -clip, clip)
    return ((z + clip) / (2 * clip)).astype(np.float32)


def _flat(spread: float, level: float) -> bool:
    """Whether a spread of intensities is float32 round-off rather than contrast."""
    return spread <= 1e-5 * max(abs(level), 1e-3)
