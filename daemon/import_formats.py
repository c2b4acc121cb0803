"""Other sources turned into import lines: conversation transcripts and folders of Markdown notes.

Each produces JSONL lines in the export format, so they go through the same validation, idempotency and
reporting as a JSONL import. Ids come from the content, so importing the same source twice adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from daemon.errors import InvalidInput
from daemon.transfer import MemoryRecord, encode_record

_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)


class Turn(msgspec.Struct, kw_only=True):
    content: str
    role: str | None = None
    speaker: str | None = None
    timestamp: str | None = None


def transcript_lines(path: Path) -> Iterator[str]:
    """A JSON list of `{role|speaker, content, timestamp}` as `message` memories, in order."""
    try:
        turns = msgspec.json.decode(path.read_bytes(), type=list[Turn])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(
            f"{path}: not a transcript (a JSON list of {{role, content, timestamp}}): {exc}"
        ) from None
    for number, turn in enumerate(turns):
        speaker = turn.role or turn.speaker
        metadata: dict[str, Any] = {"session": path.stem, "turn": number}
        if speaker:
            metadata["role"] = speaker
        yield encode_record(
            MemoryRecord(content=turn.content, kind="message", occurred_at=turn.timestamp, metadata=metadata)
        )


def markdown_lines(folder: Path) -> Iterator[str]:
    """Each `*.md` file under the folder as one memory (kind from the import's defaults, `note` usually)."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder of Markdown notes")
    for path in sorted(folder.rglob("*.md")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        heading = _HEADING.search(text)
        metadata: dict[str, Any] = {"path": str(path.relative_to(folder))}
        if heading:
            metadata["title"] = heading.group(1).strip()
        yield encode_record(MemoryRecord(content=text, metadata=metadata))
