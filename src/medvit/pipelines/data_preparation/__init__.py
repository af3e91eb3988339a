"""Demo cohort, ingestion into the slice table, and patient-level splits."""

from medvit.pipelines.data_preparation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
