"""Fill a `bench/load.py --keep` database to N memories quickly, for latency work on a busy machine.

    python bench/seed.py --keep bench/results/load-db --corpus many-matches --size 100000
    python bench/seed.py --keep bench/results/load-db --corpus many-matches --size 100000 --backend postgresql

Loading 100k memories through the model takes ~10 minutes on an idle 2-core machine (over an hour when
other work shares it). This loads the same texts through `memory_add_batch` with the model off, then
stores vectors directly: the real model's embeddings of the first `--sample` texts, and for every other
memory one of those plus a little noise (unit length). Search, add and memory costs are those of real
vectors (same dimension, same matrix); the KNN's answers are not meaningful, so measure quality with
`bench/retrieval.py`, never on a seeded database. `load.py --keep` then reuses it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed
from bench.corpus import CORPORA
from bench.load import kept_database_name
from daemon import sqlite_driver
from daemon.config import DEFAULT_MODEL as MODEL_NAME
from daemon.config import EmbedderConfig
from daemon.pg_vectors import vector_literal
from daemon.vectors import CREATE_VECTOR_TABLE
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.pg_server import PgCluster

BATCH = 500
# The model the stored vectors are labelled with: the default precision's, so memosd (which runs the default)
# takes them as its own instead of embedding every memory again (they are near copies of float32 vectors).
SEEDED_AS = EmbedderConfig().identity


async def load_texts(home: Path, texts: list[str], url: str | None = None) -> str:
    port = free_port()
    daemon = start_daemon(write_config(home, port=port, model="none", url=url), home, port)
    try:
        token = daemon.add_agent("bench")
        async with mcp_client(daemon.url, token) as client:
            for start in range(0, len(texts), BATCH):
                items = [{"content": text, "kind": "fact"} for text in texts[start : start + BATCH]]
                await timed(client, "memory_add_batch", {"items": items})
    finally:
        stop_daemon(daemon)
    return token


def near_copies(contents: list[str], model: str, sample: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, unit vectors) in chunks for the memories' contents in seq order: the model's embeddings of
    the first `sample`, then near copies of them. The same contents give the same vectors on either store."""
    from fastembed import TextEmbedding

    embedder = TextEmbedding(MODEL_NAME, specific_model_path=model)
    base = np.asarray(list(embedder.embed(contents[:sample])), dtype=np.float32)
    rng = np.random.default_rng(5)
    for start in range(0, len(contents), 5000):
        vectors = base[np.arange(start, min(start + 5000, len(contents))) % len(base)]
        vectors = vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield start, vectors


def store_vectors(db: Path, model: str, sample: int) -> None:
    conn = sqlite_driver.connect(str(db))
    try:
        rows = conn.execute("SELECT seq, cube_id, content FROM memories ORDER BY seq").fetchall()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TABLE IF EXISTS memory_vectors")
        conn.execute(CREATE_VECTOR_TABLE)  # the daemon's own table, so its first start has nothing to copy
        dims = 0
        for start, vectors in near_copies([row[2] for row in rows], model, sample):
            dims = vectors.shape[1]
            conn.executemany(
                "INSERT INTO memory_vectors (rowid, cube_id, embedding) VALUES (?, ?, ?)",
                [
                    (seq, cube, vector.tobytes())
                    for (seq, cube, _), vector in zip(
                        rows[start : start + len(vectors)], vectors, strict=True
                    )
                ],
            )
        conn.execute("UPDATE memories SET embedded = 1")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_model', ?), ('embedding_dims', ?)",
            (SEEDED_AS, str(dims)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def store_pg_vectors(url: str, model: str, sample: int) -> None:
    """The same as `store_vectors` into pgvector's table, made as daemon/pg_vectors.py's `attach` makes it
    (the HNSW index built after the rows, which is faster than row by row)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT seq, cube_id, content FROM memories ORDER BY seq").fetchall()
        conn.execute("DROP TABLE IF EXISTS memory_vectors")
        conn.execute("DROP SEQUENCE IF EXISTS memory_vectors_changes")
        conn.execute("CREATE SEQUENCE memory_vectors_changes")
        dims = 0
        for start, vectors in near_copies([row[2] for row in rows], model, sample):
            if not dims:
                dims = vectors.shape[1]
                conn.execute(
                    "CREATE TABLE memory_vectors (rowid BIGINT PRIMARY KEY, cube_id BIGINT NOT NULL,"
                    f" embedding vector({int(dims)}) NOT NULL, changed BIGINT NOT NULL)"
                )
            with conn.cursor().copy(
                "COPY memory_vectors (rowid, cube_id, embedding, changed) FROM STDIN"
            ) as copy:
                for (seq, cube, _), vector in zip(rows[start : start + len(vectors)], vectors, strict=True):
                    copy.write_row((seq, cube, vector_literal(vector), seq))
        conn.execute("SELECT setval('memory_vectors_changes', (SELECT max(changed) FROM memory_vectors))")
        conn.execute("CREATE INDEX memory_vectors_by_change ON memory_vectors (changed)")
        conn.execute("CREATE INDEX memory_vectors_by_cube ON memory_vectors (cube_id)")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(
            "CREATE INDEX memory_vectors_hnsw ON memory_vectors USING hnsw (embedding vector_cosine_ops)"
        )
        conn.execute("UPDATE memories SET embedded = 1")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('embedding_model', %s), ('embedding_dims', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (SEEDED_AS, str(dims)),
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, required=True)
    parser.add_argument("--corpus", choices=sorted(CORPORA), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--sample", type=int, default=2000, help="texts embedded by the real model")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql: a database on the server `load.py --keep` keeps in KEEP/postgresql",
    )
    args = parser.parse_args()
    keep = args.keep.resolve() / ("postgresql" if args.backend == "postgresql" else "")
    home = keep / f"{args.corpus}-{args.size}"
    if home.exists():
        raise SystemExit(f"{home} exists; remove it to seed again")
    home.mkdir(parents=True)
    started = time.perf_counter()
    texts = CORPORA[args.corpus][0](args.size)
    with ExitStack() as stack:
        if args.backend == "postgresql":
            cluster = stack.enter_context(PgCluster.start(keep / "server"))
            name = kept_database_name(args.corpus, args.size)
            if cluster.exists(name):
                raise SystemExit(f"database {name} exists in {keep / 'server'}; drop it to seed again")
            url = cluster.kept_database(name)
            token = anyio.run(load_texts, home, texts, url)
            store_pg_vectors(url, args.model, args.sample)
        else:
            token = anyio.run(load_texts, home, texts)
            store_vectors(home / "data" / "memos.db", args.model, args.sample)
    (home / "token").write_text(token)
    (home / "loaded").write_text(str(args.size))
    (home / "seeded").write_text(f"vectors: {args.sample} embedded, the rest near copies\n")
    print(f"seeded {home} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
