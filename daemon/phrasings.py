"""Several phrasings (`queries`): a model that splits a multi-hop question ("where did the person Bob met in
Paris move to?") into parts asks for each part's answer. Signals are averaged over the phrasings, so a memory
that only one part finds scores at most 1/n of its strength and may miss the top k; here each phrasing's own
best match (by its lexical and vector scores, weighed as the blend weighs them) is kept in the top k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["guarantee", "leaders"]

Fused = tuple[int, float]


def leaders(
    lexical: Sequence[Mapping[int, float]],
    similarity: Sequence[Mapping[int, float]],
    weights: Mapping[str, float],
    allowed: set[int],
) -> list[int]:
    """Each phrasing's best match among `allowed` (the fused candidates), in phrasing order, no repeats."""
    found: list[int] = []
    for index in range(max(len(lexical), len(similarity))):
        lex = lexical[index] if index < len(lexical) else {}
        sim = similarity[index] if index < len(similarity) else {}
        scores = {
            seq: weights.get("lexical", 0.0) * max(0.0, lex.get(seq, 0.0))
            + weights.get("vector", 0.0) * max(0.0, sim.get(seq, 0.0))
            for seq in (set(lex) | set(sim)) & allowed
        }
        best = min(scores, key=lambda seq: (-scores[seq], seq), default=None)
        if best is not None and scores[best] > 0 and best not in found:
            found.append(best)
    return found


def guarantee(fused: list[Fused], kept: Sequence[int], k: int) -> list[Fused]:
    """`fused` with the memories in `kept` (up to k of them) moved into its first k places, each after the
    fused results that outscore it; what they displace follows them."""
    kept = list(dict.fromkeys(kept))[:k]
    head = fused[:k]
    missing = [item for item in fused[k:] if item[0] in kept]
    if not missing:
        return fused
    displaced_count = len(missing)
    keep_head = [item for item in head if item[0] in kept]
    others = [item for item in head if item[0] not in kept]
    staying = others[: len(others) - displaced_count] if displaced_count <= len(others) else []
    displaced = others[len(staying) :]
    top = sorted(keep_head + staying + missing, key=lambda item: (-item[1], item[0]))
    rest = [item for item in fused[k:] if item[0] not in kept]
    return top + displaced + rest
