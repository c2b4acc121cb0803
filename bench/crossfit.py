"""Choosing the search blend across corpora by cross-validation: LoCoMo (leave one conversation out) and
LongMemEval-S dev60 (its five folds by question), paired fold by fold.

Outer fold i holds out LoCoMo's conversation i and LongMemEval's fold i; on the rest, an inner cross-validation
over the four remaining pairs chooses the signal set and the fit's L2, and the weights are fitted on all of the
rest (`bench/blend_fit.py`, each corpus counting alike however many questions it has). The inner cross-validation
also chooses `[search] episode_spread` (daemon/fusion.py's `spread_over_episodes`, applied after the blend: it
changes no fit, only the ranking the fit's weights make). The objective is the mean of the corpora's own: LoCoMo's
turn recall@10, LongMemEval's mean of turn any@10, all@10 and NDCG@10. Only the held-out numbers estimate how the
chosen blend does on unseen questions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.blend_fit import Example, fit
from bench.retrieval import CANDIDATE_SIGNALS, DEPTH, Candidates
from daemon.fusion import SIGNALS, spread_over_episodes

Metrics = dict[str, float]
HARDEST = 100  # the other candidates per question the fit compares the gold turns with


@dataclass
class Matrix:
    """One question's candidates as arrays: every signal's value, which signals brought each, which are gold."""

    turns: list[str]
    values: np.ndarray  # candidates × SIGNALS
    brought: np.ndarray  # candidates × CANDIDATE_SIGNALS, bool
    gold: np.ndarray
    episodes: list[object]  # each candidate's session or thread (a memory alone: its own key)

    @classmethod
    def of(cls, found: Candidates, question: Any) -> Matrix:
        seqs = sorted(found.signals)
        lists = found.gathered.lists
        values = np.array([[found.signals[seq].get(name, 0.0) for name in SIGNALS] for seq in seqs])
        brought = np.array(
            [[any(seq in ranks for ranks in lists[name]) for name in CANDIDATE_SIGNALS] for seq in seqs]
        )
        turns = [found.turn_of[seq] for seq in seqs]
        gold = np.array([turn in question.gold_turns for turn in turns])
        episodes = [found.gathered.placement.key(seq) for seq in seqs]
        return cls(
            turns, values.reshape(len(seqs), len(SIGNALS)), brought.reshape(len(seqs), -1), gold, episodes
        )

    def example(self, names: Sequence[str], hardest: int | None = None) -> tuple[np.ndarray, Example]:
        """The rows the named signals bring, and those signals' columns; with `hardest`, only the gold rows
        and that many others, the best by lexical + vector (those that compete for the top ranks)."""
        wanted = [CANDIDATE_SIGNALS.index(name) for name in names if name in CANDIDATE_SIGNALS]
        rows = np.flatnonzero(self.brought[:, wanted].any(axis=1))
        if hardest is not None:
            text = self.values[rows, SIGNALS.index("lexical")] + self.values[rows, SIGNALS.index("vector")]
            others = rows[~self.gold[rows]][np.argsort(-text[~self.gold[rows]], kind="stable")[:hardest]]
            rows = np.sort(np.concatenate([rows[self.gold[rows]], others]))
        columns = [SIGNALS.index(name) for name in names]
        return rows, Example(self.values[np.ix_(rows, columns)], self.gold[rows])

    def ranked(self, names: Sequence[str], weights: np.ndarray, spread: float = 0.0) -> list[str]:
        """The turns best first as the daemon ranks them: the blend, then `[search] episode_spread` (as in
        daemon/fusion.py's `fuse`)."""
        rows, example = self.example(names)
        scores = example.signals @ weights
        order = np.lexsort((rows, -scores))
        if spread:
            fused = [(int(i), float(scores[i])) for i in order]  # i: the row's place, in seq order like rows
            spread_out = spread_over_episodes(fused, lambda i: self.episodes[rows[i]], spread)
            order = np.array([i for i, _ in spread_out])
        return [self.turns[rows[i]] for i in order[:DEPTH]]


@dataclass
class Corpus:
    """One corpus' questions, their gathered candidates, its folds (question ids) and how it is scored."""

    name: str
    questions: dict[str, Any]  # id -> question (with `gold_turns`)
    candidates: dict[str, Candidates]
    folds: list[list[str]]
    metrics: Callable[[Any, list[str]], Metrics]  # a question's metrics from its ranked turns
    objective: Sequence[str]  # the metrics averaged into the objective
    matrices: dict[str, Matrix] | None = None

    def matrix(self, qid: str) -> Matrix:
        if self.matrices is None:
            self.matrices = {q: Matrix.of(self.candidates[q], self.questions[q]) for q in self.questions}
        return self.matrices[qid]


@dataclass
class Choice:
    names: tuple[str, ...]
    l2: float
    weights: np.ndarray
    spread: float = 0.0  # [search] episode_spread

    def describe(self) -> str:
        chosen = ", ".join(
            f"{name} {value:.2f}" for name, value in zip(self.names, self.weights, strict=True)
        )
        return f"{chosen}; episode_spread {self.spread:g} (L2 {self.l2:g})"


def examples(corpus: Corpus, ids: Sequence[str], names: Sequence[str]) -> list[Example]:
    """The questions' examples, weighted so that the corpus counts 1 in all."""
    found = []
    for qid in ids:
        _, example = corpus.matrix(qid).example(names, HARDEST)
        example.weight = 1.0 / len(ids)
        found.append(example)
    return found


def fit_on(
    training: dict[str, list[str]], corpora: list[Corpus], names: Sequence[str], l2: float
) -> np.ndarray:
    pooled = [e for corpus in corpora for e in examples(corpus, training[corpus.name], names)]
    return fit(pooled, l2)


def evaluate(
    corpus: Corpus, ids: Sequence[str], names: Sequence[str], weights: np.ndarray, spread: float = 0.0
) -> dict[str, Metrics]:
    return {
        qid: corpus.metrics(corpus.questions[qid], corpus.matrix(qid).ranked(names, weights, spread))
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
    spreads: Sequence[float] = (0.0,),
) -> Choice:
    """The signal set, L2 and episode spread with the best inner cross-validated objective over `folds` (fold
    numbers), fitted on all of them. A set with more signals than the first must beat it by more than one
    question's one metric in the smaller corpus: less is noise, and every signal costs search time."""

    def inner(names: tuple[str, ...], l2: float) -> dict[float, float]:
        held: dict[float, dict[str, dict[str, Metrics]]] = {s: {c.name: {} for c in corpora} for s in spreads}
        for out in folds:
            training = {c.name: [q for f in folds if f != out for q in c.folds[f]] for c in corpora}
            weights = fit_on(training, corpora, names, l2)
            for spread, corpus in itertools.product(spreads, corpora):
                held[spread][corpus.name].update(evaluate(corpus, corpus.folds[out], names, weights, spread))
        return {spread: objective(corpora, held[spread]) for spread in spreads}

    scored = {
        (names, l2, spread): value
        for names, l2 in itertools.product(signal_sets, l2_grid)
        for spread, value in inner(names, l2).items()
    }
    smallest = min(sum(len(c.folds[f]) for f in folds) for c in corpora)
    noise = 1 / smallest / len(corpora)
    best = max(scored, key=scored.__getitem__)
    base = max(((signal_sets[0], l2, s) for l2 in l2_grid for s in spreads), key=scored.__getitem__)
    names, l2, spread = best if scored[best] > scored[base] + noise else base
    training = {c.name: [q for f in folds for q in c.folds[f]] for c in corpora}
    return Choice(names, l2, fit_on(training, corpora, names, l2), spread)


def cross_validate(
    corpora: list[Corpus],
    signal_sets: Sequence[tuple[str, ...]],
    l2_grid: Sequence[float],
    spreads: Sequence[float] = (0.0,),
) -> tuple[list[Choice], dict[str, dict[str, Metrics]]]:
    """Each outer fold's choice, and every question's metrics when its fold was held out."""
    count = len(corpora[0].folds)
    held: dict[str, dict[str, Metrics]] = {corpus.name: {} for corpus in corpora}
    choices: list[Choice] = []
    for out in range(count):
        choice = choose(corpora, [f for f in range(count) if f != out], signal_sets, l2_grid, spreads)
        choices.append(choice)
        for corpus in corpora:
            held[corpus.name].update(
                evaluate(corpus, corpus.folds[out], choice.names, choice.weights, choice.spread)
            )
    return choices, held


def held_out(
    corpora: list[Corpus], names: Sequence[str], l2: float, spread: float = 0.0
) -> dict[str, dict[str, Metrics]]:
    """One signal set, L2 and episode spread, fitted on all folds but one and measured on that one, for every
    fold."""
    count = len(corpora[0].folds)
    held: dict[str, dict[str, Metrics]] = {corpus.name: {} for corpus in corpora}
    for out in range(count):
        training = {c.name: [q for f in range(count) if f != out for q in c.folds[f]] for c in corpora}
        weights = fit_on(training, corpora, names, l2)
        for corpus in corpora:
            held[corpus.name].update(evaluate(corpus, corpus.folds[out], names, weights, spread))
    return held


def fixed(
    corpora: list[Corpus], names: Sequence[str], weights: np.ndarray, spread: float = 0.0
) -> dict[str, dict[str, Metrics]]:
    """Every question's metrics under one fixed blend (for today's defaults, in-process)."""
    return {c.name: evaluate(c, list(c.questions), names, weights, spread) for c in corpora}
