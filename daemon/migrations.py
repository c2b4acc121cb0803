"""Numbered schema migrations, each applied once in its own transaction and recorded in `schema_migrations`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from daemon.rows import read_rows
from daemon.timeutil import now_iso

Migration = Callable[[Any], None]
MIGRATIONS: list[tuple[int, str, Migration]] = []


def migration(version: int, name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        assert not MIGRATIONS or MIGRATIONS[-1][0] == version - 1, "migrations are numbered consecutively"
        MIGRATIONS.append((version, name, fn))
        return fn

    return register


# The first tables, in SQL both stores read (daemon/pg_schema.py runs them through its DDL translation).
INITIAL_TABLES = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        CREATE TABLE agents (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_seen_at TEXT,
            disabled_at TEXT
        );

        CREATE TABLE cubes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            owner TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );

        CREATE TABLE memories (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            content TEXT NOT NULL,
            kind TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            source_agent TEXT NOT NULL,
            task_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            occurred_at TEXT,
            importance REAL NOT NULL DEFAULT 0.5,
            expires_at TEXT,
            deleted_at TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            embedded INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX memories_by_cube ON memories (cube_id, created_at);
        CREATE INDEX memories_unembedded ON memories (seq) WHERE embedded = 0;

        -- Prior versions of a memory; the current one lives in `memories`.
        CREATE TABLE memory_versions (
            memory_seq INTEGER NOT NULL REFERENCES memories(seq),
            version INTEGER NOT NULL,
            content TEXT NOT NULL,
            kind TEXT NOT NULL,
            tags TEXT NOT NULL,
            metadata TEXT NOT NULL,
            importance REAL NOT NULL,
            occurred_at TEXT,
            expires_at TEXT,
            updated_at TEXT NOT NULL,
            replaced_at TEXT NOT NULL,
            replaced_by TEXT NOT NULL,
            PRIMARY KEY (memory_seq, version)
        );

"""


@migration(1, "agents, cubes, memories, versions, full-text index")
def _initial(conn: Any) -> None:
    run_script(
        conn,
        INITIAL_TABLES
        + """
        -- External-content FTS5 index kept in step by triggers; Porter stemming over unicode61.
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            content, tags, content='memories', content_rowid='seq',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, content, tags) VALUES (new.seq, new.content, new.tags);
        END;
        CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, tags ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content, tags)
                VALUES ('delete', old.seq, old.content, old.tags);
            INSERT INTO memories_fts (rowid, content, tags) VALUES (new.seq, new.content, new.tags);
        END;
        CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content, tags)
                VALUES ('delete', old.seq, old.content, old.tags);
        END;
        """,
    )


def run_script(conn: Any, script: str) -> None:
    """Run statements one by one inside the caller's transaction (`executescript` would commit it)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    assert not statement.strip(), f"incomplete SQL statement in a migration: {statement[:60]}"


def apply_migrations(
    conn: Any, *, begin: str = "BEGIN IMMEDIATE", variants: Mapping[int, Callable[[Any], None]] | None = None
) -> list[int]:
    """Bring the schema up to date on a raw connection; returns the versions applied now. Each step runs in
    its own transaction (`begin`), or as its variant for another store (daemon/pg_schema.py) where it has one."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row["version"] for row in read_rows(conn, "SELECT version FROM schema_migrations")}
    newest_known = MIGRATIONS[-1][0]
    if done and max(done) > newest_known:
        from daemon.errors import StoreError

        raise StoreError(
            f"the database has schema version {max(done)}, newer than this memos knows ({newest_known}):"
            " upgrade memos"
        )
    applied = []
    for version, name, fn in MIGRATIONS:
        if version in done:
            continue
        conn.execute(begin)
        try:
            (variants or {}).get(version, fn)(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_iso()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite has rolled back already after some errors (SQLITE_FULL)
                conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


@migration(2, "groups, stored grants, audit log")
def _sharing(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );
        CREATE TABLE group_members (
            group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
            agent TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (group_id, agent)
        );
        CREATE INDEX group_members_by_agent ON group_members (agent);

        -- Grants made with cube_share; combined with the policy files by the same rules.
        CREATE TABLE cube_grants (
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            grantee TEXT NOT NULL,
            permission TEXT NOT NULL,
            granted_by TEXT NOT NULL,
            granted_at TEXT NOT NULL,
            PRIMARY KEY (cube_id, grantee, permission)
        );
        CREATE INDEX cube_grants_by_grantee ON cube_grants (grantee);

        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            agent TEXT NOT NULL,
            action TEXT NOT NULL,
            cube TEXT,
            target TEXT,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX audit_by_cube ON audit (cube, id);
        """,
    )


@migration(3, "validity in time, supersession, content hashes, cube settings, idempotency keys")
def _validity(conn: Any) -> None:
    from daemon.content_hash import content_hash  # the same normalisation the write path uses

    run_script(
        conn,
        """
        ALTER TABLE memories ADD COLUMN valid_from TEXT;
        ALTER TABLE memories ADD COLUMN valid_to TEXT;
        ALTER TABLE memories ADD COLUMN superseded_by TEXT;
        ALTER TABLE memories ADD COLUMN content_hash TEXT;
        ALTER TABLE memories ADD COLUMN deleted_reason TEXT;
        -- Restored after retention archived it: retention leaves it alone from then on.
        ALTER TABLE memories ADD COLUMN kept_at TEXT;
        UPDATE memories SET valid_from = coalesce(occurred_at, created_at);
        ALTER TABLE cubes ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

        -- A retried write with the same key returns the first result and writes nothing.
        CREATE TABLE idempotency (
            agent TEXT NOT NULL,
            key TEXT NOT NULL,
            tool TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            result TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (agent, key)
        );
        """,
    )
    rows = read_rows(conn, "SELECT seq, content FROM memories")
    conn.executemany(
        "UPDATE memories SET content_hash = ? WHERE seq = ?",
        [(content_hash(row["content"]), row["seq"]) for row in rows],
    )
    run_script(
        conn,
        """
        CREATE INDEX memories_current_by_hash ON memories (cube_id, kind, content_hash)
            WHERE deleted_at IS NULL AND superseded_by IS NULL;
        CREATE INDEX memories_by_successor ON memories (superseded_by) WHERE superseded_by IS NOT NULL;
        """,
    )


@migration(4, "tasks, task notes, context packs")
def _tasks(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            from_agent TEXT NOT NULL,
            to_agent TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            priority TEXT NOT NULL,
            cubes TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX tasks_by_receiver ON tasks (to_agent, status);
        CREATE INDEX tasks_by_sender ON tasks (from_agent, status);
        CREATE TABLE task_notes (
            id INTEGER PRIMARY KEY,
            task_id TEXT NOT NULL REFERENCES tasks(id),
            agent TEXT NOT NULL,
            at TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX task_notes_by_task ON task_notes (task_id, id);
        -- The newest context pack per (task, agent), as built for that agent.
        CREATE TABLE context_packs (
            task_id TEXT NOT NULL REFERENCES tasks(id),
            agent TEXT NOT NULL,
            built_at TEXT NOT NULL,
            pack TEXT NOT NULL,
            PRIMARY KEY (task_id, agent)
        );
        CREATE INDEX memories_by_task ON memories (task_id) WHERE task_id IS NOT NULL;
        """,
    )


