"""A misbehaving client costs the daemon bounded memory and never stops it serving the others.

Against memosd as a real process (lexical only: these are about HTTP, not meaning), with small limits:
sessions opened and never ended, a body far over the size limit, clients that send or read a byte at a time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from bench.report import rss_mib
from bench.soak import add_agents, call
from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config

pytestmark = pytest.mark.anyio

PER_AGENT = 20
IDLE_S = 3.0
CLIENT_TIMEOUT_S = 2.0
MIB = 1024 * 1024
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def start_limited_daemon(home: Path, server: str) -> RunningDaemon:
    port = free_port()
    config = write_config(home, port=port, model="none")
    config.write_text(config.read_text().replace("[server]\n", f"[server]\n{server}\n", 1))
    return start_daemon(config, home, port)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """memosd with small limits: sessions per agent, session idle time, and the time a client may take."""
    running = start_limited_daemon(
        tmp_path_factory.mktemp("limited"),
        f"max_sessions_per_agent = {PER_AGENT}\nsession_idle_timeout_s = {IDLE_S}\n"
        f"client_timeout_s = {CLIENT_TIMEOUT_S}",
    )
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture(scope="module")
async def tokens(limited: RunningDaemon) -> dict[str, str]:
    return await add_agents(limited, ["leaky", "polite", "slow"])


def rss(daemon: RunningDaemon) -> float:
    return rss_mib(daemon.process.pid)[0]


def headers(token: str, session: str | None = None) -> dict[str, str]:
    out = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    if session:
        out["Mcp-Session-Id"] = session
    return out


async def open_sessions(
    daemon: RunningDaemon, token: str, count: int
) -> tuple[list[str], list[httpx2.Response]]:
    """POST `count` initialize requests and never end the sessions; returns the session ids and refusals."""
    opened: list[str] = []
    refused: list[httpx2.Response] = []
    limit = anyio.Semaphore(16)
    async with httpx2.AsyncClient(headers=headers(token), timeout=30) as http:

        async def one() -> None:
            async with limit:
                response = await http.post(daemon.url, json=INITIALIZE)
            if response.status_code == 200:
                opened.append(response.headers["mcp-session-id"])
            else:
                refused.append(response)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    return opened, refused


async def works(daemon: RunningDaemon, token: str, era: str) -> None:
    """An agent in `era` can write and find what it wrote."""
    async with mcp_client(daemon.url, token, era) as client:
        added = await call(client, "memory_add", {"content": f"served while others misbehave ({era})"})
        found = await call(client, "memory_search", {"query": "misbehave", "k": 50})
        assert added["id"] in [hit["id"] for hit in found["results"]]


async def session_answers(daemon: RunningDaemon, token: str, sessions: list[str]) -> Counter[int]:
    """The HTTP status each session id gets for a tools/list."""
    statuses: Counter[int] = Counter()
    async with httpx2.AsyncClient(timeout=30) as http:
        for session in sessions:
            answer = await http.post(daemon.url, headers=headers(token, session), json=TOOLS_LIST)
            statuses[answer.status_code] += 1
    return statuses


TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


async def initialize_until_admitted(
    daemon: RunningDaemon, http: httpx2.AsyncClient, token: str
) -> httpx2.Response:
    """POST initialize again while it is refused with 429, as a client honouring Retry-After would (sooner)."""
    while True:
        response = await http.post(daemon.url, headers=headers(token), json=INITIALIZE)
        if response.status_code != 429:
            return response
        await anyio.sleep(0.1)


async def test_an_agent_that_never_ends_its_sessions_never_locks_itself_out(
    limited: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: `leaky` POSTs 300 initialize requests and ends none, as the official TypeScript SDK and the
    Inspector do: every one opens a session, because each time its oldest idle session is closed to make room;
    20 stay open (the newest), the older ids get 404 with a body that says to initialize again; RSS grows
    little; `polite` (handshake era) and `leaky` itself (sessionless) are served meanwhile."""
    before = rss(limited)
    opened, refused = await open_sessions(limited, tokens["leaky"], 300)
    after = rss(limited)
    print(f"\nRSS {before:.1f} -> {after:.1f} MiB after 300 sessions opened and never ended")
    assert not refused and len(opened) == 300
    assert after - before < 32
    assert await session_answers(limited, tokens["leaky"], opened) == {200: PER_AGENT, 404: 300 - PER_AGENT}
    async with httpx2.AsyncClient(timeout=30) as http:
        gone = await http.post(limited.url, headers=headers(tokens["leaky"], opened[0]), json=TOOLS_LIST)
    assert gone.status_code == 404
    message = gone.json()["error"]["message"]
    assert message.startswith("Session not found: it has ended") and "send initialize" in message
    await works(limited, tokens["polite"], "legacy")
    await works(limited, tokens["leaky"], "auto")


