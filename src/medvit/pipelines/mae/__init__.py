"""MAE pretraining, a template for any slice table; `mae` runs it on the brain slices."""

from medvit.pipelines.mae.pipeline import create_pipeline, mae_pretraining_pipeline

__all__ = ["create_pipeline", "mae_pretraining_pipeline"]