@migration(5, "episodes: the session or thread a memory belongs to, and its place in it")
def _episodes(conn: Any) -> None:
    # Virtual generated columns: read from metadata ("session", else "thread"; "turn"), so every writer and
    # every import keeps them right without knowing they exist, and old rows have them at once.
    run_script(
        conn,
        """
        ALTER TABLE memories ADD COLUMN episode TEXT GENERATED ALWAYS AS (
            CASE WHEN json_valid(metadata) THEN CAST(coalesce(json_extract(metadata, '$.session'),
                                                             json_extract(metadata, '$.thread')) AS TEXT) END
        ) VIRTUAL;
        ALTER TABLE memories ADD COLUMN episode_position REAL GENERATED ALWAYS AS (
            CASE WHEN json_valid(metadata) AND json_type(metadata, '$.turn') IN ('integer', 'real')
                 THEN json_extract(metadata, '$.turn') END
        ) VIRTUAL;
        CREATE INDEX memories_by_episode ON memories (cube_id, episode, episode_position)
            WHERE episode IS NOT NULL;
        """,
    )


@migration(6, "typed, directed links between memories")
def _links(conn: Any) -> None:
    # Supersession stays in memories.superseded_by; this table holds every other relation.
    run_script(
        conn,
        """
        CREATE TABLE memory_links (
            from_id TEXT NOT NULL,
            to_id TEXT NOT NULL,
            relation TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (from_id, to_id, relation)
        );
        CREATE INDEX memory_links_by_target ON memory_links (to_id, from_id);
        """,
    )


@migration(7, "a cube's memories newest first from an index, a page at a time")
def _cube_pages(conn: Any) -> None:
    # memory_list and the dashboard read a cube by seq descending; without this index SQLite reads every row
    # of the cube and sorts them (300 ms at 100k) to return a page of 25. The partial index lets a cube's
    # count of live memories (cube_list, the dashboard) be read from an index instead of every row.
    run_script(
        conn,
        """
        CREATE INDEX memories_by_cube_seq ON memories (cube_id, seq);
        CREATE INDEX memories_live_by_cube ON memories (cube_id) WHERE deleted_at IS NULL;
        """,
    )


@migration(8, "the entity index: names, numbers, dates and titles each memory mentions")
def _entities(conn: Any) -> None:
    # Triggers mark every inserted or changed memory pending, whoever writes it; writers index their own rows
    # in the same transaction, the daemon's background task the rest (every row from before this migration).
    run_script(
        conn,
        """
        CREATE TABLE memory_entities (
            cube_id INTEGER NOT NULL,
            entity TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (cube_id, entity, seq)
        ) WITHOUT ROWID;
        CREATE INDEX memory_entities_by_memory ON memory_entities (seq);
        CREATE TABLE entity_pending (seq INTEGER PRIMARY KEY);
        INSERT INTO entity_pending (seq) SELECT seq FROM memories;
        CREATE TRIGGER memories_entities_added AFTER INSERT ON memories
        BEGIN INSERT OR IGNORE INTO entity_pending (seq) VALUES (new.seq); END;
        CREATE TRIGGER memories_entities_changed AFTER UPDATE OF content, metadata, cube_id ON memories
        BEGIN INSERT OR IGNORE INTO entity_pending (seq) VALUES (new.seq); END;
        CREATE TRIGGER memories_entities_removed AFTER DELETE ON memories
        BEGIN
            DELETE FROM memory_entities WHERE seq = old.seq;
            DELETE FROM entity_pending WHERE seq = old.seq;
        END;
        """,
    )
