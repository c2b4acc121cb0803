"""Hybrid search: FTS5 BM25 and sqlite-vec KNN, fused by reciprocal rank, within the caller's cubes.

Both signals are restricted to readable cubes inside SQL, so nothing from another cube is ever ranked. User
text is never FTS5 syntax: the query is cut into words and each word is a quoted string, OR-ed together.
"""

from __future__ import annotations

import re
from datetime import datetime

from daemon.config import LimitsConfig, SearchConfig
from daemon.errors import InvalidInput
from daemon.filters import MemoryFilter
from daemon.memories import MEMORY_COLUMNS, MEMORY_FROM, Memories, memory_from_row
from daemon.models import Agent, MatchInfo, SearchHit, SearchQuery, SearchResults
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.vectors import VectorIndex

RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the weight of the very top ranks
_WORD = re.compile(r"[^\W_]+")  # letters and digits: what the unicode61 tokenizer keeps
# Dropped from the lexical query unless nothing else is left: they match nearly everything.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _is_stop_word(word: str) -> bool:
    # A lone letter is the tail of a possessive or a contraction ("Rosa's", "don't"): it matches nearly
    # everything and says nothing.
    return word.lower() in STOP_WORDS or (len(word) == 1 and word.isalpha())


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression that treats `text` as plain words, or None if it has no words."""
    # Case is left to the tokenizer, which folds it the same way on both sides of the match.
    words = list(dict.fromkeys(_WORD.findall(text)))
    if not words:
        return None
    content_words = [w for w in words if not _is_stop_word(w)] or words
    return " OR ".join(f'"{w}"' for w in content_words)


class Search:
    def __init__(
        self,
        store: Store,
        memories: Memories,
        vectors: VectorIndex,
        limits: LimitsConfig,
        ranking: SearchConfig,
    ) -> None:
        self._ranking = ranking
        self._store = store
        self._memories = memories
        self._vectors = vectors
        self._limits = limits

    async def search(self, agent: Agent, query: SearchQuery) -> SearchResults:
        text = query.query
        if len(text) > self._limits.max_query_chars:
            raise InvalidInput(
                f"query is {len(text)} characters; the limit is {self._limits.max_query_chars}"
            )
        if "\x00" in text:
            raise InvalidInput("query contains a NUL character")
        match = fts_query(text)
        if match is None:
            raise InvalidInput("query has no words to search for (it is empty or only punctuation)")
        if not 1 <= query.k <= self._limits.max_k:
            raise InvalidInput(f"k must be from 1 to {self._limits.max_k}, got {query.k}")
        where = MemoryFilter.checked(
            self._limits,
            kinds=query.kinds,
            tags=query.tags,
            since=query.since,
            until=query.until,
            source_agent=query.source_agent,
            include_superseded=query.include_superseded,
            as_of=query.as_of,
        )
        wanted = query.mode or "hybrid"
        note = None
        use_vectors = wanted in ("hybrid", "vector") and self._vectors.usable
        if wanted in ("hybrid", "vector") and not use_vectors:
            note = self._vectors_unavailable_reason()
        mode = wanted if use_vectors else "lexical"
        query_vector = (await self._vectors.embed([text])) if use_vectors else None
        if use_vectors and query_vector is None:
            mode, note = "lexical", self._vectors_unavailable_reason()

        predicate, params = where.sql()
        depth = max(query.k * 4, 50)  # candidates per signal before fusion
        async with self._store.read() as conn:
            refs = await self._memories.scope(conn, agent, query.cubes)
            if not refs:
                return SearchResults(results=[], mode=mode, cubes=[], note=note)
            cube_ids = [ref.id for ref in refs]
            lexical: list[int] = []
            if mode in ("hybrid", "lexical"):
                rows = await conn.fetch_all(
                    f"SELECT m.seq FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
                    f" WHERE memories_fts MATCH ? AND m.cube_id IN ({placeholders(len(cube_ids))}) {predicate}"
                    " ORDER BY bm25(memories_fts) LIMIT ?",
                    [match, *cube_ids, *params, depth],
                )
                lexical = [row[0] for row in rows]
            semantic: list[tuple[int, float]] = []
            if query_vector is not None:
                nearest = await self._vectors.nearest(conn, query_vector[0], cube_ids, depth * 2)
                if nearest:
                    # The KNN ran over whole cubes; apply the same filters as the lexical side.
                    keep = {
                        row[0]
                        for row in await conn.fetch_all(
                            f"SELECT m.seq FROM memories m WHERE m.seq IN ({placeholders(len(nearest))}) {predicate}",
                            [seq for seq, _ in nearest] + params,
                        )
                    }
                    semantic = [(seq, sim) for seq, sim in nearest if seq in keep][:depth]
            fused = _fuse(lexical, semantic)
            if fused:
                fused = await self._weigh_time_and_importance(conn, fused, where.as_of)
            fused = fused[: query.k]
            if not fused:
                return SearchResults(results=[], mode=mode, cubes=[r.name for r in refs], note=note)
            seqs = [seq for seq, _, _ in fused]
            rows = await conn.fetch_all(
                f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq IN ({placeholders(len(seqs))})", seqs
            )
        by_seq = {row[0]: memory_from_row(row) for row in rows}
        similarity = dict(semantic)
        hits = []
        for seq, score, ranks in fused:
            memory = by_seq[seq]
            hits.append(
                SearchHit(
                    id=memory.id,
                    cube=memory.cube,
                    content=memory.content,
                    kind=memory.kind,
                    tags=memory.tags,
                    metadata=memory.metadata,
                    source_agent=memory.source_agent,
                    created_at=memory.created_at,
                    occurred_at=memory.occurred_at,
                    importance=memory.importance,
                    score=round(score, 6),
                    match=MatchInfo(
                        lexical_rank=ranks[0],
                        vector_rank=ranks[1],
                        similarity=round(similarity[seq], 4) if seq in similarity else None,
                    ),
                    valid_from=memory.valid_from,
                    valid_to=memory.valid_to,
                    superseded_by=memory.superseded_by,
                )
            )
        return SearchResults(results=hits, mode=mode, cubes=[r.name for r in refs], note=note)

    async def _weigh_time_and_importance(
        self, conn: Connection, fused: list[Fused], as_of: str | None
    ) -> list[Fused]:
        """score × (1 + recency_weight · 2^(-age / half-life) + importance_weight · (importance − ½)),
        with age counted back from `as_of` (or now). Both weights 0 leaves the fused order as it is."""
        weights = self._ranking
        if not weights.recency_weight and not weights.importance_weight:
            return fused
        rows = await conn.fetch_all(
            f"SELECT seq, importance, coalesce(occurred_at, created_at) FROM memories"
            f" WHERE seq IN ({placeholders(len(fused))})",
            [seq for seq, _, _ in fused],
        )
        now = datetime.fromisoformat((as_of or now_iso()).replace("Z", "+00:00"))
        facts = {}
        for seq, importance, when in rows:
            age_days = max(
                0.0, (now - datetime.fromisoformat(when.replace("Z", "+00:00"))).total_seconds() / 86400
            )
            recency = 0.5 ** (age_days / weights.recency_half_life_days)
            facts[seq] = 1 + weights.recency_weight * recency + weights.importance_weight * (importance - 0.5)
        rescored = [(seq, score * facts.get(seq, 1.0), ranks) for seq, score, ranks in fused]
        return sorted(rescored, key=lambda item: (-item[1], item[0]))

    def _vectors_unavailable_reason(self) -> str:
        return self._vectors.unavailable_reason()


Fused = tuple[int, float, tuple[int | None, int | None]]  # seq, score, (lexical rank, vector rank)


def _fuse(lexical: list[int], semantic: list[tuple[int, float]]) -> list[Fused]:
    """Reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the signals that found the memory."""
    scores: dict[int, float] = {}
    ranks: dict[int, list[int | None]] = {}
    for signal, seqs in enumerate((lexical, [seq for seq, _ in semantic])):
        for rank, seq in enumerate(seqs, start=1):
            scores[seq] = scores.get(seq, 0.0) + 1.0 / (RRF_K + rank)
            ranks.setdefault(seq, [None, None])[signal] = rank
    ordered = sorted(scores, key=lambda seq: (-scores[seq], seq))
    return [(seq, scores[seq], (ranks[seq][0], ranks[seq][1])) for seq in ordered]
