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
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

DIGEST_CHARS = 16
Identity = dict[str, str]
_PLAIN = frozenset({str, int, bool, type(None)})
# Characters json.dumps writes as they are (printable ASCII but " and \): no escaping needed.
_VERBATIM_JSON = r"[ !#-\[\]-~]*"


def canonical(value: Any) -> Any:
    """A JSON-ready value equal for equal content, whatever Python or numpy type carries it."""
    kind = type(value)  # exact types first: most table cells, without the costlier checks below
    if kind in _PLAIN:
        return value
    if kind is float and not math.isnan(value):
        return int(value) if value.is_integer() else value
    if kind is list:
        return [canonical(item) for item in value]
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
    """Cells as canonical JSON text, so lists, arrays and scalars of equal content hash alike.

    Integer, boolean and plain-text columns take vectorised paths that give the very text of the
    per-cell path: a 100k-row slice table is fingerprinted by every node that joins it. A missing
    cell of a text column is null however pandas holds it (None in memory, NaN once read back).
    """
    missing = column.isna()
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.map({True: "true", False: "false"}).astype(object).where(~missing, "null")
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.astype(str).astype(object).where(~missing, "null")
    cells = pd.Series(column.astype(object).to_numpy(), dtype=object)
    kinds = cells.map(type)
    strings = cells[kinds.isin([str])].astype("string")
    plain = strings.index[strings.str.fullmatch(_VERBATIM_JSON).to_numpy(dtype=bool)]
    text = pd.Series(None, index=cells.index, dtype=object)
    text[plain] = '"' + cells[plain] + '"'
    absent = kinds.isin([type(None)])
    if isinstance(column.dtype, pd.StringDtype):  # text read back from parquet: None became NaN
        absent |= missing.to_numpy()
    text[absent.to_numpy()] = "null"
    rest = text.isna()
    text[rest] = cells[rest].map(lambda cell: json.dumps(canonical(cell), separators=(",", ":")))
    return text


def table_digest(table: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Content hash of a table (column names, row order and values), stable across parquet.

    Every column is hashed through canonical cell text: a column of numpy arrays read back from
    parquet and the lists it was written from give the same digest, and so do int64 and Int64.
    """
    selected = table[columns] if columns is not None else table
    hasher = hashlib.sha256(json.dumps([str(c) for c in selected.columns]).encode())
    for name in selected.columns:
        text = _canonical_column(selected[name])
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
    with Path(path).open("rb") as handle:
        return _chunks_digest(iter(lambda: handle.read(chunk_bytes), b""))


def content_digest(*chunks: bytes | str | np.ndarray) -> str:
    """Digest of raw content (an image's pixels, a label's text), where no canonical form is
    needed and building one would cost far more than hashing the bytes."""
    return _chunks_digest(chunks)


def rows_digest(array: np.ndarray, rows: np.ndarray, chunk_rows: int = 4096) -> str:
    """Digest of the rows of a (memory-mapped) array that a model reads, chunk by chunk: the
    pixels count in a run's identity without the store being loaded into memory."""
    return _chunks_digest(
        array[rows[start : start + chunk_rows]] for start in range(0, len(rows), chunk_rows)
    )


def _chunks_digest(chunks: Iterable[bytes | str | np.ndarray]) -> str:
    """blake2b over chunks consumed one at a time. Arrays count with their dtype and shape, and
    every chunk with its length, so content cannot slide from one chunk into the next."""
    hasher = hashlib.blake2b(digest_size=DIGEST_CHARS // 2)
    for chunk in chunks:
        if isinstance(chunk, np.ndarray):
            hasher.update(f"{chunk.dtype.str}:{chunk.shape}".encode())
            data = np.ascontiguousarray(chunk).tobytes()
        else:
            data = chunk.encode() if isinstance(chunk, str) else chunk
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def identity(**parts: Any) -> Identity:
    """Named parts, each digested: what a checkpoint or manifest stores to recognise its run."""
    return {name: digest(value) for name, value in sorted(parts.items())}


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
