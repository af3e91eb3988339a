"""Per-epoch training state on disk, written atomically, and the identity it belongs to.

`last.pt` holds everything needed to continue (weights, optimiser, scheduler, early-stopping
state, history), `best.pt` the weights of the best epoch; both carry the run's identity, kept as
named parts so that a rerun that cannot use them says which part changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medvit.identity import Identity, identity, state_digest
from medvit.training.config import TrainConfig

LAST, BEST = "last.pt", "best.pt"

# Settings that change how a run is watched or where it is stored, never what it learns.
NOT_IDENTITY = frozenset({"progress", "num_workers", "checkpoint_dir", "resume", "reuse_finished"})


def run_identity(
    model: nn.Module,
    config: TrainConfig,
    n_train: int,
    n_val: int,
    sample_weights: np.ndarray | None,
    parts: Mapping[str, Any],
) -> Identity:
    """The caller's parts (data, task, teacher, ...) plus what the loop itself is given.

    The initial weights stand for the architecture, its size-dependent shapes, a pretrained or
    fine-tuned starting point and the initialisation seed at once, whatever produced them.
    """
    own = {
        "training": config.model_dump(exclude=set(NOT_IDENTITY)),
        "initial_weights": {
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "state": state_digest(model.state_dict()),
        },
        "samples": {"train": n_train, "val": n_val, "sample_weights": sample_weights},
    }
    clash = sorted(set(own) & set(parts))
    if clash:
        raise ValueError(
            f"identity parts {clash} are computed by the training loop itself; rename the"
            " caller's parts"
        )
    return identity(**own, **parts)


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary name and rename: a kill mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def remove_states(folder: Path) -> None:
    """Forget an earlier run, so that none of its files is mixed into a fresh one."""
    for name in (LAST, BEST):
        (folder / name).unlink(missing_ok=True)
