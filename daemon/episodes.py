"""Episodes: the session or thread a memory belongs to (metadata `session`, else `thread`) and its order.

A conversation turn means little alone ("yes, the blue one"); search looks at its neighbours and at its
episode as a whole. The episode key and position are generated columns (migration 5), indexed per cube.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from daemon.packed_columns import Kind
from daemon.store import Connection, placeholders

MAX_EPISODE_ROWS = 5000  # turns fetched for one search; beyond it the rest of a huge thread is left out
_TURN_ROLE = "CASE WHEN m.kind = 'message' THEN json_extract(m.metadata, '$.role') END AS role"
_TURN_SPEAKER = "CASE WHEN m.kind = 'message' THEN json_extract(m.metadata, '$.speaker') END AS speaker"
_WHEN = "coalesce(m.occurred_at, m.created_at) AS happened_at"
_PLACED: dict[str, Kind] = {
    "seq": "value",
    "cube_id": "value",
    "episode": "value",
    "happened_at": "value",
    "role": "value",
    "importance": "key",  # a float: few distinct values, each read as stored
    "speaker": "value",
}


class Placement:
    """Where candidates sit: episode (None: a memory of its own), position and time, by seq."""

    def __init__(self) -> None:
        self.episode: dict[int, tuple[int, str] | None] = {}  # seq -> (cube id, episode key)
        self.when: dict[int, str] = {}  # seq -> occurred_at, else created_at
        self.turns: dict[tuple[int, str], list[int]] = {}  # episode -> its seqs in order
        self.index: dict[int, int] = {}  # seq -> its place in `turns` of its episode
        self.role: dict[int, object] = {}  # seq -> metadata `role` of a conversation turn (who said it)
        self.speaker: dict[int, object] = {}  # seq -> metadata `speaker` of a conversation turn (their name)
        self.importance: dict[int, float] = {}  # seq -> importance, for the candidates

    def key(self, seq: int) -> tuple[int, str] | tuple[int, int]:
        """What groups a memory with others: its episode, or itself."""
        episode = self.episode.get(seq)
        return episode if episode is not None else (-1, seq)

    def neighbours(self, seq: int, before: int = 1, after: int = 1) -> list[int]:
        """The turns up to `before` places before and `after` places after `seq` in its episode."""
        episode = self.episode.get(seq)
        if episode is None:
            return []
        index = self.index.get(seq)
        if index is None:
            return []
        turns = self.turns[episode]
        return turns[max(0, index - before) : index] + turns[index + 1 : index + 1 + after]


async def place(
    conn: Connection, seqs: Iterable[int], predicate: str, params: Sequence[Any], *, whole_episodes: bool
) -> Placement:
    """Episode, time, role, speaker, importance and (with `whole_episodes`) every turn of each episode the candidates belong to,
    under the same filters as the search."""
    found = Placement()
    seqs = list(seqs)
    if not seqs:
        return found
    # Read packed (a search places a few hundred candidates; a row a distinct importance, not a candidate) and
    # stored whole columns at once.
    read = await conn.packed_columns(
        f"SELECT m.seq, m.cube_id, m.episode, {_WHEN}, {_TURN_ROLE},"
        f" m.importance, {_TURN_SPEAKER} FROM memories m WHERE m.seq IN ({placeholders(len(seqs))})",
        seqs,
        _PLACED,
    )
    # In seq order, as the row-by-row read gave them (SQLite walks the IN list in order); a packed read's rows
    # come a group at a time. The order decides which cubes' episodes are read first within the turn budget.
    order = sorted(range(read.count), key=read.values["seq"].__getitem__)
    placed = {name: [column[index] for index in order] for name, column in read.values.items()}
    seq_column: Sequence[Any] = placed["seq"]
    found.importance.update(zip(seq_column, placed["importance"], strict=True))
    found.speaker.update(zip(seq_column, placed["speaker"], strict=True))
    found.when.update(zip(seq_column, placed["happened_at"], strict=True))
    found.role.update(zip(seq_column, placed["role"], strict=True))
    wanted: dict[int, set[str]] = defaultdict(set)
    for seq, cube_id, episode in zip(seq_column, placed["cube_id"], placed["episode"], strict=True):
        found.episode[seq] = (cube_id, episode) if episode is not None else None
        if episode is not None:
            wanted[cube_id].add(episode)
    if not whole_episodes:
        return found
    budget = MAX_EPISODE_ROWS
    for cube_id, episodes in wanted.items():
        names = sorted(episodes)
        turns_read = await conn.columns(
            f"SELECT m.seq, m.episode, {_WHEN}, {_TURN_ROLE} FROM memories m"
            f" WHERE m.cube_id = ? AND m.episode IN ({placeholders(len(names))}) {predicate}"
            " ORDER BY m.episode, m.episode_position, coalesce(m.occurred_at, m.created_at), m.seq LIMIT ?",
            [cube_id, *names, *params, budget],
        )
        seq_column = turns_read["seq"]
        budget -= len(seq_column)
        found.role.update(zip(seq_column, turns_read["role"], strict=True))
        found.when.update(zip(seq_column, turns_read["happened_at"], strict=True))
        for seq, episode in zip(seq_column, turns_read["episode"], strict=True):
            turns = found.turns.setdefault((cube_id, episode), [])
            found.index[seq] = len(turns)
            turns.append(seq)
            found.episode[seq] = (cube_id, episode)
        if budget <= 0:
            break
    return found


async def around(
    conn: Connection, seqs: Sequence[int], width: int, predicate: str, params: Sequence[Any]
) -> dict[int, list[tuple[int, int]]]:
    """For each of `seqs`: (offset, seq) of up to `width` turns on each side in its episode (offset -1: just
    before). Each episode is read once, however many of `seqs` it holds."""
    if not seqs:
        return {}
    rows = await conn.rows(
        f"SELECT seq, cube_id, episode FROM memories WHERE seq IN ({placeholders(len(seqs))})", list(seqs)
    )
    episode_of = {row["seq"]: (row["cube_id"], row["episode"]) for row in rows if row["episode"] is not None}
    index: dict[int, tuple[list[int], int]] = {}  # seq -> (its episode's turns, its place in them)
    for cube_id, episode in set(episode_of.values()):
        turns = [
            r["seq"]
            for r in await conn.rows(
                f"SELECT m.seq FROM memories m WHERE m.cube_id = ? AND m.episode = ? {predicate}"
                " ORDER BY m.episode_position, coalesce(m.occurred_at, m.created_at), m.seq LIMIT ?",
                [cube_id, episode, *params, MAX_EPISODE_ROWS],
            )
        ]
        index.update((seq, (turns, position)) for position, seq in enumerate(turns) if seq in episode_of)
    found: dict[int, list[tuple[int, int]]] = {}
    for seq in seqs:
        if seq not in index:
            continue
        turns, at = index[seq]
        found[seq] = [
            (i - at, turns[i]) for i in range(max(0, at - width), min(len(turns), at + width + 1)) if i != at
        ]
    return found
