"""Pipelines are discoverable the way kedro-viz discovers them: Kedro's project snapshot, node
namespaces (what a collapsed modular pipeline hides) and the catalog's layers (its bands)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from kedro.inspection import get_project_snapshot
from kedro.io import CatalogConfigResolver
from kedro.pipeline import Node

from medvit.pipelines import brain_tumor
from medvit.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

PROJECT = Path(__file__).resolve().parents[2]
# Kedro's data engineering convention, in the order data flows.
LAYERS = (
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
)
MODELS = ("detector", "teacher", "student")


def test_pipelines_and_tags_are_discoverable():
    snapshot = get_project_snapshot(project_path=PROJECT)
    pipelines = {p.name: p for p in snapshot.pipelines}
    assert {"__default__", "data_preparation"} <= set(pipelines)
    nodes = {n.name: n for n in pipelines["data_preparation"].nodes}
    assert {"ingest_sources", "split_patients"} <= set(nodes)
    assert all("data_preparation" in n.tags for n in nodes.values())


def test_every_node_is_in_a_namespace_that_owns_its_dotted_datasets(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(Node, "__dotted_dataset_name_warned__", False, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = brain_tumor.create_pipeline()
    assert not [w.message for w in caught if "contain '.'" in str(w.message)]

    loose = [n.name for n in pipeline.nodes if not n.namespace and "data_preparation" not in n.tags]
    assert not loose
    for model in MODELS:
        names = {n.name for n in pipeline.only_nodes_with_namespaces([model]).nodes}
        assert {f"{model}.train", f"{model}.predict_slices", f"{model}.write_report"} <= names
    # A dotted dataset is written and read only inside its namespace, so collapsing the namespace
    # in kedro-viz hides it (unless it is a final output, which stays visible).
    for dataset in pipeline.datasets():
        if "." in dataset and not dataset.startswith("params:"):
            users = {n.namespace for n in pipeline.nodes if dataset in {*n.inputs, *n.outputs}}
            assert users == {dataset.split(".")[0]}, dataset


def test_every_dataset_has_a_layer_and_data_flows_to_later_layers():
    loader = CONFIG_LOADER_CLASS(conf_source=str(PROJECT / "conf"), **CONFIG_LOADER_ARGS)
    resolver = CatalogConfigResolver(loader["catalog"], loader["credentials"])
    pipeline = brain_tumor.create_pipeline()
    layers = {
        dataset: resolver.resolve_pattern(dataset)
        .get("metadata", {})
        .get("kedro-viz", {})
        .get("layer")
        for dataset in pipeline.datasets()
        if not dataset.startswith("params:")
    }
    assert not [dataset for dataset, layer in layers.items() if layer not in LAYERS]
    backwards = [
        f"{node.name}: {source} ({layers[source]}) -> {target} ({layers[target]})"
        for node in pipeline.nodes
        for source in node.inputs
        if not source.startswith("params:")
        for target in node.outputs
        if LAYERS.index(layers[source]) > LAYERS.index(layers[target])
    ]
    assert not backwards
