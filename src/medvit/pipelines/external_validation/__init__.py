"""External validation: trained models judged on another cohort, thresholds unchanged."""

from medvit.pipelines.external_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
