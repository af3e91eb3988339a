"""YOLOv8 tumour detection: export, training, box metrics, slice predictions, PTP evaluation."""

from medvit.pipelines.detection.pipeline import create_pipeline

__all__ = ["create_pipeline"]
