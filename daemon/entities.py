"""The entity index: the people, places, projects, titles, numbers and dates a memory mentions, found by
deterministic rules over its text and metadata (no model), kept in `memory_entities` (migration 8).

Rules, in `extract`: runs of capitalised words that do not merely start a sentence (a sentence's first word
counts when it is no common word: "Caroline went…" yes, "Yesterday we…" no); numbers of two or more digits
(years, amounts, counts); day-month dates ("8 May", "May 8th"); text in double quotes (titles); and the
metadata `speaker`. Each entity is kept casefolded, possessive "'s" dropped.

Every writer keeps the index right without knowing of it: triggers put an inserted or changed memory in
`entity_pending`, and a write that knows its memories (add, batch, update, import) indexes them in its own
transaction with `index`; what is left (rows from before migration 8, other writers) is indexed by
`EntityIndex.backfill`, a background task of the daemon's lifespan.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskStatus

from daemon.lexical import STOP_WORDS
from daemon.store import Connection, Store, placeholders
from daemon.supervision import retrying

__all__ = [
    "EntityIndex",
    "entities_of",
    "entities_of_memory",
    "extract",
    "frequencies",
    "holders",
    "index",
    "linked",
]

log = logging.getLogger("memos.entities")

BACKFILL_BATCH = 500
_RECHECK_S = 60.0
MAX_ENTITY_CHARS = 80
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MONTHS})\b|\b({_MONTHS}) (\d{{1,2}})(?:st|nd|rd|th)?\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?(?![\w.]*\w)")
_QUOTED = re.compile(r"\"([^\"\n]{2,80})\"|“([^”\n]{2,80})”")
_WORD = re.compile(r"[A-Za-z][\w'’&-]*")
_SENTENCE_END = re.compile(r"[.!?]\s*$|^\s*$")
# Common words that start sentences capitalised without naming anything.
_COMMON = STOP_WORDS | frozenset(
    [
        "hey",
        "hi",
        "hello",
        "yes",
        "yeah",
        "yep",
        "no",
        "nope",
        "oh",
        "wow",
        "thanks",
        "thank",
        "ok",
        "okay",
        "sure",
        "well",
        "so",
        "and",
        "but",
        "also",
        "just",
        "really",
        "great",
        "awesome",
        "cool",
        "nice",
        "good",
        "sounds",
        "that's",
        "it's",
        "i'm",
        "i've",
        "i'd",
        "i'll",
        "let's",
        "what's",
        "how's",
        "here's",
        "there's",
        "yesterday",
        "today",
        "tomorrow",
        "last",
        "next",
        "this",
        "these",
        "those",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "we",
        "you",
        "they",
        "he",
        "she",
        "please",
        "maybe",
        "definitely",
        "absolutely",
        "totally",
        "congrats",
        "congratulations",
        "sorry",
        "glad",
        "love",
        "like",
        "lol",
        "haha",
        "anyway",
        "btw",
        "by",
        "the",
        "way",
        "actually",
        "honestly",
        "right",
        "true",
        "cheers",
        "bye",
        "see",
        "take",
        "have",
        "had",
        "has",
        "do",
        "did",
        "does",
        "can",
        "could",
        "would",
        "should",
        "will",
        "won't",
        "don't",
        "didn't",
        "can't",
        "isn't",
        "wasn't",
        "went",
        "got",
        "get",
        "make",
        "made",
        "thinking",
        "speaking",
        "talking",
        "being",
        "having",
        "getting",
        "going",
        "looking",
        "trying",
        "working",
    ]
)

# Capitalised, but dates (kept whole by _DATE) or the pronoun rather than names.
_NOT_NAMES = frozenset(
    {"i", *_MONTHS.split("|"), "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)


def _name(word: str) -> str:
    return re.sub(r"['’]s$", "", word).strip("'’&-").casefold()


Doubtful = tuple[
    str, str, str
]  # a run of names that starts a sentence: (whole run, the rest, its first word)


def extract(text: str, speaker: object = None, known: set[str] | None = None) -> set[str]:
    """The entities of a text (and its speaker's name), casefolded. A run of capitalised words that starts a
    sentence ("Met Bob Jones…", "New York is…") counts whole if `known` holds it (the cube has it from
    elsewhere), else without its first word; without `known` (a query), whole."""
    sure, doubtful = parts(text, speaker)
    return sure | resolve(doubtful, known)


def resolve(doubtful: list[Doubtful], known: set[str] | None) -> set[str]:
    found = set()
    for whole, rest, first in doubtful:
        if known is None or whole in known:
            found.add(whole)
            continue
        if rest:
            found.add(rest)
        if first in known:
            found.add(first)
    return found


def parts(text: str, speaker: object = None) -> tuple[set[str], list[Doubtful]]:
    """The entities sure to be names, and the runs that start a sentence."""
    found: set[str] = set()
    doubtful: list[Doubtful] = []
    for match in _QUOTED.finditer(text):
        found.add((match[1] or match[2]).strip().casefold())
    for match in _DATE.finditer(text):
        day, month = (match[1], match[2]) if match[1] else (match[4], match[3])
        found.add(f"{int(day)} {month.casefold()[:3]}")
    for match in _NUMBER.finditer(text):
        digits = re.sub(r"[$,]", "", match[0])
        if sum(c.isdigit() for c in digits) >= 2:
            found.add(digits)
    run: list[str] = []
    initial = False  # the run starts a sentence

    def close() -> None:
        names = [_name(w) for w in run]
        if initial:
            doubtful.append((" ".join(names), " ".join(names[1:]), names[0]))
        elif run:
            found.add(" ".join(names))

    for match in _WORD.finditer(text):
        word = match[0]
        starts = bool(_SENTENCE_END.search(text[max(0, match.start() - 3) : match.start()]))
        capital = (word[0].isupper() and not word.isupper()) or (word.isupper() and len(word) > 1)
        named = capital and (not starts or _name(word) not in _COMMON) and _name(word) not in _NOT_NAMES
        if named and run and text[match.start() - 1] == " " and not starts:
            run.append(word)
            continue
        if run:
            close()
        run, initial = ([word], starts) if named else ([], False)
    if run:
        close()
    if isinstance(speaker, str) and speaker.strip():
        found.add(speaker.strip().casefold())
    keep = lambda entity: bool(entity) and len(entity) <= MAX_ENTITY_CHARS  # noqa: E731
    return {e for e in found if keep(e)}, [d for d in doubtful if keep(d[0])]


def _speaker(metadata: str | None) -> object:
    if not metadata:
        return None
    try:
        decoded = msgspec.json.decode(metadata)
    except msgspec.DecodeError:
        return None
    return decoded.get("speaker") if isinstance(decoded, dict) else None


async def index(conn: Connection, seqs: Sequence[int]) -> None:
    """(Re)index these memories' entities, in the caller's write transaction."""
    if not seqs:
        return
    rows = await conn.rows(
        f"SELECT seq, cube_id, content, metadata FROM memories WHERE seq IN ({placeholders(len(seqs))})",
        list(seqs),
    )
    found = [(row["seq"], row["cube_id"], row["content"], row["metadata"]) for row in rows]
    await _store(conn, found, list(seqs), replace=True)


async def index_new(conn: Connection, rows: Sequence[tuple[int, int, str, str | None]]) -> None:
    """Index memories this write just inserted, from what it knows of them: (seq, cube id, content,
    metadata JSON). Nothing to read back, and no old entities to remove (a memory's go when it does)."""
    if rows:
        await _store(conn, rows, [seq for seq, _, _, _ in rows], replace=False)


async def _store(
    conn: Connection, rows: Sequence[tuple[int, int, str, str | None]], seqs: list[int], *, replace: bool
) -> None:
    """Store the entities of these memories (in place of their old ones if `replace`) and take `seqs` off
    `entity_pending`."""
    found = {seq: (cube_id, *parts(content, _speaker(metadata))) for seq, cube_id, content, metadata in rows}
    # A doubtful run is known when the cube has it already, or another of these memories names it surely.
    known: dict[int, set[str]] = {}
    for cube_id, sure, _ in found.values():
        known.setdefault(cube_id, set()).update(sure)
    for cube_id in known:
        asked = {
            name
            for c, _, doubtful in found.values()
            if c == cube_id
            for d in doubtful
            for name in (d[0], d[2])
        }
        known[cube_id] |= set(await frequencies(conn, [cube_id], asked))
    marks = placeholders(len(seqs))
    if replace:
        await conn.execute(f"DELETE FROM memory_entities WHERE seq IN ({marks})", seqs)
    entities = [
        (cube_id, entity, seq)
        for seq, (cube_id, sure, doubtful) in found.items()
        for entity in sorted(sure | resolve(doubtful, known[cube_id]))
    ]
    if entities:
        await conn.execute_many(
            "INSERT OR IGNORE INTO memory_entities (cube_id, entity, seq) VALUES (?, ?, ?)", entities
        )
    await conn.execute(f"DELETE FROM entity_pending WHERE seq IN ({marks})", seqs)


async def entities_of_memory(conn: Connection, memory_id: str) -> list[str]:
    """A memory's entities, sorted (empty until it is indexed)."""
    rows = await conn.rows(
        "SELECT e.entity FROM memory_entities e JOIN memories m ON m.seq = e.seq WHERE m.id = ? ORDER BY e.entity",
        (memory_id,),
    )
    return [row["entity"] for row in rows]


async def entities_of(conn: Connection, seqs: Iterable[int]) -> dict[int, list[str]]:
    """Each memory's entities, sorted."""
    seqs = list(seqs)
    if not seqs:
        return {}
    found: dict[int, list[str]] = {seq: [] for seq in seqs}
    for row in await conn.rows(
        f"SELECT seq, entity FROM memory_entities WHERE seq IN ({placeholders(len(seqs))}) ORDER BY seq, entity",
        seqs,
    ):
        found[row["seq"]].append(row["entity"])
    return found


class EntityIndex:
    """Indexes what the writers left pending (rows from before the index existed), in the background."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.idle = anyio.Event()  # set once a pass has found nothing pending (tests and benchmarks wait)

    async def backfill(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Index pending memories in batches, then look again now and then; runs until cancelled."""
        task_status.started()
        while True:
            while await retrying("indexing entities", self.backfill_batch):
                await anyio.lowlevel.checkpoint()  # let searches and writes in between batches
            self.idle.set()
            await anyio.sleep(_RECHECK_S)

    async def backfill_batch(self) -> bool:
        """Index up to one batch of pending memories; False when none were pending."""
        async with self._store.read() as conn:  # most looks find nothing: no write lock for those
            if await conn.value("SELECT 1 FROM entity_pending LIMIT 1") is None:
                return False
        async with self._store.write() as conn:
            seqs = [
                row["seq"]
                for row in await conn.rows(
                    "SELECT seq FROM entity_pending ORDER BY seq LIMIT ?", (BACKFILL_BATCH,)
                )
            ]
            await index(conn, seqs)
        if seqs:
            log.info("entity index: %d memories indexed", len(seqs))
        return bool(seqs)


# -- what search reads ---------------------------------------------------------------------------------------


async def frequencies(conn: Connection, cube_ids: Sequence[int], entities: Iterable[str]) -> dict[str, int]:
    """How many memories of the cubes hold each entity."""
    entities = sorted(set(entities))
    if not entities or not cube_ids:
        return {}
    rows = await conn.rows(
        f"SELECT entity, count(*) AS holders FROM memory_entities WHERE cube_id IN ({placeholders(len(cube_ids))})"
        f" AND entity IN ({placeholders(len(entities))}) GROUP BY entity",
        [*cube_ids, *entities],
    )
    return {row["entity"]: row["holders"] for row in rows}


async def holders(
    conn: Connection,
    cube_ids: Sequence[int],
    entities: Iterable[str],
    predicate: str,
    params: Sequence[Any],
    limit: int,
) -> list[tuple[int, str]]:
    """(seq, entity) of the memories that hold the entities, under the search's filters (`m.` columns)."""
    entities = sorted(set(entities))
    if not entities or not cube_ids:
        return []
    return [
        (row["seq"], row["entity"])
        for row in await conn.rows(
            f"SELECT e.seq, e.entity FROM memory_entities e JOIN memories m ON m.seq = e.seq"
            f" WHERE e.cube_id IN ({placeholders(len(cube_ids))}) AND e.entity IN ({placeholders(len(entities))})"
            f" {predicate} LIMIT ?",
            [*cube_ids, *entities, *params, limit],
        )
    ]


async def linked(
    conn: Connection, seqs: Sequence[int], cube_ids: Sequence[int], predicate: str, params: Sequence[Any]
) -> list[tuple[int, int]]:
    """(seq, other seq) for each link between one of `seqs` and a memory of the cubes, either way, under the
    search's filters (`m.` columns: the other end)."""
    if not seqs or not cube_ids:
        return []
    marks, cubes = placeholders(len(seqs)), placeholders(len(cube_ids))

    def one_way(near: str, far: str) -> str:
        return (
            f"SELECT s.seq AS seed, m.seq AS reached FROM memories s JOIN memory_links l ON l.{near} = s.id JOIN memories m"
            f" ON m.id = l.{far} WHERE s.seq IN ({marks}) AND m.cube_id IN ({cubes}) {predicate}"
        )

    rows = await conn.rows(
        one_way("from_id", "to_id") + " UNION " + one_way("to_id", "from_id"),
        [*seqs, *cube_ids, *params, *seqs, *cube_ids, *params],
    )
    return [(row["seed"], row["reached"]) for row in rows]