async def test_an_agent_whose_sessions_are_all_in_use_is_told_when_to_retry(
    limited: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: `busy` opens 20 sessions and keeps each one's GET event stream open; a 21st initialize gets
    429 with Retry-After and a JSON-RPC error saying what to do; once one stream is closed, a new session
    opens (that idle one is closed to make room and its id answers 404); the 19 streaming sessions still
    work."""
    token = (await add_agents(limited, ["busy"]))["busy"]
    opened, refused = await open_sessions(limited, token, PER_AGENT)
    assert len(opened) == PER_AGENT and not refused
    async with httpx2.AsyncClient(timeout=30) as http:
        events = {"Accept": "text/event-stream"}
        streams = [http.stream("GET", limited.url, headers=headers(token, s) | events) for s in opened]
        try:
            for stream in streams:
                assert (await stream.__aenter__()).status_code == 200
            refusal = await http.post(limited.url, headers=headers(token), json=INITIALIZE)
            assert refusal.status_code == 429
            assert refusal.headers["retry-after"] == "10"
            message = refusal.json()["error"]["message"]
            assert message.startswith("Too many open sessions: agent busy already has 20")
            assert "DELETE" in message and "retry after 10 s" in message

            await streams.pop(0).__aexit__(None, None, None)  # the client goes: that session is idle now
            with anyio.fail_after(10):  # once the daemon has seen the stream end
                fresh = await initialize_until_admitted(limited, http, token)
            assert fresh.status_code == 200
            assert await session_answers(limited, token, opened) == {404: 1, 200: PER_AGENT - 1}
        finally:
            for stream in streams:
                await stream.__aexit__(None, None, None)


async def raw_connection(daemon: RunningDaemon) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", daemon.port)


def request_head(daemon: RunningDaemon, token: str, extra: str) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


async def test_a_body_far_over_the_limit_is_refused_without_being_read(
    limited: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: announce a 50 MiB body and send none of it: 413 at once; stream a 50 MiB chunked body: 413
    once a little over the 4 MiB limit has arrived, long before the end; RSS grows little; others are
    served."""
    before = rss(limited)
    reader, writer = await raw_connection(limited)
    writer.write(request_head(limited, tokens["slow"], f"Content-Length: {50 * MIB}\r\n"))
    await writer.drain()
    with anyio.fail_after(10):
        status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 413 ")
    writer.close()

    reader, writer = await raw_connection(limited)
    writer.write(request_head(limited, tokens["slow"], "Transfer-Encoding: chunked\r\n"))
    answer = asyncio.ensure_future(reader.readline())
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"[" * 64 * 1024)
    sent = 0
    try:
        while not answer.done() and sent < 50 * MIB:
            writer.write(chunk)
            await writer.drain()
            sent += 64 * 1024
        with anyio.fail_after(10):
            status = await answer
    finally:
        writer.close()
    after = rss(limited)
    print(f"\nRSS {before:.1f} -> {after:.1f} MiB; refused after {sent / MIB:.1f} MiB of a 50 MiB body")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert sent < 25 * MIB
    assert after - before < 32
    await works(limited, tokens["polite"], "auto")


async def is_closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (whatever it sent before)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionResetError:
        pass
    return True


async def trickle(
    writer: asyncio.StreamWriter, at_once: bytes, data: bytes, closed: asyncio.Future[Any]
) -> None:
    """Send `at_once`, then `data` a byte every 0.1 s until the server closes the connection."""
    writer.write(at_once)
    for byte in data:
        if closed.done():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.1)


async def test_slow_clients_do_not_hold_up_others_and_are_disconnected(
    limited: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: open 90 slow connections — 30 send nothing, 30 send the request head a byte at a time, 30 send
    a whole head and then the body a byte at a time; meanwhile agents in both eras are served; the server
    closes every slow connection (client_timeout_s is 2 s; they would trickle for minutes); RSS grows
    little."""
    before = rss(limited)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    payloads = [(b"", b"")] * 30
    payloads += [(b"", request_head(limited, tokens["slow"], f"X-Pad: {'a' * 4000}\r\n"))] * 30
    payloads += [
        (request_head(limited, tokens["slow"], f"Content-Length: {len(body) * 100}\r\n"), body * 100)
    ] * 30
    connections = [await raw_connection(limited) for _ in payloads]
    closed = [asyncio.ensure_future(is_closed_by_server(reader)) for reader, _ in connections]
    tricklers = [
        asyncio.ensure_future(trickle(writer, at_once, data, done))
        for (_, writer), (at_once, data), done in zip(connections, payloads, closed, strict=True)
    ]
    for _ in range(3):
        await works(limited, tokens["polite"], "legacy")
        await works(limited, tokens["polite"], "auto")
    with anyio.fail_after(30):
        assert all(await asyncio.gather(*closed))
    after = rss(limited)
    print(f"\nRSS {before:.1f} -> {after:.1f} MiB with 90 slow connections")
    assert after - before < 32
    for task in tricklers:
        task.cancel()
    for _, writer in connections:
        writer.close()


LIST_60 = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {"name": "memory_list", "arguments": {"limit": 60}},
}


@pytest.fixture
async def big_list(limited: RunningDaemon, tokens: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    """A handshake-era session of `slow` whose memory_list answer is several MiB, and that answer's size."""
    async with mcp_client(limited.url, tokens["slow"], "legacy") as client:
        for part in range(2):
            items = [{"content": f"{part}-{i} " + "x" * 60_000} for i in range(30)]
            await call(client, "memory_add_batch", {"items": items})
    async with httpx2.AsyncClient(headers=headers(tokens["slow"]), timeout=30) as http:
        opened = await http.post(limited.url, json=INITIALIZE)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(limited.url, headers=session, json=initialized)).status_code == 202
        answer = await http.post(limited.url, headers=session, json=LIST_60)
        assert answer.status_code == 200 and '"isError":false' in answer.text
        yield session["Mcp-Session-Id"], len(answer.content)
        await http.delete(limited.url, headers=session)


