"""The brain-tumour study end to end: data preparation, detection, distillation, evaluation."""

from medvit.pipelines.brain_tumor.pipeline import create_pipeline

__all__ = ["create_pipeline"]
