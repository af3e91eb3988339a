"""The chest X-ray study end to end: data, MAE pretraining, fine-tuning, multi-label evaluation."""

from medvit.pipelines.chest_xray.pipeline import create_pipeline

__all__ = ["create_pipeline"]
