"""Kedro dataset for a dict of tensors and plain values (an MAE checkpoint), loaded safely.

Unlike `TorchModelDataset` it rebuilds nothing: the payload is read back as it was written, with
`weights_only=True`, so a checkpoint of a model medvit does not build by spec (the masked
autoencoder: encoder, decoder and the settings to rebuild it) still loads without pickled code.
"""

from __future__ import annotations

from typing import Any

import torch

from medvit.datasets.versioned_file import VersionedFileDataset


class TorchPayloadDataset(VersionedFileDataset[dict[str, Any], dict[str, Any]]):
    def load(self) -> dict[str, Any]:
        return torch.load(self._load_path(), map_location="cpu", weights_only=True)

    def save(self, data: dict[str, Any]) -> None:
        torch.save(data, self._save_path())
