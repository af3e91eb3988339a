"""Keyed pseudonyms: the only form in which patient, study and file identifiers leave ingestion.

A keyed HMAC (not a plain hash) because MRNs, UIDs and file names are guessable: without the key
nobody can rebuild the mapping by hashing candidate identifiers, while the key holder can
re-identify a patient for clinical follow-up. For the same reason the public demo key is only
accepted for the synthetic demo cohort.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Iterable
from typing import Protocol

KEY_ENV_VAR = "MEDVIT_PSEUDONYM_KEY"
DEMO_KEY = "medvit-demo-key-NOT-FOR-PRODUCTION"

logger = logging.getLogger(__name__)


class PseudonymKeyError(ValueError):
    """Real data would be pseudonymised with the public demo key: reversible by anyone."""


class _Named(Protocol):
    type: str
    name: str


def resolve_key(configured: str | None, sources: Iterable[_Named]) -> str:
    """Key from credentials, else the environment; the public demo key only for the demo cohort."""
    key = configured or os.environ.get(KEY_ENV_VAR) or DEMO_KEY
    if key != DEMO_KEY:
        return key
    real = [source.name for source in sources if source.type != "demo"]
    if real:
        raise PseudonymKeyError(
            f"source(s) {real} are not the demo cohort, but no pseudonym key is set, so the "
            "public demo key would be used and anyone could re-identify these patients. Set a "
            "long random secret in conf/local/credentials.yml (`pseudonym: {key: ...}`) or in "
            f"${KEY_ENV_VAR}, e.g. from `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`, and keep it: the same key gives the same "
            "pseudonyms on the next run."
        )
    logger.warning(
        "No pseudonym key configured (credentials 'pseudonym.key' or $%s): using the demo key, "
        "which is public and accepted only for the demo cohort.",
        KEY_ENV_VAR,
    )
    return key


class Pseudonymiser:
    """Short stable pseudonyms per identifier kind, so a study never collides with a patient."""

    PREFIXES = {"patient": "P", "study": "S", "series": "R", "instance": "I", "file": "F"}

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, kind: str, raw: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{raw}".encode(), hashlib.sha256).hexdigest()
        return f"{self.PREFIXES[kind]}-{digest[:16]}"

    def file(self, source: str, path: str) -> str:
        """The opaque key that stands for one input file downstream of ingestion."""
        return self("file", f"{source}/{path}")
