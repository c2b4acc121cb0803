"""What makes two memories "the same text": case and runs of white space do not count."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(content: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", content).casefold().split())


def content_hash(content: str) -> str:
    return hashlib.sha256(normalise(content).encode("utf-8")).hexdigest()[:32]
