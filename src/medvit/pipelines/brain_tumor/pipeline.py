"""Composition only: Kedro loads just the requested pipeline's package, so this is a real one."""

from kedro.pipeline import Pipeline

from medvit.pipelines import data_preparation, detection, distillation, segmentation


def create_pipeline(**kwargs) -> Pipeline:
    return (
        data_preparation.create_pipeline()
        + detection.create_pipeline()
        + distillation.create_pipeline()
        + segmentation.create_pipeline()  # after detection: it is prompted by the detector's boxes
    )
