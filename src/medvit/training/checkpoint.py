"""Per-epoch training state on disk, written atomically, so an interrupted run resumes.

`last.pt` holds everything needed to continue (weights, optimiser, scheduler, early-stopping
state, history); `best.pt` the weights of the best epoch. A checkpoint is only resumed under the
fingerprint it was written with: a changed config or dataset starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

LAST, BEST = "last.pt", "best.pt"


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-serialisable parts (config dump, model name, data identity)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary name and rename: a kill mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_state(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The saved state, or None when absent or written for a different run."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        return None
    return state
