"""A ResNet teacher fine-tuned on slices, a DeiT student distilled from it, both evaluated."""

from medvit.pipelines.distillation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
