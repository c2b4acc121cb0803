"""Crash durability: memosd killed with SIGKILL at random points, twenty times, loses no acknowledged write,
and the database stays intact."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import anyio
import pytest

from daemon.sqlite_driver import sqlite_module
from tests.conftest import free_port, mcp_client, memos_at, start_daemon, write_config
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio
KILLS = 20


@pytest.mark.timeout(300)
async def test_every_acknowledged_write_survives_twenty_kill_9s(tmp_path: Path) -> None:
    """Steps: start memosd; three writers add memories (single and batch) and record each acknowledged id;
    SIGKILL the daemon a random 0-0.8 s after writes flow; restart; repeat 20 times; then every acknowledged memory is
    there with its exact content, and PRAGMA integrity_check passes."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    rng = random.Random(20261125)
    acknowledged: dict[str, str] = {}
    token = memos_at(config, "agent", "add", "writer").stdout.strip().splitlines()[-1]
    for round_number in range(KILLS):
        daemon = start_daemon(config, tmp_path, port)
        flowing, target = anyio.Event(), len(acknowledged) + 11

        def acked(memory_id: str, text: str, flowing: anyio.Event = flowing, target: int = target) -> None:
            acknowledged[memory_id] = text
            if len(acknowledged) >= target:
                flowing.set()

        async def writer(n: int, url: str = daemon.url, round_number: int = round_number) -> None:
            try:
                async with mcp_client(url, token) as client:
                    for i in range(100_000):
                        text = f"round {round_number} writer {n} memory {i}"
                        if i % 5 == 0:
                            items = [{"content": f"{text} item {j}"} for j in range(5)]
                            result = await client.call_tool("memory_add_batch", {"items": items})
                            if result.is_error:
                                return
                            for memory_id, item in zip(result.structured_content["ids"], items, strict=True):
                                acked(memory_id, item["content"])
                        else:
                            result = await client.call_tool("memory_add", {"content": text})
                            if result.is_error:
                                return
                            acked(result.structured_content["id"], text)
            except Exception:  # noqa: BLE001 - the daemon dying mid-call is the point of this test
                return

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(writer, n)
            # Kill once writes flow (a loaded machine may take a while to serve the first), then at a random
            # moment among them, so each round kills the daemon mid-write rather than before any.
            with anyio.fail_after(60):
                await flowing.wait()
            await anyio.sleep(rng.uniform(0.0, 0.8))
            daemon.process.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(daemon.process.wait, 30)

    daemon = start_daemon(config, tmp_path, port)
    try:
        stored: dict[str, str] = {}
        async with mcp_client(daemon.url, token) as client:
            cursor = None
            while True:
                page = await call(client, "memory_list", limit=500, **({"cursor": cursor} if cursor else {}))
                stored |= {m["id"]: m["content"] for m in page["memories"]}
                cursor = page["next_cursor"]
                if cursor is None:
                    break
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(daemon.process.wait, 30)
    lost = {memory_id: text for memory_id, text in acknowledged.items() if stored.get(memory_id) != text}
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged writes lost"
    assert len(acknowledged) > KILLS * 10
    conn = sqlite_module().connect(str(tmp_path / "data" / "memos.db"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()
