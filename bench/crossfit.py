"""Choosing the search blend across corpora by cross-validation: LoCoMo (leave one conversation out) and
LongMemEval-S dev60 (its five folds by question), paired fold by fold.

Outer fold i holds out LoCoMo's conversation i and LongMemEval's fold i; on the rest, an inner cross-validation
over the four remaining pairs chooses the signal set and the fit's L2, and the weights are fitted on all of the
rest (`bench/blend_fit.py`, each corpus counting alike however many questions it has). The objective is the mean
of the corpora's own: LoCoMo's turn recall@10, LongMemEval's mean of turn any@10, all@10 and NDCG@10. Only the
held-out numbers estimate how the chosen blend does on unseen questions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.blend_fit import Example, fit
from bench.retrieval import Candidates

Metrics = dict[str, float]


@dataclass
class Corpus:
    """One corpus' questions, their gathered candidates, its folds (question ids) and how it is scored."""

    name: str
    questions: dict[str, Any]  # id -> question (with `gold_turns`)
    candidates: dict[str, Candidates]
    folds: list[list[str]]
    metrics: Callable[[Any, list[str]], Metrics]  # a question's metrics from its ranked turns
    objective: Sequence[str]  # the metrics averaged into the objective


@dataclass
class Choice:
    names: tuple[str, ...]
    l2: float
    weights: np.ndarray

    def describe(self) -> str:
        chosen = ", ".join(
            f"{name} {value:.2f}" for name, value in zip(self.names, self.weights, strict=True)
        )
        return f"{chosen} (L2 {self.l2:g})"


def examples(corpus: Corpus, ids: Sequence[str], names: Sequence[str]) -> list[Example]:
    """The questions' examples, weighted so that the corpus counts 1 in all."""
    found = []
    for qid in ids:
        _, example = corpus.candidates[qid].example(corpus.questions[qid], names)
        example.weight = 1.0 / len(ids)
        found.append(example)
    return found


def fit_on(
    training: dict[str, list[str]], corpora: list[Corpus], names: Sequence[str], l2: float
) -> np.ndarray:
    pooled = [e for corpus in corpora for e in examples(corpus, training[corpus.name], names)]
    return fit(pooled, l2)


def evaluate(
    corpus: Corpus, ids: Sequence[str], names: Sequence[str], weights: np.ndarray
) -> dict[str, Metrics]:
    return {
        qid: corpus.metrics(
            corpus.questions[qid], corpus.candidates[qid].blended(corpus.questions[qid], names, weights)
        )
        for qid in ids
    }


def objective(corpora: list[Corpus], held: dict[str, dict[str, Metrics]]) -> float:
    """The mean over corpora of each one's objective on its questions in `held`."""
    values = []
    for corpus in corpora:
        rows = list(held[corpus.name].values())
        values.append(
            sum(row[m] for row in rows for m in corpus.objective) / (len(rows) * len(corpus.objective))
        )
    return sum(values) / len(values)


def choose(
    corpora: list[Corpus],
    folds: list[int],
    signal_sets: Sequence[tuple[str, ...]],
    l2_grid: Sequence[float],
) -> Choice:
    """The signal set and L2 with the best inner cross-validated objective over `folds` (fold numbers), fitted on
    all of them. A set with more signals than the first must beat it by more than one question's one metric
    in the smaller corpus: less is noise, and every signal costs search time."""

    def inner(names: tuple[str, ...], l2: float) -> float:
        held: dict[str, dict[str, Metrics]] = {corpus.name: {} for corpus in corpora}
        for out in folds:
            training = {c.name: [q for f in folds if f != out for q in c.folds[f]] for c in corpora}
            weights = fit_on(training, corpora, names, l2)
            for corpus in corpora:
                held[corpus.name].update(evaluate(corpus, corpus.folds[out], names, weights))
        return objective(corpora, held)

    scored = {(names, l2): inner(names, l2) for names, l2 in itertools.product(signal_sets, l2_grid)}
    smallest = min(sum(len(c.folds[f]) for f in folds) for c in corpora)
    noise = 1 / smallest / len(corpora)
    best = max(scored, key=scored.__getitem__)
    base = max(((signal_sets[0], l2) for l2 in l2_grid), key=scored.__getitem__)
    names, l2 = best if scored[best] > scored[base] + noise else base
    training = {c.name: [q for f in folds for q in c.folds[f]] for c in corpora}
    return Choice(names, l2, fit_on(training, corpora, names, l2))


def cross_validate(
    corpora: list[Corpus], signal_sets: Sequence[tuple[str, ...]], l2_grid: Sequence[float]
) -> tuple[list[Choice], dict[str, dict[str, Metrics]]]:
    """Each outer fold's choice, and every question's metrics when its fold was held out."""
    count = len(corpora[0].folds)
    held: dict[str, dict[str, Metrics]] = {corpus.name: {} for corpus in corpora}
    choices: list[Choice] = []
    for out in range(count):
        choice = choose(corpora, [f for f in range(count) if f != out], signal_sets, l2_grid)
        choices.append(choice)
        for corpus in corpora:
            held[corpus.name].update(evaluate(corpus, corpus.folds[out], choice.names, choice.weights))
    return choices, held


def fixed(corpora: list[Corpus], names: Sequence[str], weights: np.ndarray) -> dict[str, dict[str, Metrics]]:
    """Every question's metrics under one fixed blend (for today's defaults, in-process)."""
    return {c.name: evaluate(c, list(c.questions), names, weights) for c in corpora}
