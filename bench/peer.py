"""The official MCP memory server (`@modelcontextprotocol/server-memory`), driven through its own tools.

It is started with `npx -y` over stdio, with its JSONL file in a temporary directory, and spoken to with the
MCP Python SDK's own client, the same client the benchmarks use for memos:

    async with OfficialMemoryServer() as peer:
        await peer.load_turns(turns)
        names = await peer.search("what did I say about my sister")

The server keeps no state in memory: every call reads the whole file, and every write rewrites it. Its
search is a case-insensitive substring match of the whole query against names, types and observations,
returned in file order.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.turns import Turn
from daemon.lexical import query_words

__all__ = ["PACKAGE", "VERSION", "OfficialMemoryServer", "PeerError", "PeerUnavailable", "Turn"]

PACKAGE = "@modelcontextprotocol/server-memory"
VERSION = "2026.8.31"  # pinned: the newest on npm when the comparison was written
CHUNK = 500  # entities per create_entities call, as memos' benchmarks batch memory_add_batch
NPX_TIMEOUT_S = 300  # a first run downloads the package and its dependencies


class PeerError(RuntimeError):
    """The official server answered a tool call with an error."""


class PeerUnavailable(RuntimeError):
    """The official server could not be started: no Node.js/npx, no network for npx, or an unknown version."""


class OfficialMemoryServer:
    """One official memory server process over stdio; an async context manager."""

    version: str  # the npm package version actually run
    reported_version: str  # what its serverInfo says: a constant in its source, behind the npm version
    startup_s: float  # from spawning npx (package already cached) to the end of the MCP handshake
    memory_file: Path  # the server's JSONL file, in a temporary directory removed on exit

    def __init__(self, version: str = VERSION, *, via_npx: bool = True) -> None:
        """`via_npx=False` runs the cached package with node directly, without npx's registry check."""
        self.spec = f"{PACKAGE}@{version}"
        self._via_npx = via_npx
        self._stack = AsyncExitStack()
        self._client: Client | None = None

    async def __aenter__(self) -> OfficialMemoryServer:
        directory = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="memos-peer-")))
        self.memory_file = directory / "memory.jsonl"
        self._errlog = directory / "server-stderr.log"
        try:
            self.version, entry = await _install(self.spec)
            command, args = ("npx", ["-y", self.spec]) if self._via_npx else ("node", [str(entry)])
            params = StdioServerParameters(
                command=command, args=args, env={"MEMORY_FILE_PATH": str(self.memory_file)}
            )
            errlog = self._stack.enter_context(self._errlog.open("w", encoding="utf-8"))
            started = time.perf_counter()
            try:
                self._client = await self._stack.enter_async_context(
                    Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None)
                )
            except Exception as exc:  # the SDK reports a dead server as an exception group; name the cause
                raise PeerUnavailable(
                    f"{self.spec} did not complete the MCP handshake; its stderr:\n{self._stderr_tail()}"
                ) from exc
            self.startup_s = time.perf_counter() - started
            info = self._client.server_info
            self.reported_version = info.version if info else "none"
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client = None
        await self._stack.aclose()

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call one of the server's tools; its structured result."""
        if self._client is None:
            raise RuntimeError("OfficialMemoryServer is used outside `async with`")
        result = await self._client.call_tool(tool, arguments)
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            raise PeerError(f"{tool} failed: {text}")
        structured: dict[str, Any] = result.structured_content
        return structured

    async def reset(self) -> None:
        """An empty graph: the file is removed, and the server, which reads it on every call, starts afresh."""
        self.memory_file.unlink(missing_ok=True)
        graph = await self.call("read_graph", {})
        if graph["entities"]:
            raise PeerError(f"the graph is not empty after a reset: {len(graph['entities'])} entities")

    async def load_turns(self, turns: list[Turn]) -> None:
        """Each turn becomes one entity named by its id, in create_entities calls of CHUNK entities."""
        for start in range(0, len(turns), CHUNK):
            entities = [
                {
                    "name": turn.id,
                    "entityType": "conversation_turn",
                    "observations": [
                        turn.content,
                        f"role: {turn.role}",
                        f"session: {turn.session}",
                        f"date: {turn.date}",
                    ],
                }
                for turn in turns[start : start + CHUNK]
            ]
            await self.call("create_entities", {"entities": entities})

    async def search(self, query: str, limit: int = 50) -> list[str]:
        """search_nodes with the query as given: entity names in the server's order, at most `limit`."""
        graph = await self.call("search_nodes", {"query": query})
        return [entity["name"] for entity in graph["entities"][:limit]]

    async def search_keywords(self, query: str, limit: int = 50) -> list[str]:
        """What a model does when the whole question finds nothing: one search_nodes per content word.

        Names are ranked by how many words found them; ties keep the order in which they were first found.
        """
        content = list(dict.fromkeys(word.lower() for word in query_words(query)))  # as memos cuts them
        found: dict[str, int] = {}
        for word in content:
            graph = await self.call("search_nodes", {"query": word})
            for entity in graph["entities"]:
                found[entity["name"]] = found.get(entity["name"], 0) + 1
        return sorted(found, key=lambda name: -found[name])[:limit]

    def server_pid(self) -> int | None:
        """The node process that runs the server (npx runs it as a grandchild), or None if not found."""
        marker = f"MEMORY_FILE_PATH={self.memory_file}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() == "node" and marker in (
                    entry / "environ"
                ).read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return None

    def _stderr_tail(self, lines: int = 20) -> str:
        text = self._errlog.read_text(encoding="utf-8", errors="replace") if self._errlog.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(nothing)"


async def _install(spec: str) -> tuple[str, Path]:
    """Have npx fetch `spec` into its cache, so startup is timed without a download.

    Returns the version npx runs for `spec` and the server's entry point in npx's cache.
    """
    if shutil.which("npx") is None:
        raise PeerUnavailable(
            "npx is not on PATH: the official memory server needs Node.js 18 or newer (https://nodejs.org); "
            "or skip the comparison with --no-peer"
        )
    command = [
        "npx",
        "-y",
        f"--package={spec}",
        "--",
        "sh",
        "-c",
        'readlink -f "$(command -v mcp-server-memory)"',
    ]
    with anyio.move_on_after(NPX_TIMEOUT_S) as scope:
        done = await anyio.run_process(command, check=False)
    if scope.cancelled_caught:
        raise PeerUnavailable(
            f"`npx -y {spec}` did not finish in {NPX_TIMEOUT_S} s: is the npm registry reachable?"
        )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").splitlines()
        errors = [
            line for line in lines if line.startswith("npm error") and not line.startswith("npm error   ")
        ]
        raise PeerUnavailable(
            f"`npx -y {spec}` failed (exit {done.returncode}): no network, or no such version?\n"
            + "\n".join(errors[:4])
        )
    entry = Path(
        done.stdout.decode().strip()
    )  # .../node_modules/@modelcontextprotocol/server-memory/dist/index.js
    manifest = json.loads((entry.parent.parent / "package.json").read_text(encoding="utf-8"))
    return str(manifest["version"]), entry
