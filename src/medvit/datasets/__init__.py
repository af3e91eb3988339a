"""Kedro datasets this project writes itself."""

from medvit.datasets.demo_cohort import DemoCohortDataset
from medvit.datasets.secret import SecretDataset
from medvit.datasets.slice_store import SliceStoreDataset

__all__ = ["DemoCohortDataset", "SecretDataset", "SliceStoreDataset"]
