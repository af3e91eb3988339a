"""Wiring of the data_preparation pipeline, reusable per cohort by namespace."""

from typing import Literal

from kedro.pipeline import Node, Pipeline, node

from medvit.pipelines.data_preparation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return data_preparation_pipeline()


def ingestion_nodes(settings: str = "params:ingestion") -> list[Node]:
    """Ingest `demo_cohort`, build its slice table and accept or quarantine each slice.

    `settings`: where the ingestion settings come from; the external cohort's are a dataset
    (its plan adopts the training cohort's), so the same steps serve it.
    """
    return [
        node(
            nodes.ingest,
            [settings, "pseudonym_key", "demo_cohort"],
            ["source_path_lookup", "slice_store"],
            name="ingest_sources",
        ),
        node(
            nodes.build_slices,
            ["slice_store", "source_path_lookup", settings],
            ["slice_candidates", "quarantine_records", "ingestion_quarantine"],
            name="build_slice_table",
        ),
        node(
            nodes.accept_slices,
            ["slice_candidates", "quarantine_records", "slice_store", settings],
            ["slices", "ingestion_metrics"],
            name="accept_slices",
        ),
    ]


def data_preparation_pipeline(
    namespace: str | None = None, labels: Literal["tumor", "findings"] = "tumor"
) -> Pipeline:
    """Plan, ingest, gate and split one cohort.

    `labels="findings"`: a multi-label cohort (chest X-rays), whose demo is the chest demo and
    whose splits are stratified by finding, with a split summary. A `namespace` (e.g. "chest")
    prefixes every dataset and parameter (`chest.slices`, `params:chest.ingestion`); the
    pseudonym key and the run's tags stay shared.
    """
    findings = labels == "findings"
    plan = (
        node(
            nodes.plan_chest_cohort,
            ["params:demo_cohort", "params:ingestion"],
            ["demo_cohort", "run_tags"],
            name="plan_cohort",
        )
        if findings
        else node(
            nodes.plan_cohort,
            ["params:demo_cohort", "params:ingestion", "params:splits"],
            ["demo_cohort", "run_tags"],
            name="plan_cohort",
        )
    )
    split = (
        node(
            nodes.split_patients_by_finding,
            ["slices", "params:splits"],
            ["splits", "split_metrics", "split_summary"],
            name="split_patients",
        )
        if findings
        else node(
            nodes.split_patients,
            ["slices", "params:splits"],
            ["splits", "split_metrics"],
            name="split_patients",
        )
    )
    steps = [
        plan,
        *ingestion_nodes(),
        split,
    ]
    if not findings:  # the shortcut audit scores trivial features against the tumour label
        steps.append(
            node(
                nodes.audit_shortcuts,
                ["slices", "splits", "slice_store", "params:audit"],
                ["shortcut_audit", "audit_metrics"],
                name="audit_shortcuts",
            )
        )
    if namespace is None:
        return Pipeline(steps, tags="data_preparation")
    return Pipeline(
        steps,
        namespace=namespace,
        inputs={"pseudonym_key"},
        outputs={"run_tags"},
        tags="data_preparation",
    )
