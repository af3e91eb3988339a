"""Kedro dataset that hands a node a secret from credentials without it becoming a parameter.

kedro-mlflow logs every `params:` input of a node to MLflow, so a key passed as a parameter would
end up in the tracking server; a dataset input is never logged.
"""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError


class SecretDataset(AbstractDataset[None, str | None]):
    """Loads `credentials[field]`, or None when no credentials are configured."""

    def __init__(
        self,
        field: str = "key",
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._value = (credentials or {}).get(field)
        self._field = field
        self.metadata = metadata

    def load(self) -> str | None:
        return self._value

    def save(self, data: None) -> None:
        raise DatasetError("SecretDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"field": self._field, "configured": self._value is not None}
