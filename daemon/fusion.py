"""Fusion: the signals of a search's candidates and the one ranking they make, as pure functions.

Search (daemon/search.py) gathers the candidates into a `Gathered`: per signal one ranking (and scores) per
phrasing, and where each candidate sits (its episode, time, speaker: daemon/episodes.py). Everything here
reads a `Gathered` and returns new values: no I/O, and no input is changed, so a benchmark can fuse the same
gathered candidates under many weightings without searching again (bench/retrieval.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from daemon.config import BlendWeights, RankWeights, SearchConfig
from daemon.episodes import Placement
from daemon.speaker import Speaker, asked_about, named_speaker, speaker_signal
from daemon.temporal import TimeWindow
from daemon.timeutil import stored_moment

__all__ = [
    "SIGNALS",
    "Fused",
    "Fusion",
    "Gathered",
    "Ranks",
    "best_of",
    "blend",
    "context_scores",
    "episode_scores",
    "fuse",
    "ranked",
    "reciprocal_rank_fusion",
    "signals",
    "spread_over_episodes",
    "weigh_time_and_importance",
]

Ranks = dict[int, int]  # seq -> rank (1 = best)
Fused = tuple[int, float]  # seq, score
Signals = dict[int, dict[str, float]]  # seq -> signal -> value from 0 to 1
TURN_SIGNALS = ("lexical", "exact", "vector", "context")
SIGNALS = ("lexical", "exact", "vector", "context", "episode", "time", "speaker", "entity", "graph")
TEXT_MATCH = ("lexical", "vector", "context", "episode")  # how well the text matches, each its own way
EPISODE_TOP_TURNS = 3  # an episode scores by its best turns


def ranked(seqs: list[int]) -> Ranks:
    """Ranks of `seqs`, best first; a repeat keeps its first rank."""
    ranks: Ranks = {}
    for seq in seqs:
        ranks.setdefault(seq, len(ranks) + 1)
    return ranks


def best_of(scores: Mapping[int, float], count: int) -> list[int]:
    """The `count` best-scored seqs, best first (ties: the lower seq first)."""
    return [seq for seq, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:count]]


@dataclass
class Gathered:
    """The candidates of one search: per signal, one ranking (and score) per phrasing; their places."""

    phrasings: int
    window: TimeWindow | None
    speaker: Speaker | None  # whose words the question is after (None: it does not say)
    texts: list[str] = field(default_factory=list)  # the phrasings, for the speakers they name
    lists: dict[str, list[Ranks]] = field(
        default_factory=lambda: {name: [] for name in (*TURN_SIGNALS, "entity", "graph")}
    )
    # Per phrasing, seq -> BM25 relative to that phrasing's best match (1 = the best).
    bm25: dict[str, list[dict[int, float]]] = field(default_factory=lambda: {"lexical": [], "exact": []})
    similarity: list[dict[int, float]] = field(default_factory=list)
    context: list[dict[int, float]] = field(default_factory=list)
    episode_score: list[dict[int, float]] = field(default_factory=list)
    placement: Placement = field(default_factory=Placement)
    entity_score: dict[int, float] | None = None  # None: the signal is off
    graph_score: dict[int, float] | None = None

    @classmethod
    def empty(cls, texts: list[str], window: TimeWindow | None, asked: list[str] | None = None) -> Gathered:
        """Nothing gathered yet for these phrasings; `asked`: the phrasings as asked, if `texts` were changed
        (the speaker rules read those)."""
        asked = texts if asked is None else asked
        return cls(
            len(texts),
            window,
            asked_about(asked),
            texts=list(asked),
            similarity=[{} for _ in texts],
        )

    def add(self, name: str, seqs: list[int]) -> None:
        self.lists[name].append(ranked(seqs))

    def add_scored(self, name: str, index: int, scored: list[tuple[int, float]]) -> None:
        """A BM25 signal's (seq, bm25) best first, for phrasing `index`."""
        self.add(name, [seq for seq, _ in scored])
        scores = self.bm25[name]
        while len(scores) <= index:
            scores.append({})
        if scored and scored[0][1] < 0:
            best = scored[0][1]
            scores[index].update((seq, value / best) for seq, value in scored)

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


def context_scores(
    found: Gathered, index: int, share: float, before: int = 1, after: int = 1
) -> dict[int, float]:
    """Each placed candidate's similarity to phrasing `index` blended with its neighbours' (up to `before`
    turns before it and `after` after it), (v + share·Σ neighbours) / (1 + share·n); a memory without an
    episode keeps its own."""
    similarity = found.similarity[index]
    scores = {}
    for seq in found.placement.when:
        if seq not in similarity:
            continue
        around_it = [similarity[n] for n in found.placement.neighbours(seq, before, after) if n in similarity]
        scores[seq] = (similarity[seq] + share * sum(around_it)) / (1 + share * len(around_it))
    return scores


