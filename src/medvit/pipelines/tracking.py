"""Shape values the way kedro-mlflow's metrics datasets log them."""

from __future__ import annotations

from collections.abc import Mapping


def metric_items(values: Mapping[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """`{name: value}` → `{name: {"value": v, "step": step}}` for MlflowMetricsHistoryDataset."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}
