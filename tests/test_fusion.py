"""Fusion is pure: the signals and rankings of gathered candidates, computed without I/O or changing them."""

from __future__ import annotations

import ast
import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.config import BlendWeights, RankWeights, SearchConfig
from daemon.fusion import (
    Gathered,
    blend,
    context_scores,
    episode_scores,
    fuse,
    reciprocal_rank_fusion,
    signals,
    spread_over_episodes,
    weigh_time_and_importance,
)
from daemon.temporal import TimeWindow

REPO = Path(__file__).resolve().parents[1]
WINDOW = TimeWindow("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", "in May")


def gathered(window: TimeWindow | None = WINDOW) -> Gathered:
    """Four conversation turns in one session (seqs 1-4, Ann and Bob alternating) and a note (seq 9)."""
    found = Gathered.empty(["what did Ann say about the blue car"], window)
    found.add_scored("lexical", 0, [(2, -8.0), (9, -4.0), (1, -2.0)])
    found.add("vector", [3, 2, 4])
    found.similarity[0].update({1: 0.2, 2: 0.6, 3: 0.7, 4: 0.5, 9: 0.1})
    placement = found.placement
    for seq, speaker, when in [
        (1, "Ann", "2024-04-30T10:00:00Z"),
        (2, "Bob", "2024-05-02T10:00:00Z"),
        (3, "Ann", "2024-05-02T10:01:00Z"),
        (4, "Bob", "2024-05-02T10:02:00Z"),
    ]:
        placement.episode[seq] = (1, "s1")
        placement.speaker[seq], placement.role[seq], placement.when[seq] = speaker, None, when
        placement.importance[seq] = 0.5
    placement.turns[1, "s1"] = [1, 2, 3, 4]
    placement.index.update({1: 0, 2: 1, 3: 2, 4: 3})
    placement.episode[9], placement.when[9], placement.importance[9] = None, "2023-01-01T00:00:00Z", 0.9
    placement.speaker[9] = placement.role[9] = None
    return found


def snapshot(found: Gathered) -> dict[str, Any]:
    """Everything a Gathered holds, its placement included, for comparing before and after."""
    values = {name: copy.deepcopy(value) for name, value in vars(found).items() if name != "placement"}
    return values | {"placement": copy.deepcopy(vars(found.placement))}


def test_fusing_changes_nothing_it_is_given() -> None:
    found = gathered()
    found.context.append(context_scores(found, 0, 0.5))
    found.episode_score.append(episode_scores(found, 0))
    before = snapshot(found)
    fuse(found, SearchConfig())
    fuse(found, SearchConfig(fusion="rrf", rrf=RankWeights(episode=0.5, context=1.0)))
    signals(found)
    assert snapshot(found) == before


def test_signals_are_each_from_zero_to_one_per_candidate() -> None:
    values = signals(gathered())
    assert set(values) == {1, 2, 3, 4, 9}
    assert values[2] == {"lexical": 1.0, "vector": 0.6, "time": 1.0, "speaker": 0.0}
    assert values[9] == {"lexical": 0.5, "vector": 0.1, "time": 0.0, "speaker": 1.0}
    assert values[3]["speaker"] == 1.0  # Ann is the one the question names
    assert values[3]["lexical"] == 0.0  # not among the lexical matches


def test_the_blend_weighs_each_signal() -> None:
    weights = BlendWeights(lexical=1.0, vector=2.0, time=0.5, speaker=0.0, context=0.0, episode=0.0)
    fused = dict(blend(gathered(), weights))
    assert fused[2] == pytest.approx(1.0 + 2 * 0.6 + 0.5)
    assert fused[9] == pytest.approx(0.5 + 2 * 0.1)
    assert [seq for seq, _ in blend(gathered(), weights)] == [2, 3, 4, 9, 1]


def test_a_lexical_only_search_gives_the_vector_weight_to_lexical() -> None:
    found = gathered(window=None)
    found.similarity = [{}]
    found.lists["vector"] = []
    fused = dict(
        blend(found, BlendWeights(lexical=1.0, vector=3.0, time=0.0, speaker=0.0, context=0.0, episode=0.0))
    )
    assert fused == pytest.approx({2: 4.0, 9: 2.0, 1: 1.0})


def test_a_lexical_only_search_gives_every_missing_text_match_weight_to_lexical() -> None:
    found = gathered(window=None)
    found.similarity = [{}]
    found.lists["vector"] = []
    weights = BlendWeights(lexical=1.0, vector=0.0, context=2.0, episode=1.0, time=0.0, speaker=0.0)
    assert dict(blend(found, weights)) == pytest.approx({2: 4.0, 9: 2.0, 1: 1.0})


def test_fuse_returns_the_blend_with_the_signals_that_explain_it() -> None:
    found = gathered()
    fusion = fuse(found, SearchConfig(episode_spread=0.0))
    assert fusion.ranked == blend(found, SearchConfig().blend)
    assert fusion.signals == signals(found)
    assert fusion.episode_rank == {}


