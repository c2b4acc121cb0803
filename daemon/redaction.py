"""Secrets masked on the way in: well-known credential shapes become `[REDACTED:kind]`.

Off by default; `[redaction] enabled` turns it on for every cube and a cube's `redact_secrets` setting (a
policy file's `[[cube]]` table or `cube_configure`) turns it on or off for that cube. It runs on the write
path before anything is stored, embedded or indexed (add, batch, supersede, update, import), over the
content, the tags and every string in the metadata, so a secret never reaches the FTS index, the vectors,
the version history, exports, backups or context packs. The same patterns keep token material out of the
logs (`LOG_PATTERNS`).

A pattern with a group named `secret` masks only that group (`password=` stays, its value goes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import partial
from typing import Any

import msgspec

from daemon.models import MemoryChanges, NewMemory

# (kind, regex), tried in this order: the longer, more specific shapes first.
BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    # memos' own bearer tokens: memos_ and 43 url-safe characters with a digit or a capital somewhere, which a
    # snake_case identifier lacks (a token has neither about once in 10^15; a digit alone missed 1 in 2,500).
    # Before the other keys: a random token may hold another key's shape after a hyphen ("-sk-", "-ghp_"),
    # and masking that first left the token's head in clear.
    ("memos_token", r"\bmemos_(?=[A-Za-z0-9_-]*[0-9A-Z])[A-Za-z0-9_-]{40,}"),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    # A digit somewhere: "sk-" before a run of hyphenated words is prose, not a key.
    ("openai_key", r"\bsk-(?=[A-Za-z_-]*[0-9])(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "aws_secret_key",
        r"(?i)\baws_?secret_?(?:access_?)?key\b[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})",
    ),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("bearer_token", r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)"),
    (
        "password",
        r"(?i)\b(?:password|passwd|pwd|passphrase|secret[_-]?key|client[_-]?secret|api[_-]?key|access[_-]?token"
        r"|auth[_-]?token)\b"
        r"[\"']?\s*[:=]\s*(?P<secret>\"[^\"\n]+\"|'[^'\n]+'|[^\s,;\"']+)",
    ),
)

# In log lines also the SHA-256 of a token (what the agents table stores), or any 64-hex digest.
LOG_PATTERNS: tuple[tuple[str, str], ...] = (*BUILTIN_PATTERNS, ("hash", r"\b[0-9a-f]{64}\b"))


class Redactor:
    """Masks secrets in text and in JSON-like values; pure, safe to share."""

    def __init__(
        self, extra: Iterable[str] = (), builtin: Iterable[tuple[str, str]] = BUILTIN_PATTERNS
    ) -> None:
        self._patterns = [(kind, re.compile(regex)) for kind, regex in builtin]
        self._patterns += [("custom", re.compile(regex)) for regex in extra]  # checked by the config loader

    def text(self, text: str) -> str:
        for kind, pattern in self._patterns:
            if pattern.search(text) is None:
                continue
            mask = f"[REDACTED:{kind}]"
            if "secret" in pattern.groupindex:
                text = pattern.sub(partial(_mask_group, mask=mask), text)
            else:
                text = pattern.sub(mask, text)
        return text

    def value(self, value: Any) -> Any:
        """Every string inside a JSON-like value (keys stay: they name, they do not hold, a secret)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def new_memory(self, item: NewMemory) -> NewMemory:
        return msgspec.structs.replace(
            item,
            content=self.text(item.content),
            tags=[self.text(tag) for tag in item.tags],
            metadata=self.value(item.metadata),
        )

    def changes(self, changes: MemoryChanges) -> MemoryChanges:
        return msgspec.structs.replace(
            changes,
            content=self.text(changes.content) if changes.content is not None else None,
            tags=[self.text(tag) for tag in changes.tags] if changes.tags is not None else None,
            metadata=self.value(changes.metadata) if changes.metadata is not None else None,
        )


def _mask_group(match: re.Match[str], *, mask: str) -> str:
    """The match with only its `secret` group masked."""
    offset = match.start()
    start, end = match.span("secret")
    return match.group(0)[: start - offset] + mask + match.group(0)[end - offset :]