def episode_scores(found: Gathered, index: int) -> dict[int, float]:
    """Each candidate's episode: the mean similarity of its best turns (a memory alone: its own)."""
    similarity, placement = found.similarity[index], found.placement
    by_episode: dict[object, list[float]] = {}  # an episode's best similarities, worked out once
    scores = {}
    for seq in found.pool():
        episode = placement.episode.get(seq)
        key = episode if episode in placement.turns else (-1, seq)  # unread episode: the turn alone
        if key not in by_episode:
            turns = placement.turns.get(episode, [seq]) if episode is not None else [seq]
            ranked_similarities = sorted((similarity[t] for t in turns if t in similarity), reverse=True)
            by_episode[key] = ranked_similarities[:EPISODE_TOP_TURNS]
        best = by_episode[key]
        if best:
            scores[seq] = sum(best) / len(best)
    return scores


def signals(found: Gathered) -> Signals:
    """Every candidate's signals, each from 0 to 1, averaged over the phrasings (signals not computed are
    absent): what the blend weighs, and what its weights are fitted on."""
    pool = found.pool()
    present = {
        "lexical": found.bm25["lexical"],
        "exact": found.bm25["exact"],
        "vector": found.similarity if any(found.similarity) else [],
        "context": found.context,
        "episode": found.episode_score,
    }
    # One column (seq -> value) per signal, each worked out once for the whole pool.
    columns = {name: _mean(lists, pool, found.phrasings) for name, lists in present.items() if lists}
    placement = found.placement
    placed = bool(placement.when)
    if found.window is not None and placed:
        columns["time"] = {seq: 1.0 if found.in_window(seq) else 0.0 for seq in pool}
    if placed:
        named = named_speaker(found.texts, placement.speaker.values())
        said: dict[tuple[object, object], float] = {}  # (role, speaker) -> the signal, worked out once
        column = {}
        for seq in pool:
            key = (placement.role.get(seq), placement.speaker.get(seq))
            value = said.get(key)
            if value is None:
                value = said[key] = speaker_signal(key[0], found.speaker, key[1], named)
            column[seq] = value
        columns["speaker"] = column
    for name, scores in (("entity", found.entity_score), ("graph", found.graph_score)):
        if scores is not None:
            columns[name] = {seq: scores.get(seq, 0.0) for seq in pool}
    # Each candidate's signals in the columns' order, filled a column at a time (each column holds every
    # candidate, in the pool's order): a few hundred candidates, cheaper than a list and a zip each.
    by_seq: Signals = {seq: {} for seq in pool}
    for name, column in columns.items():
        for seq, value in column.items():
            by_seq[seq][name] = value
    return by_seq


def _mean(per_phrasing: list[dict[int, float]], pool: set[int], phrasings: int) -> dict[int, float]:
    """Each seq's score (below 0 counts as 0) averaged over the phrasings, summed in phrasing order."""
    if len(per_phrasing) == 1:
        (scores,) = per_phrasing
        get = scores.get  # `v if v > 0.0 else 0.0` is max(0.0, v) (NaN and -0.0 give 0.0), without a call
        return {seq: (value if (value := get(seq, 0.0)) > 0.0 else 0.0) / phrasings for seq in pool}
    return {seq: sum([max(0.0, scores.get(seq, 0.0)) for scores in per_phrasing]) / phrasings for seq in pool}


@dataclass(frozen=True)
class Fusion:
    """The candidates best first, and what explains their places."""

    ranked: list[Fused]
    signals: Signals = field(default_factory=dict)  # the blend's: each candidate's signal values
    episode_rank: Ranks = field(default_factory=dict)  # reciprocal rank fusion's: each candidate's episode


def fuse(found: Gathered, config: SearchConfig, values: Signals | None = None) -> Fusion:
    """The candidates best first, by the configured fusion; `values`: `signals(found)`, if computed already."""
    if config.fusion == "blend":
        values = signals(found) if values is None else values
        order = blend(found, config.blend, values)
        if config.episode_spread:
            order = spread_over_episodes(order, found.placement.key, config.episode_spread)
        return Fusion(order, signals=values)
    order, episode_rank = reciprocal_rank_fusion(found, config.rrf)
    return Fusion(order, episode_rank=episode_rank)


