"""Kedro datasets this project writes itself."""

from medvit.datasets.checkpoint_file import CheckpointFileDataset
from medvit.datasets.demo_cohort import DemoCohortDataset
from medvit.datasets.nifti_image import NiftiImageDataset
from medvit.datasets.secret import SecretDataset
from medvit.datasets.slice_store import SliceStoreDataset
from medvit.datasets.slice_table import SliceTableDataset
from medvit.datasets.torch_model import TorchModelDataset
from medvit.datasets.yolo_folder import YoloDatasetFolder

__all__ = [
    "CheckpointFileDataset",
    "DemoCohortDataset",
    "NiftiImageDataset",
    "SecretDataset",
    "SliceStoreDataset",
    "SliceTableDataset",
    "TorchModelDataset",
    "YoloDatasetFolder",
]
