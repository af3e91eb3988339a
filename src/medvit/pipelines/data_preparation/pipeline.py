"""Wiring of the data_preparation pipeline."""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.data_preparation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.plan_cohort,
                ["params:demo_cohort", "params:ingestion", "params:splits"],
                ["demo_cohort", "run_tags"],
                name="plan_cohort",
            ),
            node(
                nodes.ingest,
                ["params:ingestion", "pseudonym_key", "demo_cohort"],
                ["source_path_lookup", "slice_store"],
                name="ingest_sources",
            ),
            node(
                nodes.build_slices,
                ["slice_store", "source_path_lookup", "params:ingestion"],
                ["slice_candidates", "quarantine_records", "ingestion_quarantine"],
                name="build_slice_table",
            ),
            node(
                nodes.accept_slices,
                ["slice_candidates", "quarantine_records", "slice_store", "params:ingestion"],
                ["slices", "ingestion_metrics"],
                name="accept_slices",
            ),
            node(
                nodes.split_patients,
                ["slices", "params:splits"],
                ["splits", "split_metrics"],
                name="split_patients",
            ),
            node(
                nodes.audit_shortcuts,
                ["slices", "splits", "slice_store", "params:audit"],
                ["shortcut_audit", "audit_metrics"],
                name="audit_shortcuts",
            ),
        ],
        tags="data_preparation",
    )
