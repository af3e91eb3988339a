"""Keyed pseudonyms: the only form in which patient and study identifiers leave ingestion.

A keyed HMAC (not a plain hash) because MRNs and UIDs are guessable: without the key nobody can
rebuild the mapping by hashing candidate identifiers, while the key holder can re-identify a
patient for clinical follow-up.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

KEY_ENV_VAR = "MEDVIT_PSEUDONYM_KEY"
DEMO_KEY = "medvit-demo-key-NOT-FOR-PRODUCTION"

logger = logging.getLogger(__name__)


def resolve_key(configured: str | None) -> str:
    """Key from credentials, else the environment, else the documented demo key (with a warning)."""
    key = configured or os.environ.get(KEY_ENV_VAR)
    if key:
        return key
    logger.warning(
        "No pseudonym key configured (credentials 'pseudonym.key' or $%s): using the demo key, "
        "which is public and NOT for production data.",
        KEY_ENV_VAR,
    )
    return DEMO_KEY


class Pseudonymiser:
    """Short stable pseudonyms per identifier kind, so a study never collides with a patient."""

    PREFIXES = {"patient": "P", "study": "S", "series": "R", "instance": "I"}

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, kind: str, raw: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{raw}".encode(), hashlib.sha256).hexdigest()
        return f"{self.PREFIXES[kind]}-{digest[:16]}"
