"""Lexical queries: user text turned into FTS5 MATCH expressions that are only ever plain words.

`fts_query` ORs the query's content words (stop words dropped) for BM25 over the Porter-stemmed index;
`exact_query` keeps only what names one thing (numbers, identifiers, capitalised names) as phrases, so
"v2.3.1", "Rosa" or "1,200" rank the memories that say exactly that.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+")  # letters and digits: what the unicode61 tokenizer keeps
# Dropped from the lexical query unless nothing else is left: they match nearly everything.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _is_stop_word(word: str) -> bool:
    # A lone letter is the tail of a possessive or a contraction ("Rosa's", "don't"): it matches nearly
    # everything and says nothing.
    return word.lower() in STOP_WORDS or (len(word) == 1 and word.isalpha())


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression that treats `text` as plain words, or None if it has no words."""
    # Case is left to the tokenizer, which folds it the same way on both sides of the match.
    return " OR ".join(f'"{w}"' for w in query_words(text)) or None


# Runs of letters and digits joined by identifier punctuation; an identifier is one with a joint or a digit
# ("v2.3.1", "ab-12", "1,200", "42"). Linear in the text: one long word must not stall the event loop.
_JOINED = re.compile(r"[^\W_]+(?:[-_.@/:,'][^\W_]+)*")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][^\W\d_]+")  # a capitalised word not opening a sentence


def exact_query(text: str) -> str | None:
    """An FTS5 expression of the query's numbers, identifiers and names as phrases, or None if it has none."""
    phrases = [m.group(0) for m in _JOINED.finditer(text) if not m.group(0).isalpha()]
    phrases += [w for w in _NAME.findall(text.strip()) if not _is_stop_word(w)]
    parts = [" ".join(_WORD.findall(phrase)) for phrase in dict.fromkeys(phrases)]
    parts = [part for part in parts if part]
    return " OR ".join(f'"{part}"' for part in dict.fromkeys(parts)) or None


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def query_words(text: str) -> list[str]:
    """The query's content words, in order, once each."""
    words = list(dict.fromkeys(_WORD.findall(text)))
    return [w for w in words if not _is_stop_word(w)] or words


def matched_terms(words: list[str], content: str) -> list[str]:
    """Which of the query's content words the text contains (loosely: "plants" finds "planted")."""
    present = {_stem(word) for word in _WORD.findall(content)}
    return [word for word in words if _stem(word) in present]
