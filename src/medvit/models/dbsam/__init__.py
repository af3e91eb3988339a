"""DB-SAM and the decoder-only SAM baseline: box-prompted tumour segmenters on ultralytics' SAM."""

from medvit.models.dbsam.model import (
    DBSAM,
    SegmenterKind,
    build_segmenter,
    parameter_counts,
    segmenter_from_payload,
    segmenter_payload,
)
from medvit.models.dbsam.sam import ENCODER_SIZES, PromptedSAM, SegmenterConfig
from medvit.models.dbsam.task import SegmentationTask

__all__ = [
    "DBSAM",
    "ENCODER_SIZES",
    "PromptedSAM",
    "SegmentationTask",
    "SegmenterConfig",
    "SegmenterKind",
    "build_segmenter",
    "parameter_counts",
    "segmenter_from_payload",
    "segmenter_payload",
]
