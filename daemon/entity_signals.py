"""The entity and graph signals of search, as pure functions over what the entity index returned.

- entity: how much of the query's entities a memory mentions, each entity weighed by its rarity in the
  searched cubes (a name on every other turn says little);
- graph: memories reached from the best first-stage hits (the seeds) through a rare entity they share, or
  through a link between them; each path counts its seed's score × the entity's rarity (a link counts as the
  rarest entity), and the sum is scaled so that the best-reached memory scores 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["LINK_RARITY", "entity_scores", "graph_scores", "rarity", "seed_scores"]

LINK_RARITY = 1.0  # a link between two memories weighs as an entity only they share


def rarity(frequency: int) -> float:
    """1 for an entity one memory holds, falling slowly as more hold it: 1 / (1 + ln n)."""
    return 1.0 / (1.0 + math.log(max(1, frequency)))


def entity_scores(
    query: Iterable[str], matches: Iterable[tuple[int, str]], frequency: Mapping[str, int]
) -> dict[int, float]:
    """seq -> the rarity-weighted share of the query's entities it mentions (from 0 to 1)."""
    wanted = {entity: rarity(frequency.get(entity, 1)) for entity in query}
    total = sum(wanted.values())
    if not total:
        return {}
    found: dict[int, float] = {}
    for seq, entity in matches:
        if entity in wanted:
            found[seq] = found.get(seq, 0.0) + wanted[entity] / total
    return {seq: min(1.0, score) for seq, score in found.items()}


def seed_scores(
    lexical: Mapping[int, float], similarity: Mapping[int, float], count: int
) -> dict[int, float]:
    """The `count` best first-stage hits by the mean of their lexical and vector scores, with that mean."""
    pool = set(lexical) | set(similarity)
    scored = {seq: (max(0.0, lexical.get(seq, 0.0)) + max(0.0, similarity.get(seq, 0.0))) / 2 for seq in pool}
    best = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:count]
    return {seq: score for seq, score in best if score > 0}


def graph_scores(
    seeds: Mapping[int, float],
    seed_entities: Iterable[tuple[int, str]],
    reached: Iterable[tuple[int, str]],
    frequency: Mapping[str, int],
    links: Iterable[tuple[int, int]] = (),
) -> dict[int, float]:
    """seq -> Σ over paths from a seed (through a shared entity, or a link) of seed score × rarity, scaled to
    a best of 1. A seed reaches other memories only; a seed reached from another seed counts too."""
    holders: dict[str, list[int]] = {}
    for seed, entity in seed_entities:
        if seed in seeds:
            holders.setdefault(entity, []).append(seed)
    raw: dict[int, float] = {}
    for seq, entity in reached:
        for seed in holders.get(entity, []):
            if seq != seed:
                raw[seq] = raw.get(seq, 0.0) + seeds[seed] * rarity(frequency.get(entity, 1))
    for seed, other in links:
        if seed in seeds and other != seed:
            raw[other] = raw.get(other, 0.0) + seeds[seed] * LINK_RARITY
    best = max(raw.values(), default=0.0)
    return {seq: score / best for seq, score in raw.items()} if best > 0 else {}
