"""Wiring of the data_preparation pipeline."""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.data_preparation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(nodes.demo_cohort_spec, "params:demo_cohort", "demo_cohort", name="demo_cohort"),
            node(
                nodes.ingest,
                ["params:ingestion", "pseudonym_key", "demo_cohort"],
                "slice_store",
                name="ingest_sources",
            ),
            node(
                nodes.build_slices,
                "slice_store",
                ["slice_candidates", "ingestion_quarantine"],
                name="build_slice_table",
            ),
            node(
                nodes.accept_slices,
                ["slice_candidates", "ingestion_quarantine", "slice_store", "params:ingestion"],
                ["slices", "ingestion_metrics"],
                name="accept_slices",
            ),
            node(
                nodes.split_patients,
                ["slices", "params:splits"],
                ["splits", "split_metrics"],
                name="split_patients",
            ),
        ],
        tags="data_preparation",
    )
