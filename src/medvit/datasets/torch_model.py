"""Kedro dataset for a medvit model: its spec and weights, versioned, rebuilt on load.

Weights are stored as a plain state dict beside the model spec (timm architecture, classes, image
size) rather than a pickled module, so a checkpoint loads with `weights_only=True`, survives code
refactors and can be inspected without medvit installed.
"""

from __future__ import annotations

import torch
from torch import nn

from medvit.datasets.versioned_file import VersionedFileDataset
from medvit.models import model_from_payload, model_payload


class TorchModelDataset(VersionedFileDataset[nn.Module, nn.Module]):
    """Saves a module built by `medvit.models` to `filepath`; loads it back in eval mode on CPU."""

    def load(self) -> nn.Module:
        payload = torch.load(self._load_path(), map_location="cpu", weights_only=True)
        return model_from_payload(payload)

    def save(self, data: nn.Module) -> None:
        torch.save(model_payload(data), self._save_path())
