"""Per-image standardisation and the head mask: what keeps the scanner out of the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from medvit.imaging.intensity import foreground_box, head_mask, standardise


def _head(rng: np.random.Generator, rows: int = 64, cols: int = 64) -> np.ndarray:
    """A textured ellipse of random size and brightness on a noisy dark background."""
    y, x = np.mgrid[:rows, :cols]
    ry, rx = rng.uniform(0.3, 0.45, 2) * (rows, cols)
    inside = ((y - rows / 2) / ry) ** 2 + ((x - cols / 2) / rx) ** 2 <= 1
    image = rng.normal(0.02, 0.01, (rows, cols))
    image[inside] = rng.uniform(0.2, 0.4) + rng.normal(0, 0.05, int(inside.sum()))
    return np.clip(image, 0, None).astype(np.float32)


def _scanner_auroc(images: list[np.ndarray], scanner: np.ndarray) -> float:
    """How well the mean and sd of intensity tell the scanner (cross-validated AUROC)."""
    features = np.array([[image.mean(), image.std()] for image in images])
    model = LogisticRegression(max_iter=1000)
    return float(cross_val_score(model, features, scanner, cv=5, scoring="roc_auc").mean())


@pytest.mark.parametrize("method", ["percentile", "zscore"])
def test_standardisation_hides_a_scanners_gain_and_offset(method):
    rng = np.random.default_rng(0)
    scanner = np.arange(200) % 2
    gain, offset = np.where(scanner == 1, 1.8, 1.0), np.where(scanner == 1, 0.15, 0.0)
    raw = [_head(rng) * g + o for g, o in zip(gain, offset, strict=True)]
    assert _scanner_auroc(raw, scanner) > 0.95  # mean and sd give the scanner away
    standard = [standardise(image, method, foreground=head_mask(image)) for image in raw]
    assert _scanner_auroc(standard, scanner) < 0.65  # chance, within cross-validation noise
    assert all(image.min() >= 0.0 and image.max() <= 1.0 for image in standard)


def test_standardisation_is_invariant_to_gain_and_offset():
    image = _head(np.random.default_rng(1))
    brighter = image * 2.5 + 0.3
    for method in ("percentile", "zscore"):
        np.testing.assert_allclose(
            standardise(image, method, foreground=head_mask(image)),
            standardise(brighter, method, foreground=head_mask(brighter)),
            atol=1e-5,
        )


def test_head_mask_ignores_background_noise_and_text():
    rng = np.random.default_rng(2)
    image = np.zeros((80, 120), np.float32)
    image[20:60, 40:90] = 0.5  # the head
    image[2:6, 2:20] = 1.0  # burned-in text in a corner
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    y0, y1, x0, x1 = foreground_box(head_mask(image), margin=0.0)
    assert abs(y0 - 20) <= 2 and abs(y1 - 60) <= 2 and abs(x0 - 40) <= 2 and abs(x1 - 90) <= 2


def test_flat_images_keep_their_extent_and_go_black():
    flat = np.full((10, 12), 0.4, np.float32)
    assert foreground_box(head_mask(flat)) == (0, 10, 0, 12)
    assert not standardise(flat, "percentile").any() and not standardise(flat, "zscore").any()


def test_the_margin_stays_inside_the_image():
    mask = np.zeros((50, 60), bool)
    mask[0:40, 5:60] = True  # the head touches the top and right edges
    assert foreground_box(mask, margin=0.1) == (0, 46, 0, 60)