def blend(found: Gathered, weights: BlendWeights, values: Signals | None = None) -> list[Fused]:
    """Σ weight × signal. When some of the text-match signals (lexical, vector, context, episode) are missing
    (lexical-only search, no model), those present take their weight too: the fitted balance against time and
    speaker holds."""
    values = signals(found) if values is None else values
    weight = {name: getattr(weights, name) for name in SIGNALS}
    present = set().union(*values.values())
    matching = [name for name in TEXT_MATCH if name in present and weight[name] > 0]
    if matching:
        share = sum(weight[name] for name in TEXT_MATCH) / sum(weight[name] for name in matching)
        weight.update((name, weight[name] * share) for name in matching)
    scores = {seq: sum([weight[name] * value for name, value in of.items()]) for seq, of in values.items()}
    return sorted(scores.items(), key=_best_first)


def _best_first(item: Fused) -> tuple[float, int]:
    """Best score first; ties by the lower seq."""
    return -item[1], item[0]


def spread_over_episodes(
    fused: list[Fused], key: Callable[[int], Hashable], spread: float, free: int = EPISODE_TOP_TURNS
) -> list[Fused]:
    """Best first again, after each turn of an episode (`key`: its session or thread; a memory alone is its
    own) beyond the episode's `free` best is multiplied by (1 − `spread`) for each of its turns above it beyond
    those: the 5th best turn of a session keeps (1 − spread)² of its score. One session's cluster of similar
    turns then gives way to another session's turn that scores nearly as well, and only then (a clearly better
    turn keeps its place; a score never turns negative). `fused`: best first."""
    taken: dict[Hashable, int] = {}
    spread_out = []
    for seq, score in fused:
        episode = key(seq)
        above = taken.get(episode, 0)
        taken[episode] = above + 1
        spread_out.append((seq, score * (1.0 - spread) ** max(0, above + 1 - free)))
    return sorted(spread_out, key=lambda item: (-item[1], item[0]))


def reciprocal_rank_fusion(found: Gathered, weights: RankWeights) -> tuple[list[Fused], Ranks]:
    """Weighted reciprocal rank fusion: first the turn-level signals; then the episode and time signals,
    which rank by that first fusion. Best first, and each candidate's episode rank (when episodes count)."""
    share = 1.0 / found.phrasings  # several phrasings share one signal's weight
    scores: dict[int, float] = {}
    for name in TURN_SIGNALS:
        weight = getattr(weights, name) * share
        for ranks in found.lists[name]:
            for seq, rank in ranks.items():
                scores[seq] = scores.get(seq, 0.0) + weight / (weights.k + rank)
    final = dict(scores)
    episode_rank: Ranks = {}
    if weights.episode and scores:
        by_episode: dict[object, list[float]] = {}
        for seq, score in scores.items():
            by_episode.setdefault(found.placement.key(seq), []).append(score)
        strength = {
            key: sum(sorted(values, reverse=True)[:EPISODE_TOP_TURNS]) for key, values in by_episode.items()
        }
        order = {
            key: rank for rank, key in enumerate(sorted(strength, key=lambda key: -strength[key]), start=1)
        }
        episode_rank = {seq: order[found.placement.key(seq)] for seq in scores}
        for seq, rank in episode_rank.items():
            final[seq] += weights.episode / (weights.k + rank)
    if found.window is not None and weights.time:
        inside = sorted((seq for seq in scores if found.in_window(seq)), key=lambda seq: -scores[seq])
        for rank, seq in enumerate(inside, start=1):
            final[seq] += weights.time / (weights.k + rank)
    return sorted(final.items(), key=lambda item: (-item[1], item[0])), episode_rank


def weigh_time_and_importance(
    fused: list[Fused], facts: Mapping[int, tuple[float, str]], now: datetime, config: SearchConfig
) -> list[Fused]:
    """score × (1 + recency_weight · 2^(-age / half-life) + importance_weight · (importance − ½)), with age
    counted back from `now`; `facts`: seq -> (importance, occurred_at or created_at). Best first."""
    factor = {}
    recency_of: dict[str, float] = {}  # many memories share a moment (one import, one session)
    for seq, (importance, when) in facts.items():
        recency = recency_of.get(when)
        if recency is None:
            age_days = max(0.0, (now - stored_moment(when)).total_seconds() / 86400)
            recency = recency_of[when] = 0.5 ** (age_days / config.recency_half_life_days)
        factor[seq] = 1 + config.recency_weight * recency + config.importance_weight * (importance - 0.5)
    rescored = [(seq, score * factor.get(seq, 1.0)) for seq, score in fused]
    return sorted(rescored, key=_best_first)
