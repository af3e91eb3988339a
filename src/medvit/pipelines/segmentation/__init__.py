"""Segmentation pipeline: DB-SAM and its SAM baseline, prompted by true and detector boxes."""

from medvit.pipelines.segmentation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
