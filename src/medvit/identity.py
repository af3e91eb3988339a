"""One identity for everything a rerun must recognise: training runs, tables, exports, weights.

A digest is only worth something if it is canonical: the same content gives the same digest
whatever container holds it (a list or a numpy array in a parquet cell, a numpy or a Python int,
dict keys in any order, a pydantic model or its dump). Everything that decides whether work can be
reused (resume a run, join two tables, keep an exported file) hashes through this module, so two
callers never disagree about what "the same" means.

Identities are kept as named parts (`{"config": …, "data": …, "teacher": …}`) rather than one
opaque hash, so that when a rerun cannot reuse earlier work it can say which part changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

DIGEST_CHARS = 16
Identity = dict[str, str]


def canonical(value: Any) -> Any:
    """A JSON-ready value equal for equal content, whatever Python or numpy type carries it."""
    if isinstance(value, BaseModel):
        return canonical(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return canonical(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, np.ndarray | torch.Tensor):
        return canonical(value.tolist())
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(item) for item in value), key=repr)
    if isinstance(value, np.generic):
        return canonical(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return int(value) if value.is_integer() else value
    if isinstance(value, PurePath):
        return str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str | int | bool):
        return value
    return str(value)


def digest(*parts: Any) -> str:
    """A short, stable digest of any canonicalisable parts."""
    text = json.dumps(canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _canonical_column(column: pd.Series) -> pd.Series:
    """Cells as canonical JSON text, so lists, arrays and scalars of equal content hash alike."""
    return column.map(lambda cell: json.dumps(canonical(cell), separators=(",", ":")))


def table_digest(table: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Content hash of a table (column names, row order and values), stable across parquet.

    Every column is hashed through canonical cell text: a column of numpy arrays read back from
    parquet and the lists it was written from give the same digest, and so do int64 and Int64.
    """
    selected = table[columns] if columns is not None else table
    hasher = hashlib.sha256(json.dumps([str(c) for c in selected.columns]).encode())
    for name in selected.columns:
        text = _canonical_column(selected[name].astype(object))
        hasher.update(pd.util.hash_pandas_object(text, index=False).to_numpy().tobytes())
    return hasher.hexdigest()[:DIGEST_CHARS]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Digest of model weights (a state dict): names, dtypes, shapes and every byte."""
    hasher = hashlib.blake2b(digest_size=DIGEST_CHARS // 2)
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        hasher.update(f"{name}:{tensor.dtype}:{tuple(state[name].shape)}".encode())
        hasher.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return hasher.hexdigest()


def file_digest(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Digest of a file's bytes, read in chunks."""
    hasher = hashlib.blake2b(digest_size=DIGEST_CHARS // 2)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            hasher.update(chunk)
    return hasher.hexdigest()


def identity(**parts: Any) -> Identity:
    """Named parts, each digested: what a checkpoint or manifest stores to recognise its run."""
    return {name: digest(value) for name, value in sorted(parts.items())}


def combined(ident: Identity) -> str:
    """One digest for a whole identity."""
    return digest(ident)


def changed_parts(previous: Mapping[str, str] | None, current: Identity) -> list[str]:
    """Names of the parts that differ (added or removed parts count as changed)."""
    if previous is None:
        return sorted(current)
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def describe_change(previous: Mapping[str, str] | None, current: Identity) -> str:
    """One line for the log: why earlier work is not reused."""
    if previous is None:
        return "no earlier run"
    changed = changed_parts(previous, current)
    return "changed: " + ", ".join(changed) if changed else "unchanged"
