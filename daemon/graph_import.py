"""The official MCP memory server's `memory.json` (JSON Lines of entities and relations) as facts.

An entity line `{"type": "entity", "name", "entityType", "observations": [...]}` gives one memory per
observation, "NAME: observation", with metadata `entity` and `entityType`; a relation line
`{"type": "relation", "from", "to", "relationType"}` gives the memory "FROM relationType TO" with those three
as metadata. Kind `fact` unless the import says otherwise. Ids come from the text, so a second import adds
nothing; a bad line is reported by its number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from daemon.transfer import Located, MemoryRecord, encode_record


def _line(where: str, content: str, metadata: dict[str, Any]) -> Located:
    return Located(where=where, line=encode_record(MemoryRecord(content=content, metadata=metadata)))


def _strings(item: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(item.get(key), str) and item[key].strip() for key in keys)


def graph_items(lines: Iterable[str]) -> Iterator[Located]:
    for number, text in enumerate(lines, start=1):
        where = f"line {number}"
        if not text.strip():
            continue
        try:
            item = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            yield Located(where=where, error=f"not JSON: {exc}")
            continue
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "entity":
            observations = item.get("observations", [])
            if not _strings(item, "name") or not isinstance(observations, list):
                yield Located(where=where, error="an entity needs a name and a list of observations")
                continue
            metadata = {"entity": item["name"]}
            if isinstance(item.get("entityType"), str):
                metadata["entityType"] = item["entityType"]
            for index, observation in enumerate(observations, start=1):
                if not isinstance(observation, str):
                    yield Located(where=f"{where}, observation {index}", error="an observation is text")
                elif observation.strip():
                    yield _line(f"{where}, observation {index}", f"{item['name']}: {observation}", metadata)
        elif kind == "relation":
            if not _strings(item, "from", "to", "relationType"):
                yield Located(where=where, error="a relation needs from, to and relationType")
                continue
            yield _line(
                where,
                f"{item['from']} {item['relationType']} {item['to']}",
                {"from": item["from"], "to": item["to"], "relationType": item["relationType"]},
            )
        else:
            yield Located(where=where, error=f"type {kind!r} is not entity or relation")
