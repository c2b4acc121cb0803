"""`memos check`: damage the start-up check misses is found, named, and repaired from the memories table."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from daemon import (
    Config,
    NewMemory,
    NotFound,
    SearchQuery,
    StoreCorrupt,
    agent_named,
    open_services,
    open_store_services,
    sqlite_driver,
)
from daemon.instance_lock import InstanceLock
from tests.conftest import make_config, memos_at

pytestmark = pytest.mark.anyio

ALICE = agent_named("alice")


async def add_memories(config: Config, *texts: str) -> list[str]:
    async with open_store_services(config) as services:
        await services.identities.add("alice")
        return [(await services.additions.add(ALICE, None, NewMemory(content=t))).id for t in texts]


async def found_by_search(config: Config, query: str) -> list[str]:
    async with open_store_services(config) as services:
        return [hit.id for hit in (await services.search.search(ALICE, SearchQuery(query=query))).results]


async def found_by_id(config: Config, memory_id: str) -> bool:
    async with open_store_services(config) as services:
        try:
            await services.memories.get(ALICE, memory_id)
        except NotFound:
            return False
    return True


def drop_from_id_index(path: Path, memory_id: str) -> None:
    """Corrupt one key in the index on memories.id, the way a torn or bit-flipped page would: the index
    stays well-formed (quick_check passes) but no longer leads to the memory."""
    conn = sqlite_driver.connect(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute(
        "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_memories_1'"
    ).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    raw = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    at = raw.index(memory_id.encode(), start, start + page_size) + len(memory_id) - 1
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    path.write_bytes(bytes(raw))


def config_file(config: Config) -> Path:
    return Path(config.source)


async def test_a_damaged_table_index_hides_a_memory_until_check_repair_rebuilds_it(tmp_path: Path) -> None:
    """1. add two memories; 2. corrupt the id index entry of one; 3. the daemon's start-up check passes but
    the memory is not found; 4. `memos check` names the damage and exits 1; 5. `--repair` rebuilds it;
    6. the memory is found again and `memos check` is clean."""
    config = make_config(tmp_path, "none")
    first, _ = await add_memories(config, "the zebra crossing is blue", "giraffes are tall")
    drop_from_id_index(config.database_path, first)
    assert not await found_by_id(config, first)

    checked = memos_at(config_file(config), "check", check=False)
    assert checked.returncode == 1, checked.stderr
    assert "missing from index sqlite_autoindex_memories_1" in checked.stdout
    assert "memos check --repair" in checked.stdout

    repaired = memos_at(config_file(config), "check", "--repair", check=False)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: rebuilt every table index (REINDEX)" in repaired.stdout
    assert await found_by_id(config, first)
    assert memos_at(config_file(config), "check").stdout.endswith("the database and its indexes are whole\n")


async def test_a_memory_missing_from_the_full_text_index_is_found_by_check_and_search_again_after_repair(
    tmp_path: Path,
) -> None:
    """The full-text index loses one memory's entry (PRAGMA integrity_check and quick_check both pass):
    search cannot find it; `memos check` reports it; `--repair` rebuilds the index and search finds it."""
    config = make_config(tmp_path, "none")
    (zebra,) = await add_memories(config, "the zebra crossing is blue")
    conn = sqlite_driver.connect(str(config.database_path))
    seq, content, tags = conn.execute(
        "SELECT seq, content, tags FROM memories WHERE id = ?", (zebra,)
    ).fetchone()
    conn.execute(
        "INSERT INTO memories_fts (memories_fts, rowid, content, tags) VALUES ('delete', ?, ?, ?)",
        (seq, content, tags),
    )
    conn.close()
    assert await found_by_search(config, "zebra") == []

    checked = memos_at(config_file(config), "check", check=False)
    assert checked.returncode == 1
    assert "damaged: full-text index: it does not match the memories table" in checked.stdout

    assert memos_at(config_file(config), "check", "--repair").returncode == 0
    assert await found_by_search(config, "zebra") == [zebra]


async def test_a_broken_full_text_index_is_refused_at_start_with_the_command_that_repairs_it(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, "none")
    (zebra,) = await add_memories(config, "the zebra crossing is blue")
    conn = sqlite_driver.connect(str(config.database_path))
    conn.execute("DELETE FROM memories_fts_data WHERE id > 10")  # the index's segments are gone
    conn.close()
    with pytest.raises(StoreCorrupt, match=r"run `memos check` \(`memos check --repair` rebuilds"):
        await found_by_search(config, "zebra")

    repaired = memos_at(config_file(config), "check", "--repair", check=False)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert await found_by_search(config, "zebra") == [zebra]


async def test_repair_refuses_while_memosd_serves_the_database(tmp_path: Path) -> None:
    config = make_config(tmp_path, "none")
    await add_memories(config, "a memory")
    lock = InstanceLock(config.database_path)
    lock.acquire()  # as memosd holds it
    try:
        refused = memos_at(config_file(config), "check", "--repair", check=False)
        assert refused.returncode == 1
        assert refused.stderr.startswith("memos: memosd is serving ")
        assert "stop it before `memos check --repair`" in refused.stderr
        assert memos_at(config_file(config), "check").returncode == 0  # checking is fine beside it
    finally:
        lock.release()


async def test_vectors_that_disagree_with_the_memories_are_found_and_re_embedded_after_repair(
    tmp_path: Path, model_dir: Path
) -> None:
    """A memory whose vector is gone and a vector whose memory is gone: check names both; repair drops the
    stray vector and marks the memory for the daemon's backfill, which embeds it again."""
    config = make_config(tmp_path, str(model_dir))
    async with open_services(config) as services:
        await services.vectors.attached.wait()
        await services.identities.add("alice")
        kept = await services.additions.add(ALICE, None, NewMemory(content="a memory that keeps its vector"))
        await services.additions.add(ALICE, None, NewMemory(content="a memory that loses its vector"))
    conn = sqlite_driver.connect(str(config.database_path))
    seq = conn.execute("SELECT seq FROM memories WHERE id != ?", (kept.id,)).fetchone()[0]
    embedding = conn.execute("SELECT embedding FROM memory_vectors WHERE rowid = ?", (seq,)).fetchone()[0]
    conn.execute("DELETE FROM memory_vectors WHERE rowid = ?", (seq,))
    conn.execute("INSERT INTO memory_vectors (rowid, cube_id, embedding) VALUES (999, 1, ?)", (embedding,))
    conn.close()

    checked = memos_at(config_file(config), "check", check=False)
    assert checked.returncode == 1
    assert "damaged: vectors: 1 vectors belong to no memory" in checked.stdout
    assert "damaged: vectors: 1 memories marked embedded have no vector" in checked.stdout
    repaired = memos_at(config_file(config), "check", "--repair")
    assert "repaired: dropped 1 stray vectors" in repaired.stdout
    assert "repaired: marked 1 memories for memosd to embed again when it starts" in repaired.stdout

    async with open_services(config) as services:  # the backfill embeds it again
        await services.vectors.attached.wait()
        with anyio.fail_after(30):
            while True:
                async with services.store.read() as read:
                    if await read.row("SELECT 1 AS one FROM memories WHERE embedded = 0") is None:
                        break
                await anyio.sleep(0.05)
    assert memos_at(config_file(config), "check").returncode == 0
