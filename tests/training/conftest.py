"""Fixtures over `synthetic` (the tests' directory is on sys.path: tests are not a package)."""

from __future__ import annotations

import pytest
from synthetic import bright_square_images, datasets, tiny_cnn


@pytest.fixture
def data():
    return datasets()


@pytest.fixture
def make_cnn():
    return tiny_cnn


@pytest.fixture
def make_images():
    return bright_square_images
