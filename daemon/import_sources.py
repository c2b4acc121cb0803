"""What `memos import` reads: a source (a file, a folder or standard input) in one of the known formats, named
or recognised by its shape, turned into import items for `import_lines`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from daemon.chat_exports import chatgpt_items, claude_items
from daemon.errors import InvalidInput
from daemon.graph_import import graph_items
from daemon.import_formats import markdown_lines, transcript_lines
from daemon.transfer import ImportDefaults, Located

FORMATS = ("jsonl", "transcript", "markdown", "chatgpt", "claude", "mcp-memory")
# The kind of memory each format stores unless --kind (or a JSONL line) says otherwise.
DEFAULT_KIND = {"transcript": "message", "markdown": "note", "chatgpt": "message", "claude": "message",
                "mcp-memory": "fact"}  # fmt: skip
_JSON_LIST = ("chatgpt", "claude", "transcript")


def _shape_of_list(data: list[Any]) -> str | None:
    first = next((item for item in data if isinstance(item, dict)), None)
    if first is None:
        return "transcript" if not data else None
    if "mapping" in first:
        return "chatgpt"
    if "chat_messages" in first:
        return "claude"
    if "content" in first and ("role" in first or "speaker" in first):
        return "transcript"
    return None


def _shape_of_line(line: str) -> str:
    try:
        item = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return "jsonl"  # its error is reported by line number
    if isinstance(item, dict) and item.get("type") in ("entity", "relation"):
        return "mcp-memory"
    return "jsonl"


class Source:
    """An opened source: its format (given, or recognised when `form` is None) and its items. A context
    manager: leaving it closes the file."""

    def __init__(self, name: str, form: str | None, stdin: IO[str]) -> None:
        self.name, self.detected = name, form is None
        self._path = Path(name)
        self._data: Any = None
        self._lines: Iterable[str] = ()
        self._handle: IO[str] | None = None
        if name != "-" and self._path.is_dir():
            self.form = form or "markdown"
            return
        if form in ("transcript", "markdown"):
            if name == "-":
                raise InvalidInput(
                    f"--format {form} reads a {'file' if form == 'transcript' else 'folder'}, not -"
                )
            self.form = form
            return
        handle = stdin if name == "-" else self._open()
        try:
            self._read(handle, form)
        except BaseException:
            self.__exit__()
            raise

    def _read(self, handle: IO[str], form: str | None) -> None:
        name = self.name
        first = next((line for line in handle if line.strip()), "")
        self.form = form or _shape_of_line(first)
        if form in _JSON_LIST or (form is None and first.lstrip().startswith("[")):
            self._data = self._decode(first + handle.read())
            shape = _shape_of_list(self._data) if isinstance(self._data, list) else None
            found = form or shape
            if found is None or (found == "transcript" and name == "-"):
                raise InvalidInput(
                    f"{name}: cannot tell which export this is; give --format ({', '.join(FORMATS)})"
                )
            self.form = found
        self._lines = itertools.chain([first], handle)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def _open(self) -> IO[str]:
        try:
            self._handle = self._path.open(encoding="utf-8")
            return self._handle
        except OSError as exc:
            raise InvalidInput(f"cannot read {self._path}: {exc.strerror}") from exc

    def _decode(self, text: str) -> Any:
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{self.name}: not a JSON document: {exc}") from None

    def items(self, defaults: ImportDefaults) -> Iterator[str | Located]:
        if self.form == "markdown":
            yield from markdown_lines(self._path)
        elif self.form == "transcript":
            yield from transcript_lines(self._path)
        elif self.form == "chatgpt":
            yield from chatgpt_items(self._data, defaults)
        elif self.form == "claude":
            yield from claude_items(self._data, defaults)
        elif self.form == "mcp-memory":
            yield from graph_items(self._lines)
        else:
            yield from self._lines
