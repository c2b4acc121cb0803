"""Fill a `bench/load.py --keep` database to N memories quickly, for latency work on a busy machine.

    python bench/seed.py --keep bench/results/load-db --corpus many-matches --size 100000

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
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed
from bench.corpus import CORPORA
from daemon import sqlite_driver
from daemon.config import DEFAULT_MODEL as MODEL_NAME
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

BATCH = 500


async def load_texts(home: Path, texts: list[str]) -> str:
    port = free_port()
    daemon = start_daemon(write_config(home, port=port, model="none"), home, port)
    try:
        token = daemon.add_agent("bench")
        async with mcp_client(daemon.url, token) as client:
            for start in range(0, len(texts), BATCH):
                items = [{"content": text, "kind": "fact"} for text in texts[start : start + BATCH]]
                await timed(client, "memory_add_batch", {"items": items})
    finally:
        stop_daemon(daemon)
    return token


def store_vectors(db: Path, model: str, sample: int) -> None:
    from fastembed import TextEmbedding

    conn = sqlite_driver.connect(str(db))
    try:
        rows = conn.execute("SELECT seq, cube_id, content FROM memories ORDER BY seq").fetchall()
        embedder = TextEmbedding(MODEL_NAME, specific_model_path=model)
        base = np.asarray(list(embedder.embed([row[2] for row in rows[:sample]])), dtype=np.float32)
        rng = np.random.default_rng(5)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TABLE IF EXISTS memory_vectors")
        conn.execute(
            "CREATE VIRTUAL TABLE memory_vectors USING vec0("
            f"cube_id integer partition key, embedding float[{base.shape[1]}] distance_metric=cosine)"
        )
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            vectors = base[np.arange(start, start + len(chunk)) % len(base)]
            vectors = vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            conn.executemany(
                "INSERT INTO memory_vectors (rowid, cube_id, embedding) VALUES (?, ?, ?)",
                [
                    (seq, cube, vector.tobytes())
                    for (seq, cube, _), vector in zip(chunk, vectors, strict=True)
                ],
            )
        conn.execute("UPDATE memories SET embedded = 1")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_model', ?), ('embedding_dims', ?)",
            (MODEL_NAME, str(base.shape[1])),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, required=True)
    parser.add_argument("--corpus", choices=sorted(CORPORA), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--sample", type=int, default=2000, help="texts embedded by the real model")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    args = parser.parse_args()
    home = args.keep.resolve() / f"{args.corpus}-{args.size}"
    if home.exists():
        raise SystemExit(f"{home} exists; remove it to seed again")
    home.mkdir(parents=True)
    started = time.perf_counter()
    token = anyio.run(load_texts, home, CORPORA[args.corpus][0](args.size))
    store_vectors(home / "data" / "memos.db", args.model, args.sample)
    (home / "token").write_text(token)
    (home / "loaded").write_text(str(args.size))
    (home / "seeded").write_text(f"vectors: {args.sample} embedded, the rest near copies\n")
    print(f"seeded {home} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
