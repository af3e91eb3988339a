"""Patient-to-patient (PTP) and slice-level evaluation, reused once per model by namespace."""

from medvit.pipelines.evaluation.pipeline import create_pipeline, evaluation_pipeline

__all__ = ["create_pipeline", "evaluation_pipeline"]