async def test_a_client_that_stops_reading_its_answer_is_disconnected(
    limited: RunningDaemon, tokens: dict[str, str], big_list: tuple[str, int]
) -> None:
    """Steps: ask for several MiB (memory_list of 60 memories of 60 kB) on a socket with a tiny receive
    buffer and read nothing: once the answer has waited client_timeout_s (2 s) unread, the daemon closes the
    connection, before it was all sent; others are served meanwhile."""
    session, full = big_list
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", limited.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps(LIST_60).encode()
    extra = f"Mcp-Session-Id: {session}\r\nContent-Length: {len(body)}\r\n"
    writer.write(request_head(limited, tokens["slow"], extra) + body)
    await writer.drain()
    await works(limited, tokens["polite"], "auto")
    await anyio.sleep(CLIENT_TIMEOUT_S + 2)  # read nothing
    received = 0
    with anyio.fail_after(30):
        try:
            while data := await reader.read(65536):
                received += len(data)
        except ConnectionResetError:
            pass
    writer.close()
    print(f"\nreceived {received / MIB:.1f} of {full / MIB:.1f} MiB before the daemon closed the connection")
    assert received < full
    assert "response not read for 2 s" in limited.log()


async def test_at_the_daemon_wide_session_cap_the_idlest_session_makes_room_else_503_says_when(
    tmp_path: Path,
) -> None:
    """Steps: a daemon with max_sessions = 3; `one` opens 3 sessions and leaves them idle; `two` opens one:
    `one`'s oldest is closed to make room (404 from then on); with all 3 sessions streaming (GET), `three`'s
    initialize gets the SDK's 503, now with Retry-After."""
    capped = start_limited_daemon(tmp_path, "max_sessions = 3")
    try:
        names = await add_agents(capped, ["one", "two", "three"])
        opened = [(await open_sessions(capped, names["one"], 1))[0][0] for _ in range(3)]  # one by one
        (second,), refused = await open_sessions(capped, names["two"], 1)
        assert not refused
        oldest = opened[0]
        assert await session_answers(capped, names["one"], [oldest]) == {404: 1}
        live = [(names["one"], s) for s in opened if s != oldest] + [(names["two"], second)]
        async with httpx2.AsyncClient(timeout=30) as http:
            events = {"Accept": "text/event-stream"}
            streams = [http.stream("GET", capped.url, headers=headers(t, s) | events) for t, s in live]
            try:
                for stream in streams:
                    assert (await stream.__aenter__()).status_code == 200
                refusal = await http.post(capped.url, headers=headers(names["three"]), json=INITIALIZE)
                assert refusal.status_code == 503
                assert refusal.headers["retry-after"] == "10"
            finally:
                for stream in streams:
                    await stream.__aexit__(None, None, None)
    finally:
        stop_daemon(capped)


async def test_after_a_restart_an_old_session_id_gets_a_404_that_says_to_initialize_again(
    tmp_path: Path,
) -> None:
    """Steps: open a session; restart the daemon; the old id gets 404 whose JSON-RPC error says the session
    ended and to send initialize without an Mcp-Session-Id; doing so opens a working session."""
    daemon = start_limited_daemon(tmp_path, "")
    token = (await add_agents(daemon, ["host"]))["host"]
    try:
        (old,), _ = await open_sessions(daemon, token, 1)
        stop_daemon(daemon)
        daemon = start_daemon(daemon.config_path, daemon.home, daemon.port)
        async with httpx2.AsyncClient(timeout=30) as http:
            gone = await http.post(daemon.url, headers=headers(token, old), json=TOOLS_LIST)
            assert gone.status_code == 404
            message = gone.json()["error"]["message"]
            assert "the daemon restarted" in message
            assert "Start a new session: send initialize without an Mcp-Session-Id" in message
            fresh = await http.post(daemon.url, headers=headers(token), json=INITIALIZE)
            assert fresh.status_code == 200
        assert await session_answers(daemon, token, [fresh.headers["mcp-session-id"]]) == {200: 1}
    finally:
        stop_daemon(daemon)