def test_a_sessions_turns_beyond_its_three_best_give_way_to_another_sessions_close_turn() -> None:
    session = {1: "a", 2: "a", 3: "a", 4: "a", 5: "a", 6: "b", 7: "c"}
    fused = [(1, 10.0), (2, 9.9), (3, 9.8), (4, 9.7), (5, 9.6), (6, 9.55), (7, 8.0)]
    spread = spread_over_episodes(fused, session.__getitem__, 0.02)
    # Session a's 4th best keeps 98% of its score and its 5th 98% of 98%: b's turn, nearly as good, moves up.
    assert [seq for seq, _ in spread] == [1, 2, 3, 6, 4, 5, 7]
    assert dict(spread) == pytest.approx(
        {1: 10.0, 2: 9.9, 3: 9.8, 4: 9.7 * 0.98, 5: 9.6 * 0.98**2, 6: 9.55, 7: 8.0}
    )
    # A turn clearly behind (c's) keeps its place; no spread changes nothing, nor does one memory per episode.
    assert spread_over_episodes(fused, session.__getitem__, 0.0) == fused
    assert spread_over_episodes(fused, lambda seq: seq, 0.9) == fused


def test_fuse_spreads_the_blend_over_sessions() -> None:
    found = gathered()
    for seq, sim in [(5, 0.55), (6, 0.52)]:  # two more turns of session s1, after seq 4
        found.placement.episode[seq], found.placement.when[seq] = (1, "s1"), "2024-05-02T10:03:00Z"
        found.placement.speaker[seq], found.placement.role[seq] = "Ann", None
        found.similarity[0][seq] = sim
    found.placement.turns[1, "s1"] += [5, 6]
    found.add("vector", [5, 6])
    weights = BlendWeights(lexical=0.0, vector=1.0, context=0.0, episode=0.0, time=0.0, speaker=0.0)
    off = fuse(found, SearchConfig(blend=weights, episode_spread=0.0)).ranked
    on = fuse(found, SearchConfig(blend=weights, episode_spread=0.9)).ranked
    assert [seq for seq, _ in off] == [3, 2, 5, 6, 4, 1, 9]
    # s1's 4th, 5th and 6th best keep 10%, 1% and 0.1% of their scores: the note (seq 9) moves up past them.
    assert [seq for seq, _ in on] == [3, 2, 5, 9, 6, 4, 1]
    assert dict(on) == pytest.approx({3: 0.7, 2: 0.6, 5: 0.55, 9: 0.1, 6: 0.052, 4: 0.005, 1: 0.0002})


def test_reciprocal_rank_fusion_returns_each_candidates_episode_rank() -> None:
    found = gathered(window=None)
    order, episode_rank = reciprocal_rank_fusion(found, RankWeights(k=1.0, episode=1.0, time=0.0))
    assert episode_rank == {1: 1, 2: 1, 3: 1, 4: 1, 9: 2}
    scores = dict(order)
    # seq 2: lexical rank 1 and vector rank 2, and its episode ranks first.
    assert scores[2] == pytest.approx(1 / 2 + 1 / 3 + 1 / 2)
    assert scores[9] == pytest.approx(1 / 3 + 1 / 3)
    assert fuse(found, SearchConfig(fusion="rrf", rrf=RankWeights(episode=1.0))).episode_rank == episode_rank


def test_context_blends_a_turn_with_its_neighbours() -> None:
    scores = context_scores(gathered(), 0, 0.5)
    assert scores[1] == pytest.approx((0.2 + 0.5 * 0.6) / 1.5)
    assert scores[3] == pytest.approx((0.7 + 0.5 * (0.6 + 0.5)) / 2)
    assert scores[9] == pytest.approx(0.1)  # no episode: its own


def test_the_context_reaches_as_many_turns_before_and_after_as_asked() -> None:
    scores = context_scores(gathered(), 0, 0.5, before=2, after=0)
    assert scores[1] == pytest.approx(0.2)  # nothing before the first turn
    assert scores[4] == pytest.approx((0.5 + 0.5 * (0.6 + 0.7)) / 2)
    scores = context_scores(gathered(), 0, 0.5, before=0, after=2)
    assert scores[1] == pytest.approx((0.2 + 0.5 * (0.6 + 0.7)) / 2)


def test_an_episode_scores_by_its_best_three_turns() -> None:
    scores = episode_scores(gathered(), 0)
    assert scores[1] == scores[4] == pytest.approx((0.7 + 0.6 + 0.5) / 3)
    assert scores[9] == pytest.approx(0.1)


def test_recency_and_importance_reweigh_and_reorder() -> None:
    config = SearchConfig(recency_weight=1.0, recency_half_life_days=1.0, importance_weight=1.0)
    now = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    facts = {1: (0.5, "2024-05-02T10:00:00Z"), 2: (1.0, "2024-04-01T10:00:00Z")}
    fused = weigh_time_and_importance([(2, 1.0), (1, 0.9), (5, 0.1)], facts, now, config)
    assert fused[0] == (1, pytest.approx(0.9 * 2.0))  # today: recency 1, importance ½ adds nothing
    assert fused[1][0] == 2 and fused[1][1] == pytest.approx(1.0 * (1 + 0.5**31 + 0.5))
    assert fused[2] == (5, 0.1)  # no facts: unchanged


def test_fusion_imports_nothing_that_does_io() -> None:
    tree = ast.parse((REPO / "daemon" / "fusion.py").read_text(encoding="utf-8"))
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "datetime",
        "daemon.config",
        "daemon.episodes",  # Placement only, a plain class
        "daemon.speaker",
        "daemon.temporal",
        "daemon.timeutil",
    }
