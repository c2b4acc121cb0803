"""Search: a pipeline of measured signals fused by weighted reciprocal rank, within the caller's cubes.

Each signal ranks candidate memories; `[search]` gives each a weight (0 turns it off):
- lexical: FTS5 BM25 over Porter-stemmed words, stop words dropped (user text is never FTS5 syntax);
- exact: the query's numbers, identifiers and names as phrases;
- vector: cosine similarity of the embeddings (exact KNN);
- context: a conversation turn's similarity together with its neighbours' in the same episode,
  q·(v + a·v_before + a·v_after) / (1 + a·n): the turn as if embedded with its neighbours, computed from the
  stored vectors, so it is right even when a neighbour arrives later and costs no second embedding;
- episode: the rank of the turn's session or thread, scored by its best turns (a session about the topic
  lifts all its turns a little);
- time: memories inside the window a time expression in the query names ("last week"), counted from the
  query's reference_time.
Several phrasings (`queries`) each add their lexical, exact, vector and context lists. Recency and
importance then weigh in. Every signal is restricted to readable cubes and the filters inside SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daemon.config import LimitsConfig, SearchConfig
from daemon.episodes import Placement, around, place
from daemon.errors import InvalidInput
from daemon.filters import MemoryFilter
from daemon.lexical import STOP_WORDS, exact_query, fts_query, matched_terms, query_words
from daemon.memories import MEMORY_COLUMNS, MEMORY_FROM, Memories, memory_from_row
from daemon.models import Agent, ContextTurn, MatchInfo, SearchHit, SearchMode, SearchQuery, SearchResults
from daemon.store import Connection, Store, placeholders
from daemon.temporal import TimeWindow, resolve
from daemon.timeutil import now_iso, parse_moment, stored_moment
from daemon.vectors import VectorIndex

__all__ = ["STOP_WORDS", "Search", "fts_query"]

MAX_PHRASINGS = 5
MAX_CONTEXT_WINDOW = 5
EPISODE_TOP_TURNS = 3  # an episode scores the sum of its best turns' scores

Ranks = dict[int, int]  # seq -> rank (1 = best)


def ranked(seqs: list[int]) -> Ranks:
    ranks: Ranks = {}
    for seq in seqs:
        ranks.setdefault(seq, len(ranks) + 1)
    return ranks


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

    def _checked_texts(self, query: SearchQuery) -> list[str]:
        texts = [query.query, *(query.queries or [])]
        if len(texts) > MAX_PHRASINGS:
            raise InvalidInput(
                f"queries may hold up to {MAX_PHRASINGS - 1} more phrasings, got {len(texts) - 1}"
            )
        for index, text in enumerate(texts):
            field = "query" if index == 0 else f"queries[{index - 1}]"
            if len(text) > self._limits.max_query_chars:
                raise InvalidInput(
                    f"{field} is {len(text)} characters; the limit is {self._limits.max_query_chars}"
                )
            if "\x00" in text:
                raise InvalidInput(f"{field} contains a NUL character")
            if fts_query(text) is None:
                raise InvalidInput(f"{field} has no words to search for (it is empty or only punctuation)")
        return list(dict.fromkeys(texts))

    async def search(self, agent: Agent, query: SearchQuery) -> SearchResults:
        plan = await self._plan(query)
        async with self._store.read() as conn:
            refs = await self._memories.scope(conn, agent, query.cubes)
            cubes = [ref.name for ref in refs]
            found = await self._gather(conn, plan, [ref.id for ref in refs]) if refs else Gathered.empty(plan)
            fused = fuse(found, self._ranking)
            if fused and (self._ranking.recency_weight or self._ranking.importance_weight):
                fused = await self._weigh_time_and_importance(conn, fused, plan.where.as_of)
            fused = fused[: query.k]
            hits = await self._hits(conn, fused, found, query.context_window, plan) if fused else []
        return SearchResults(
            results=hits, mode=plan.mode, cubes=cubes, note=plan.note, time_window=plan.window
        )

    async def candidates(self, agent: Agent, query: SearchQuery) -> Gathered:
        """Every candidate with its rank in each signal, before fusion (for tuning the weights)."""
        plan = await self._plan(query)
        async with self._store.read() as conn:
            refs = await self._memories.scope(conn, agent, query.cubes)
            return await self._gather(conn, plan, [ref.id for ref in refs]) if refs else Gathered.empty(plan)

    async def _plan(self, query: SearchQuery) -> _Plan:
        """The checked query: its phrasings, filters, time window, mode and query vectors."""
        texts = self._checked_texts(query)
        if not 1 <= query.k <= self._limits.max_k:
            raise InvalidInput(f"k must be from 1 to {self._limits.max_k}, got {query.k}")
        if not 0 <= query.context_window <= MAX_CONTEXT_WINDOW:
            raise InvalidInput(
                f"context_window must be from 0 to {MAX_CONTEXT_WINDOW}, got {query.context_window}"
            )
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
        # The asker's own offset is kept: "yesterday" is a day of theirs.
        reference = parse_moment(query.reference_time, "reference_time") if query.reference_time else None
        window = None
        if self._ranking.time_weight:
            moment = reference or stored_moment(where.as_of or now_iso())
            window = next((w for w in (resolve(text, moment) for text in texts) if w is not None), None)
        wanted = query.mode or "hybrid"
        note = None
        use_vectors = wanted in ("hybrid", "vector") and self._vectors.usable
        if wanted in ("hybrid", "vector") and not use_vectors:
            note = self._vectors.unavailable_reason()
        mode = wanted if use_vectors else "lexical"
        vectors = (await self._vectors.embed(texts)) if use_vectors else None
        if use_vectors and vectors is None:
            mode, note = "lexical", self._vectors.unavailable_reason()
        depth = max(query.k * 4, self._ranking.candidates)
        return _Plan(texts, where, window, mode, note, vectors, depth)  # type: ignore[arg-type]

    async def _gather(self, conn: Connection, plan: _Plan, cube_ids: list[int]) -> Gathered:
        """Run every signal that is on and place the candidates in their episodes."""
        weights, depth = self._ranking, plan.depth
        predicate, params = plan.where.sql()
        found = Gathered.empty(plan)
        for index, text in enumerate(plan.texts):
            if plan.mode in ("hybrid", "lexical"):
                for name, build in (("lexical", fts_query), ("exact", exact_query)):
                    expression = build(text) if getattr(weights, f"{name}_weight") else None
                    if expression:
                        found.add(
                            name, await self._bm25(conn, expression, cube_ids, predicate, params, depth)
                        )
            if plan.vectors is not None:
                nearest = await self._nearest(conn, plan.vectors[index], cube_ids, predicate, params, depth)
                found.add("vector", [seq for seq, _ in nearest])
                found.similarity[index].update(nearest)
        pool = found.pool()
        if not pool:
            return found
        use_context = plan.vectors is not None and weights.context_weight > 0
        if not (use_context or weights.episode_weight or (plan.window and weights.time_weight)):
            return found  # the plain hybrid: no episode or time to look at
        found.placement = await place(conn, pool, predicate, params, whole_episodes=use_context)
        if plan.vectors is not None:
            every = list(found.placement.when)
            for index, similarity in enumerate(found.similarity):
                missing = [seq for seq in every if seq not in similarity]
                similarity.update(await self._vectors.similarities(conn, plan.vectors[index], missing))
        if use_context:
            for index in range(len(plan.texts)):
                found.add("context", self._context_order(found, index, depth))
        return found

    async def _bm25(
        self, conn: Connection, expression: str, cube_ids: list[int], predicate: str, params: list, depth: int
    ) -> list[int]:
        rows = await conn.fetch_all(
            f"SELECT m.seq FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND m.cube_id IN ({placeholders(len(cube_ids))}) {predicate}"
            " ORDER BY bm25(memories_fts) LIMIT ?",
            [expression, *cube_ids, *params, depth],
        )
        return [row[0] for row in rows]

    async def _nearest(
        self,
        conn: Connection,
        vector: np.ndarray,
        cube_ids: list[int],
        predicate: str,
        params: list,
        depth: int,
    ) -> list[tuple[int, float]]:
        nearest = await self._vectors.nearest(conn, vector, cube_ids, depth * 2)
        if not nearest:
            return []
        # The KNN ran over whole cubes; apply the same filters as the lexical side.
        keep = {
            row[0]
            for row in await conn.fetch_all(
                f"SELECT m.seq FROM memories m WHERE m.seq IN ({placeholders(len(nearest))}) {predicate}",
                [seq for seq, _ in nearest] + params,
            )
        }
        return [(seq, sim) for seq, sim in nearest if seq in keep][:depth]

    def _context_order(self, found: Gathered, index: int, depth: int) -> list[int]:
        """Candidates by their similarity blended with their neighbours' (a memory without an episode keeps
        its own), best first."""
        share = self._ranking.context_neighbour_share
        similarity = found.similarity[index]
        scored = []
        for seq in found.placement.when:
            if seq not in similarity:
                continue
            around_it = [similarity[n] for n in found.placement.neighbours(seq) if n in similarity]
            blended = (similarity[seq] + share * sum(around_it)) / (1 + share * len(around_it))
            scored.append((blended, seq))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [seq for _, seq in scored[:depth]]

    async def _hits(
        self, conn: Connection, fused: list[Fused], found: Gathered, context_window: int, plan: _Plan
    ) -> list[SearchHit]:
        seqs = [seq for seq, _ in fused]
        neighbours: dict[int, list[tuple[int, int]]] = {}
        if context_window:
            neighbours = await around(conn, seqs, context_window, *plan.where.sql())
        wanted = seqs + [n for pairs in neighbours.values() for _, n in pairs]
        rows = await conn.fetch_all(
            f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq IN ({placeholders(len(wanted))})", wanted
        )
        by_seq = {row[0]: memory_from_row(row) for row in rows}
        words = list(dict.fromkeys(w for text in plan.texts for w in query_words(text)))
        hits = []
        for seq, score in fused:
            memory = by_seq[seq]
            episode = memory.metadata.get("session")  # as the episode column reads it: session, else thread
            episode = memory.metadata.get("thread") if episode is None else episode
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
                        lexical_rank=found.best("lexical", seq),
                        exact_rank=found.best("exact", seq),
                        vector_rank=found.best("vector", seq),
                        context_rank=found.best("context", seq),
                        episode_rank=found.episode_rank.get(seq),
                        similarity=found.best_similarity(seq),
                        terms=matched_terms(words, memory.content),
                        episode=None if episode is None else str(episode),
                        in_time_window=found.in_window(seq),
                    ),
                    valid_from=memory.valid_from,
                    valid_to=memory.valid_to,
                    superseded_by=memory.superseded_by,
                    context=[
                        ContextTurn(
                            id=by_seq[n].id,
                            content=by_seq[n].content,
                            offset=offset,
                            occurred_at=by_seq[n].occurred_at,
                            metadata=by_seq[n].metadata,
                        )
                        for offset, n in neighbours.get(seq, [])
                        if n in by_seq
                    ],
                )
            )
        return hits

    async def _weigh_time_and_importance(
        self, conn: Connection, fused: list[Fused], as_of: str | None
    ) -> list[Fused]:
        """score × (1 + recency_weight · 2^(-age / half-life) + importance_weight · (importance − ½)),
        with age counted back from `as_of` (or now)."""
        weights = self._ranking
        rows = await conn.fetch_all(
            f"SELECT seq, importance, coalesce(occurred_at, created_at) FROM memories"
            f" WHERE seq IN ({placeholders(len(fused))})",
            [seq for seq, _ in fused],
        )
        now = stored_moment(as_of or now_iso())
        facts = {}
        for seq, importance, when in rows:
            age_days = max(0.0, (now - stored_moment(when)).total_seconds() / 86400)
            recency = 0.5 ** (age_days / weights.recency_half_life_days)
            facts[seq] = 1 + weights.recency_weight * recency + weights.importance_weight * (importance - 0.5)
        rescored = [(seq, score * facts.get(seq, 1.0)) for seq, score in fused]
        return sorted(rescored, key=lambda item: (-item[1], item[0]))


Fused = tuple[int, float]  # seq, score
TURN_SIGNALS = ("lexical", "exact", "vector", "context")


@dataclass
class _Plan:
    texts: list[str]
    where: MemoryFilter
    window: TimeWindow | None
    mode: SearchMode
    note: str | None
    vectors: np.ndarray | None
    depth: int


@dataclass
class Gathered:
    """The candidates of one search: per signal, one ranking per phrasing; their similarities and places."""

    phrasings: int
    window: TimeWindow | None
    lists: dict[str, list[Ranks]] = field(default_factory=lambda: {name: [] for name in TURN_SIGNALS})
    similarity: list[dict[int, float]] = field(default_factory=list)
    placement: Placement = field(default_factory=Placement)
    episode_rank: Ranks = field(default_factory=dict)  # filled by `fuse`, for the explanation

    @classmethod
    def empty(cls, plan: _Plan) -> Gathered:
        return cls(len(plan.texts), plan.window, similarity=[{} for _ in plan.texts])

    def add(self, name: str, seqs: list[int]) -> None:
        self.lists[name].append(ranked(seqs))

    def pool(self) -> set[int]:
        return {seq for lists in self.lists.values() for ranks in lists for seq in ranks}

    def best(self, name: str, seq: int) -> int | None:
        found = [ranks[seq] for ranks in self.lists[name] if seq in ranks]
        return min(found) if found else None

    def best_similarity(self, seq: int) -> float | None:
        found = [sims[seq] for sims in self.similarity if seq in sims]
        return round(max(found), 4) if found else None

    def in_window(self, seq: int) -> bool:
        window = self.window
        return window is not None and window.start <= self.placement.when.get(seq, "") < window.end


def fuse(found: Gathered, weights: SearchConfig) -> list[Fused]:
    """Weighted reciprocal rank fusion: first the turn-level signals; then the episode and time signals,
    which rank by that first fusion. Best first."""
    share = 1.0 / found.phrasings  # several phrasings share one signal's weight
    scores: dict[int, float] = {}
    for name in TURN_SIGNALS:
        weight = getattr(weights, f"{name}_weight") * share
        for ranks in found.lists[name]:
            for seq, rank in ranks.items():
                scores[seq] = scores.get(seq, 0.0) + weight / (weights.rrf_k + rank)
    final = dict(scores)
    if weights.episode_weight and scores:
        by_episode: dict[object, list[float]] = {}
        for seq, score in scores.items():
            by_episode.setdefault(found.placement.key(seq), []).append(score)
        strength = {
            key: sum(sorted(values, reverse=True)[:EPISODE_TOP_TURNS]) for key, values in by_episode.items()
        }
        order = {
            key: rank for rank, key in enumerate(sorted(strength, key=lambda key: -strength[key]), start=1)
        }
        found.episode_rank = {seq: order[found.placement.key(seq)] for seq in scores}
        for seq, rank in found.episode_rank.items():
            final[seq] += weights.episode_weight / (weights.rrf_k + rank)
    if found.window is not None and weights.time_weight:
        inside = sorted((seq for seq in scores if found.in_window(seq)), key=lambda seq: -scores[seq])
        for rank, seq in enumerate(inside, start=1):
            final[seq] += weights.time_weight / (weights.rrf_k + rank)
    return sorted(final.items(), key=lambda item: (-item[1], item[0]))
