"""Pipelines are discoverable the way kedro-viz discovers them: Kedro's project snapshot."""

from __future__ import annotations

from pathlib import Path

from kedro.inspection import get_project_snapshot

PROJECT = Path(__file__).resolve().parents[2]


def test_pipelines_and_tags_are_discoverable():
    snapshot = get_project_snapshot(project_path=PROJECT)
    pipelines = {p.name: p for p in snapshot.pipelines}
    assert {"__default__", "data_preparation"} <= set(pipelines)
    nodes = {n.name: n for n in pipelines["data_preparation"].nodes}
    assert {"ingest_sources", "split_patients"} <= set(nodes)
    assert all("data_preparation" in n.tags for n in nodes.values())
