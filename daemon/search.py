"""Search: a pipeline of measured signals, fused by a learnt linear blend of their scores (or by weighted
reciprocal rank), within the caller's cubes.

Each signal scores candidate memories from 0 to 1; `[search.blend]` gives each a weight (0 turns it off):
- lexical: FTS5 BM25 over Porter-stemmed words, stop words dropped (user text is never FTS5 syntax),
  relative to the search's best match;
- exact: the query's numbers, identifiers and names as phrases, scored the same way;
- vector: cosine similarity of the embeddings (exact KNN);
- context: a conversation turn's similarity together with its neighbours' in the same episode,
  q·(v + a·v_before + a·v_after) / (1 + a·n): the turn as if embedded with its neighbours, computed from the
  stored vectors, so it is right even when a neighbour arrives later and costs no second embedding;
- episode: how well the turn's session or thread matches as a whole (its best turns' similarity);
- time: inside the window a time expression in the query names ("last week"), counted from the query's
  reference_time;
- speaker: said by the one the question asks about (metadata role: "you recommended" asks for the
  assistant's words, anything else for the user's own; metadata speaker: the one person the question names);
- entity and graph (daemon/entity_signals.py): the query's entities a memory mentions, and memories reached
  from the best first-stage hits through rare shared entities or links.
Candidates are the lexical, exact, vector (context, entity and graph) signals' best `candidates` each.
Several phrasings (`queries`) each add their candidates, and their scores are averaged; each phrasing's own
best match keeps a place in the top k. Recency and importance then weigh in. Every signal is restricted to
readable cubes and the filters inside SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import anyio
import numpy as np
from anyio.abc import TaskGroup

from daemon.bm25 import best_matches
from daemon.config import LimitsConfig, SearchConfig
from daemon.entities import entities_of, extract, frequencies, holders, linked
from daemon.entity_signals import entity_scores, graph_scores, seed_scores
from daemon.episodes import Placement, around, place
from daemon.errors import InvalidInput, Unavailable
from daemon.fairness import FairGate
from daemon.filters import MemoryFilter
from daemon.fusion import (
    Fused,
    Fusion,
    Gathered,
    best_of,
    context_scores,
    episode_scores,
    fuse,
    weigh_time_and_importance,
)
from daemon.lexical import exact_query, fts_query, matched_terms, query_words
from daemon.lexical_index import LexicalIndex
from daemon.memories import MEMORY_COLUMNS, MEMORY_FROM, Memories, memory_from_row
from daemon.models import Agent, ContextTurn, MatchInfo, SearchHit, SearchMode, SearchQuery, SearchResults
from daemon.phrasings import guarantee, leaders
from daemon.policy import CubeRef
from daemon.query_vectors import Pending, QueryVectors
from daemon.reranker import Reranker
from daemon.speaker import without_speaker_names
from daemon.store import Connection, Store, placeholders
from daemon.temporal import TimeWindow, resolve
from daemon.timeutil import now_iso, parse_moment, stored_moment
from daemon.vectors import VectorIndex

__all__ = ["Search"]

MAX_PHRASINGS = 5
MAX_CONTEXT_WINDOW = 5
GRAPH_SEEDS = 5  # the best first-stage hits the graph signal starts from, per phrasing
MAX_HOLDERS = 50  # an entity more memories hold is too common to follow or to bring candidates
MAX_REACHED = 2000  # (memory, entity) pairs read when following entities


class Search:
    def __init__(
        self,
        store: Store,
        memories: Memories,
        vectors: VectorIndex,
        limits: LimitsConfig,
        ranking: SearchConfig,
        reranker: Reranker,
        gate: FairGate,
    ) -> None:
        self.gate = gate
        self.query_vectors = QueryVectors(vectors)
        self._ranking = ranking
        self._reranker = reranker
        self._store = store
        self._memories = memories
        self._vectors = vectors
        self._limits = limits
        self.lexical_index: LexicalIndex | None = None  # BM25 in memory ([search] lexical_index)

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
        """Up to `gate.slots` searches run at once; when more are asked for, agents take turns. A search
        that waits for its turn leaves its query with `query_vectors`, so the search whose turn comes first
        embeds the waiting ones' queries with its own, in one model call (daemon/query_vectors.py)."""
        plan = await self._plan(query)
        if plan.embed:
            plan.pending = self.query_vectors.ask(plan.texts)
        try:
            async with self.gate.slot(agent.name):
                return await self._search(agent, query, plan)
        finally:
            if plan.pending is not None:
                self.query_vectors.withdraw(plan.pending)

    async def _search(self, agent: Agent, query: SearchQuery, plan: _Plan) -> SearchResults:
        rerank = self._reranker.state == "ready"
        await self._embed(plan)
        cubes, found, fusion, fused, top, hits = await self._store.long_read(
            partial(self._read, agent, query, plan, rerank)
        )
        notes = [plan.note, self._reranker.unavailable_reason()]
        if top:  # outside the read: the model must not hold one of the few reader connections
            reranked: dict[int, float] = {}
            try:
                fused, reranked = await self._rerank(fused, top, plan.texts[0])
            except Unavailable as exc:
                notes.append(str(exc))
            best = fused[: query.k]
            hits = await self._store.long_read(
                lambda conn: self._hits(conn, best, found, fusion, query.context_window, plan, reranked)
            )
        return SearchResults(
            results=hits,
            mode=plan.mode,
            cubes=cubes,
            note="; ".join(note for note in notes if note) or None,
            time_window=plan.window,
        )

    async def _read(
        self, agent: Agent, query: SearchQuery, plan: _Plan, rerank: bool, conn: Connection
    ) -> tuple[list[str], Gathered, Fusion, list[Fused], dict[int, str], list[SearchHit]]:
        """A search's reads (`Store.long_read`): the cubes in scope, the fused candidates, and either the
        hits or, when the re-ranker will order them, the best candidates' contents (`top`)."""
        refs, found = await self._scoped(conn, agent, query, plan)
        fusion = fuse(found, self._ranking)
        fused = fusion.ranked
        if fused and (self._ranking.recency_weight or self._ranking.importance_weight):
            fused = await self._weigh_time_and_importance(
                conn, fused, self._ranking, plan.where.as_of, found.placement
            )
        if len(plan.texts) > 1 and fused:
            fused = self._each_phrasing_kept(fused, found, query.k)
        top: dict[int, str] = {}
        if fused and rerank:
            top = await self._contents(conn, [seq for seq, _ in fused[: self._reranker.config.candidates]])
        hits = (
            []
            if top
            else await self._hits(conn, fused[: query.k], found, fusion, query.context_window, plan, {})
        )
        return [ref.name for ref in refs], found, fusion, fused, top, hits

    def _each_phrasing_kept(self, fused: list[Fused], found: Gathered, k: int) -> list[Fused]:
        """Each phrasing's best match kept in the top k (daemon/phrasings.py)."""
        weights = {"lexical": self._ranking.weight("lexical"), "vector": self._ranking.weight("vector")}
        if self._ranking.fusion == "rrf":
            weights = {"lexical": 1.0, "vector": 1.0}
        best = leaders(found.bm25["lexical"], found.similarity, weights, {seq for seq, _ in fused})
        return guarantee(fused, best, k)

    @staticmethod
    async def _contents(conn: Connection, seqs: list[int]) -> dict[int, str]:
        rows = await conn.rows(
            f"SELECT seq, content FROM memories WHERE seq IN ({placeholders(len(seqs))})", seqs
        )
        return {row["seq"]: row["content"] for row in rows}

    async def _rerank(
        self, fused: list[Fused], top: dict[int, str], query: str
    ) -> tuple[list[Fused], dict[int, float]]:
        """The re-ranker's order for the best fused results (`top`: their contents), the rest after them."""
        head = [item for item in fused[: len(top)] if item[0] in top]
        scores = await self._reranker.scores(query, [top[seq] for seq, _ in head])
        by_seq = {seq: score for (seq, _), score in zip(head, scores, strict=True)}
        order = sorted(head, key=lambda item: (-by_seq[item[0]], item[0]))
        return order + [item for item in fused if item[0] not in by_seq], by_seq

    async def candidates(self, agent: Agent, query: SearchQuery) -> Gathered:
        """Every candidate with its rank in each signal, before fusion (for tuning the weights)."""
        plan = await self._plan(query)
        await self._embed(plan)
        _, found = await self._store.long_read(partial(self._scoped, agent=agent, query=query, plan=plan))
        return found

    async def _scoped(
        self, conn: Connection, agent: Agent, query: SearchQuery, plan: _Plan
    ) -> tuple[list[CubeRef], Gathered]:
        """The cubes the search covers (each checked against the agent's permissions, now) and its candidates."""
        refs = await self._memories.scope(conn, agent, query.cubes)
        return refs, await self._gather(conn, plan, [ref.id for ref in refs]) if refs else plan.nothing()

    async def _embed(self, plan: _Plan) -> None:
        """The query vectors, if the plan wants them: perhaps made already, with another search's (on the
        event loop, before the reads: a reader's thread never waits for the model's turn). None, and the
        search lexical, when the model cannot make them now."""
        if not plan.embed:
            return
        if plan.pending is not None:
            made = await self.query_vectors.vectors(plan.pending)
        else:
            made = await self._vectors.embed(plan.texts)
        plan.vectors, plan.embed = made, False
        if made is None:
            plan.mode, plan.note = "lexical", self._vectors.unavailable_reason()

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
        if self._ranking.weight("time"):
            moment = reference or stored_moment(where.as_of or now_iso())
            window = next((w for w in (resolve(text, moment) for text in texts) if w is not None), None)
        wanted = query.mode or "hybrid"
        note = None
        use_vectors = wanted in ("hybrid", "vector") and self._vectors.usable
        if wanted in ("hybrid", "vector") and not use_vectors:
            note = self._vectors.unavailable_reason()
        mode = wanted if use_vectors else "lexical"
        depth = max(query.k * 4, self._ranking.candidates)
        # The query vectors are made before the reads (`_embed`).
        return _Plan(texts, where, window, mode, note, None, depth, embed=use_vectors)  # type: ignore[arg-type]

    async def _gather(
        self, conn: Connection, plan: _Plan, cube_ids: list[int], asked: list[str] | None = None
    ) -> Gathered:
        """Run every signal that is on and place the candidates in their episodes. When the phrasings name
        one speaker of the candidates' turns, the signals run again without the name (`drop_named_speaker`);
        `asked`: then the phrasings as asked, which the speaker rules read."""
        config, depth = self._ranking, plan.depth
        predicate, params = plan.where.sql()
        found = Gathered.empty(plan.texts, plan.window, asked)
        scored, nearest_of = await self._candidate_lists(conn, plan, cube_ids, predicate, params)
        for index in range(len(plan.texts)):
            for name in ("lexical", "exact"):
                if (name, index) in scored:
                    found.add_scored(name, index, scored[name, index])
            if plan.vectors is not None:
                nearest = nearest_of[index]
                found.add("vector", [seq for seq, _ in nearest])
                found.similarity[index].update(nearest)
        if config.fusion == "blend" and (config.weight("entity") or config.weight("graph")):
            await self._entities_and_graph(conn, found, plan, cube_ids, predicate, params)
        pool = found.pool()
        if not pool:
            return found
        blend = config.fusion == "blend"
        use_context = plan.vectors is not None and config.weight("context") > 0
        use_episode = config.weight("episode") > 0
        score_episodes = blend and use_episode and plan.vectors is not None
        if not (blend or use_context or use_episode or plan.window):
            return found  # plain reciprocal rank fusion: no episode, speaker or time to look at
        whole_episodes = use_context or score_episodes
        found.placement = await place(conn, pool, predicate, params, whole_episodes=whole_episodes)
        if asked is None and blend and config.drop_named_speaker and config.weight("speaker"):
            unnamed = without_speaker_names(plan.texts, found.placement.speaker.values())
            if unnamed is not None and all(fts_query(text) for text in unnamed):
                again = replace(
                    plan, texts=unnamed, vectors=None, embed=plan.vectors is not None, pending=None
                )
                found = await self._gather(conn, again, cube_ids, asked=plan.texts)
                plan.mode, plan.note = again.mode, again.note
                return found
        if plan.vectors is not None:
            every = list(found.placement.when)
            for index, similarity in enumerate(found.similarity):
                missing = [seq for seq in every if seq not in similarity]
                similarity.update(await self._vectors.similarities(conn, plan.vectors[index], missing))
        if use_context:
            for index in range(len(plan.texts)):
                share, before, after = (
                    config.context_neighbour_share,
                    config.context_before,
                    config.context_after,
                )
                found.context.append(context_scores(found, index, share, before, after))
                best = sorted(found.context[index].items(), key=lambda item: (-item[1], item[0]))
                found.add("context", [seq for seq, _ in best[:depth]])
        if score_episodes:  # after context: over the whole pool, context's candidates included
            for index in range(len(plan.texts)):
                found.episode_score.append(episode_scores(found, index))
        return found

    async def _candidate_lists(
        self, conn: Connection, plan: _Plan, cube_ids: list[int], predicate: str, params: list
    ) -> tuple[dict[tuple[str, int], list[tuple[int, float]]], dict[int, list[tuple[int, float]]]]:
        """Each phrasing's lexical and exact (seq, BM25) lists and its nearest (seq, similarity) list. On SQLite
        they are found one after another, in place on the reader's thread (daemon/reader_threads.py: searches
        at once use the cores); on PostgreSQL the KNN works on a worker thread while the server ranks."""
        config, depth = self._ranking, plan.depth
        scored: dict[tuple[str, int], list[tuple[int, float]]] = {}
        nearest_of: dict[int, list[tuple[int, float]]] = {}

        async def lexical(name: str, index: int, expression: str) -> None:
            scored[name, index] = await self._bm25(conn, expression, cube_ids, plan.where, depth)

        def start_lexical(tg: TaskGroup) -> None:
            for index, text in enumerate(plan.texts):
                for name, build in (("lexical", fts_query), ("exact", exact_query)):
                    expression = build(text) if config.weight(name) else None
                    if expression:
                        tg.start_soon(lexical, name, index, expression)

        async def vector(tg: TaskGroup) -> None:
            if plan.embed:  # the phrasings without a speaker's name (`_gather`)
                asked = plan.mode
                await self._embed(plan)
                if plan.vectors is None:
                    if asked == "vector":  # its lexical queries were not started
                        start_lexical(tg)
                    return
            if plan.vectors is not None:
                for index, query in enumerate(plan.vectors):
                    nearest_of[index] = await self._nearest(conn, query, cube_ids, predicate, params, depth)

        async with anyio.create_task_group() as tg:
            tg.start_soon(vector, tg)
            if plan.mode in ("hybrid", "lexical"):
                start_lexical(tg)
        return scored, nearest_of

    async def _entities_and_graph(
        self,
        conn: Connection,
        found: Gathered,
        plan: _Plan,
        cube_ids: list[int],
        predicate: str,
        params: list,
    ) -> None:
        """The entity and graph signals (each when on), and the candidates they bring."""
        config, depth = self._ranking, plan.depth
        seeds: dict[int, float] = {}
        if config.weight("graph"):
            for index in range(len(plan.texts)):
                lexical = found.bm25["lexical"][index] if index < len(found.bm25["lexical"]) else {}
                for seq, score in seed_scores(lexical, found.similarity[index], GRAPH_SEEDS).items():
                    seeds[seq] = max(seeds.get(seq, 0.0), score)
        seed_pairs = [(seq, e) for seq, held in (await entities_of(conn, seeds)).items() for e in held]
        wanted = set().union(*(extract(text) for text in plan.texts)) if config.weight("entity") else set()
        frequency = await frequencies(conn, cube_ids, wanted | {entity for _, entity in seed_pairs})
        if wanted:
            rare = {entity for entity in wanted if frequency.get(entity, 0) <= MAX_HOLDERS}
            matches = await holders(conn, cube_ids, rare, predicate, params, MAX_REACHED)
            pool = found.pool()
            matches += [
                (seq, entity)
                for seq, held in (await entities_of(conn, pool)).items()
                for entity in held
                if entity in wanted and entity not in rare
            ]
            found.entity_score = entity_scores(wanted, matches, frequency)
            found.add("entity", best_of(found.entity_score, depth))
        if seeds:
            rare = {entity for _, entity in seed_pairs if frequency.get(entity, 0) <= MAX_HOLDERS}
            reached = await holders(conn, cube_ids, rare, predicate, params, MAX_REACHED)
            links = await linked(conn, list(seeds), cube_ids, predicate, params)
            found.graph_score = graph_scores(seeds, seed_pairs, reached, frequency, links)
            found.add("graph", best_of(found.graph_score, depth))
        elif config.weight("graph"):
            found.graph_score = {}

    async def _bm25(
        self,
        conn: Connection,
        expression: str,
        cube_ids: list[int],
        where: MemoryFilter,
        depth: int,
    ) -> list[tuple[int, float]]:
        """(seq, BM25) best first; FTS5's BM25 is negative, the more so the better the match."""
        predicate, params = where.sql()
        # Filters that may leave out most memories make FTS5's own best few too few to keep.
        narrow = bool(where.kinds or where.tags or where.since or where.until or where.source_agent)
        narrow = narrow or bool(where.as_of or where.task_id)
        if self.lexical_index is not None and not narrow:
            found = await self.lexical_index.best_matches(
                conn, expression, cube_ids, predicate, params, depth
            )
            if found is not None:
                return found
        return await best_matches(conn, expression, cube_ids, predicate, params, depth, try_top=not narrow)

    async def _nearest(
        self,
        conn: Connection,
        vector: np.ndarray,
        cube_ids: list[int],
        predicate: str,
        params: list,
        depth: int,
    ) -> list[tuple[int, float]]:
        # The KNN runs over whole cubes (deleted, superseded and expired memories keep their vectors): of
        # its 2 * depth nearest, those that pass the same filters as the lexical side.
        return await self._vectors.nearest_passing(
            conn, vector, cube_ids, depth * 2, (predicate, params), depth
        )

    async def _hits(
        self,
        conn: Connection,
        fused: list[Fused],
        found: Gathered,
        fusion: Fusion,
        context_window: int,
        plan: _Plan,
        reranked: dict[int, float],
    ) -> list[SearchHit]:
        if not fused:
            return []
        seqs = [seq for seq, _ in fused]
        neighbours: dict[int, list[tuple[int, int]]] = {}
        if context_window:
            neighbours = await around(conn, seqs, context_window, *plan.where.sql())
        wanted = seqs + [n for pairs in neighbours.values() for _, n in pairs]
        rows = await conn.rows(
            f"SELECT {MEMORY_COLUMNS}, m.episode FROM {MEMORY_FROM} WHERE m.seq IN ({placeholders(len(wanted))})",
            wanted,
        )
        by_seq = {row["seq"]: memory_from_row(row) for row in rows}
        episode_of = {row["seq"]: row["episode"] for row in rows}  # the generated column, as grouped
        words = list(dict.fromkeys(w for text in plan.texts for w in query_words(text)))
        explained = fusion.signals
        hits = []
        for seq, score in fused:
            memory = by_seq.get(seq)
            if memory is None:  # purged while a re-ranker read the results outside the transaction
                continue
            episode = episode_of[seq]
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
                        episode_rank=fusion.episode_rank.get(seq),
                        similarity=found.best_similarity(seq),
                        terms=matched_terms(words, memory.content),
                        episode=None if episode is None else str(episode),
                        in_time_window=found.in_window(seq),
                        signals={name: round(value, 4) for name, value in explained.get(seq, {}).items()},
                        rerank_score=round(reranked[seq], 6) if seq in reranked else None,
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

    @staticmethod
    async def _weigh_time_and_importance(
        conn: Connection, fused: list[Fused], config: SearchConfig, as_of: str | None, placement: Placement
    ) -> list[Fused]:
        """Recency and importance weighed in (daemon/fusion.py), with age counted back from `as_of` (or now)."""
        seqs = [seq for seq, _ in fused]
        if all(seq in placement.importance for seq in seqs):  # placed already (the blend always is)
            facts = {seq: (placement.importance[seq], placement.when[seq]) for seq in seqs}
        else:
            rows = await conn.rows(
                f"SELECT seq, importance, coalesce(occurred_at, created_at) AS happened_at FROM memories"
                f" WHERE seq IN ({placeholders(len(seqs))})",
                seqs,
            )
            facts = {row["seq"]: (row["importance"], row["happened_at"]) for row in rows}
        return weigh_time_and_importance(fused, facts, stored_moment(as_of or now_iso()), config)


@dataclass
class _Plan:
    texts: list[str]
    where: MemoryFilter
    window: TimeWindow | None
    mode: SearchMode
    note: str | None
    vectors: np.ndarray | None
    depth: int
    embed: bool = False  # the vectors are still to be made
    pending: Pending | None = None  # the vectors, asked for before the search's turn (`QueryVectors`)

    def nothing(self) -> Gathered:
        """No candidates gathered yet for this plan's phrasings."""
        return Gathered.empty(self.texts, self.window)
