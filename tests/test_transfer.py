"""Export, import, backup and restore as a user runs them: the commands against real database files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import anyio
import pytest

from daemon.sqlite_driver import sqlite_module
from tests.conftest import (
    free_port,
    mcp_client,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.conftest import (
    memos_at as memos,
)
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio


async def test_export_then_import_into_a_fresh_data_dir_gives_identical_memories_and_history(
    tmp_path: Path,
) -> None:
    """Steps: through a real daemon, add memories to two cubes, update one twice, delete one; export; import
    into a fresh data dir; export again: the two exports are identical, line for line. Importing again adds
    nothing."""
    source = tmp_path / "source"
    source.mkdir()
    port = free_port()
    config = write_config(source, port=port, model="none")
    daemon = start_daemon(config, source, port)
    try:
        token = daemon.add_agent("alice")
        async with mcp_client(daemon.url, token) as client:
            await call(client, "cube_create", name="team-x", description="the team")
            first = await call(
                client, "memory_add", content="v1", tags=["a"], metadata={"n": 1}, importance=0.9
            )
            await call(client, "memory_update", id=first["id"], content="v2")
            await call(client, "memory_update", id=first["id"], tags=["b"], occurred_at="2026-05-01")
            gone = await call(client, "memory_add", content="to be deleted", cube="team-x", kind="event")
            await call(client, "memory_delete", id=gone["id"])
            await call(
                client,
                "memory_add_batch",
                items=[{"content": f"fact {i}", "kind": "fact"} for i in range(20)],
            )
    finally:
        stop_daemon(daemon)
    exported = memos(config, "export").stdout
    assert len(exported.splitlines()) == 22
    assert json.loads(exported.splitlines()[0])["history"][0]["content"] == "v1"

    target = tmp_path / "target"
    target.mkdir()
    fresh = write_config(target, port=free_port(), model="none")
    result = memos(fresh, "import", "-", stdin=exported)
    assert result.stdout.strip() == "22 added, 0 already present, 0 bad lines"
    assert memos(fresh, "export").stdout == exported
    again = memos(fresh, "import", "-", stdin=exported)
    assert again.stdout.strip() == "0 added, 22 already present, 0 bad lines"


async def test_import_reports_each_bad_line_by_number_and_strict_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    lines = "\n".join(
        [
            json.dumps({"content": "good one", "kind": "fact", "source_agent": "ann"}),
            json.dumps({"content": "no kind", "source_agent": "ann"}),
            "{not json",
            json.dumps({"content": "", "kind": "fact", "source_agent": "ann"}),
            json.dumps({"content": "bad time", "kind": "fact", "source_agent": "ann", "occurred_at": "soon"}),
            json.dumps({"content": "good two", "kind": "note", "source_agent": "ann"}),
        ]
    )
    strict = memos(config, "import", "-", "--strict", stdin=lines, check=False)
    assert strict.returncode == 1 and "nothing was written" in strict.stderr
    assert memos(config, "export").stdout == ""
    result = memos(config, "import", "-", stdin=lines, check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == "2 added, 0 already present, 4 bad lines"
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
    ]
    assert "no kind" in result.stderr.splitlines()[0]


async def test_transcripts_and_markdown_notes_import_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    transcript = tmp_path / "chat-2026-05-01.json"
    transcript.write_text(
        json.dumps(
            [
                {
                    "role": "user",
                    "content": "I'm planning a trip to Kyoto",
                    "timestamp": "2026-05-01T10:00:00Z",
                },
                {
                    "speaker": "assistant",
                    "content": "Spring is lovely there",
                    "timestamp": "2026-05-01T10:00:05Z",
                },
            ]
        )
    )
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "deploy.md").write_text("# Deploying\n\nRun the migration first.\n")
    (notes / "sub" / "people.md").write_text("Bob owns billing.\n")
    first = memos(config, "import", str(transcript), "--format", "transcript", "--agent", "ann")
    assert first.stdout.strip() == "2 added, 0 already present, 0 bad lines"
    assert memos(
        config, "import", str(transcript), "--format", "transcript", "--agent", "ann"
    ).stdout.startswith("0 added, 2 already present")
    assert memos(config, "import", str(notes), "--format", "markdown", "--agent", "ann").stdout.startswith(
        "2 added"
    )
    records = [json.loads(line) for line in memos(config, "export").stdout.splitlines()]
    assert [(r["kind"], r["metadata"].get("role"), r["occurred_at"]) for r in records[:2]] == [
        ("message", "user", "2026-05-01T10:00:00.000000Z"),
        ("message", "assistant", "2026-05-01T10:00:05.000000Z"),
    ]
    assert (
        records[2]["metadata"] == {"path": "deploy.md", "title": "Deploying"} and records[2]["kind"] == "note"
    )


async def test_a_backup_taken_under_concurrent_writes_restores_to_a_consistent_store(tmp_path: Path) -> None:
    """Steps: a writer thread adds memories through the daemon; meanwhile `memos backup`; stop; restore the
    backup; the restored database passes its integrity check, and every memory in it is whole (content,
    history rows, FTS index entry) and a prefix of what was written."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    token = daemon.add_agent("writer")
    stop = threading.Event()
    written: list[str] = []

    async def write_until_stopped() -> None:
        async with mcp_client(daemon.url, token) as client:
            i = 0
            while not stop.is_set():
                await call(client, "memory_add", content=f"memory number {i}")
                written.append(f"memory number {i}")
                i += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_until_stopped)
        while len(written) < 50:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        backup = tmp_path / "backup.db"
        result = await anyio.to_thread.run_sync(lambda: memos(config, "backup", str(backup)))
        assert "backup written" in result.stdout
        await anyio.sleep(0.2)
        stop.set()
    assert stop_daemon(daemon) == 0
    restored = memos(config, "restore", str(backup))
    assert "restored" in restored.stdout
    records = [json.loads(line)["content"] for line in memos(config, "export").stdout.splitlines()]
    assert 50 <= len(records) < len(written)
    assert records == written[: len(records)]
    conn = sqlite_module().connect(str(tmp_path / "data" / "memos.db"))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_restore_refuses_while_the_daemon_serves(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    try:
        memos(config, "backup", str(tmp_path / "b.db"))
        refused = memos(config, "restore", str(tmp_path / "b.db"), check=False)
        assert refused.returncode == 1 and "stop it before restoring" in refused.stderr
    finally:
        stop_daemon(daemon)
