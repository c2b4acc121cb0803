"""`memos migrate --to`: the whole store into PostgreSQL and back into a SQLite file, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import load_config
from daemon.migrations import MIGRATIONS
from tests.conftest import free_port, memos_at, write_config
from tests.pg_server import PgCluster
from tests.test_transfer import _build_source, _snapshot

pytestmark = pytest.mark.anyio


async def test_migrating_to_postgresql_and_back_keeps_every_memory_version_link_grant_and_task(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """Steps: build a SQLite store with every kind of state (tests/test_transfer.py's); `memos migrate --to`
    a fresh PostgreSQL database; everything the service API reports there is identical; migrating again adds
    nothing; `memos migrate --to new.db` from the PostgreSQL store gives a SQLite store that is identical
    too."""
    source = tmp_path / "source"
    source.mkdir()
    source_config = write_config(source, port=free_port(), model="none")
    loaded = load_config(source_config, environ={"HOME": str(source)})
    await _build_source(loaded)
    before = await _snapshot(loaded)

    with pg_cluster.database(migrated=False) as url:
        team = tmp_path / "team"
        team.mkdir()
        team_config = write_config(team, port=free_port(), model="none", url=url)
        moved = memos_at(source_config, "migrate", "--to", url)
        assert "added to the PostgreSQL database" in moved.stdout
        assert "memos agent rotate-token" in moved.stdout
        on_postgres = await _snapshot(load_config(team_config, environ={"HOME": str(team)}))
        assert on_postgres.keys() == before.keys()
        for key in before:
            assert on_postgres[key] == before[key], key
        again = memos_at(source_config, "migrate", "--to", url)
        assert ": 0 added" in again.stdout
        status = memos_at(team_config, "status").stdout
        database = url.replace("postgres:@", "postgres:***@")  # a password is never shown
        assert f"database    {database} (schema {MIGRATIONS[-1][0]})" in status
        refused = memos_at(team_config, "backup", check=False)
        assert refused.returncode != 0 and "use pg_dump" in refused.stderr

        back = tmp_path / "back"
        back.mkdir()
        memos_at(team_config, "migrate", "--to", str(back / "data" / "memos.db"))
    back_config = write_config(back, port=free_port(), model="none")
    on_sqlite = await _snapshot(load_config(back_config, environ={"HOME": str(back)}))
    for key in before:
        assert on_sqlite[key] == before[key], key


def test_migrating_onto_an_existing_file_or_onto_itself_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    (tmp_path / "other.db").write_bytes(b"")
    refused = memos_at(config, "migrate", "--to", str(tmp_path / "other.db"), check=False)
    assert refused.returncode != 0 and "the file exists; migrate into a new SQLite file" in refused.stderr
