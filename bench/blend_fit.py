"""Fitting the search blend's weights: pairwise logistic regression on the signals of candidates.

For each question, every (gold turn, other candidate) pair says the gold turn should score higher; the weights
minimise the logistic loss of score(gold) − score(other) over those pairs, each question counting alike (or as
its `weight` says), with a little L2 (chosen by cross-validation) so that signals that never matter stay near
0. Newton's method: a few signals, so the Hessian is tiny. Weights below 0 are cut to 0: the daemon takes no negative weights (a
signal that hurts is turned off instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NEWTON_STEPS = 30


@dataclass
class Example:
    """One question's candidates: their signals (one row each, columns as `names`) and which are gold."""

    signals: np.ndarray
    gold: np.ndarray  # bool per row
    weight: float = 1.0  # how much the question counts (corpora of different sizes can count alike)


def fit(examples: Sequence[Example], l2: float) -> np.ndarray:
    """Weights, one per signal column, fitted on the standardised signals."""
    usable = [e for e in examples if e.gold.any() and (~e.gold).any()]
    every = np.vstack([e.signals for e in usable])
    mean, spread = every.mean(axis=0), every.std(axis=0) + 1e-9
    differences, shares = [], []
    total = sum(e.weight for e in usable)
    for example in usable:
        scaled = (example.signals - mean) / spread
        gold, other = scaled[example.gold], scaled[~example.gold]
        pairs = (gold[:, None, :] - other[None, :, :]).reshape(-1, scaled.shape[1])
        differences.append(pairs)
        shares.append(np.full(len(pairs), example.weight / (len(pairs) * total)))
    pairs, share = np.vstack(differences), np.concatenate(shares)
    weights = np.zeros(pairs.shape[1])
    for _ in range(NEWTON_STEPS):
        margin = pairs @ weights
        slope = 0.5 * (1.0 - np.tanh(margin / 2))  # 1 / (1 + e^margin), without overflow
        gradient = -(pairs * (share * slope)[:, None]).sum(axis=0) + l2 * weights
        curvature = (pairs * (share * slope * (1.0 - slope))[:, None]).T @ pairs + l2 * np.eye(len(weights))
        step = np.linalg.solve(curvature, gradient)
        weights -= step
        if np.abs(step).max() < 1e-7:  # converged
            break
    return np.maximum(weights / spread, 0.0)
