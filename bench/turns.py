"""One conversation turn, as both memos and the official memory server are given it by the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Turn:
    id: str  # unique, e.g. f"{session_id}#{index}"
    session: str
    role: str  # "user" | "assistant"
    date: str  # the session's date as the dataset gives it, e.g. "2023/05/25 (Thu) 10:04"
    content: str
