"""Who said it: a question about what the assistant said ("you recommended", "did you mention", "remind me of
that restaurant", "our last chat") is after the assistant's turns; a question in the first person ("my
dentist appointment", "what did I say about…") after the user's own words, where a person's facts live; any
other question favours no one.

Conversation turns (kind `message`) say their speaker in metadata `role` (the transcript importer writes it
too). Only the other speaker's turns are held back: memories of other kinds, and turns without a known role,
are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Speaker = Literal["user", "assistant"]

_ROLES: dict[str, Speaker] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "model": "assistant",
}
_SAID = (  # past forms: "you recommended", "I told you"
    r"(?:mentioned|said|told|recommended|suggested|gave|given|provided|listed|created|wrote|written|shared"
    r"|explained|described|offered|proposed|picked|chose|chosen|sent|found|showed|shown|came up with)"
)
_SAY = (  # after "did": "did you mention", "what did I say"
    r"(?:mention|say|tell|recommend|suggest|give|provide|list|create|write|share|explain|describe|offer"
    r"|propose|pick|choose|send|find|show|come up with)"
)
# "I told you", "what did I say": the user's own words, whatever else the question says.
_USER_RECALL = re.compile(rf"\b(?:I|we) (?:\w+ )?{_SAID}\b|\bdid (?:I|we) (?:\w+ )?{_SAY}\b", re.IGNORECASE)
_ASSISTANT_RECALL = re.compile(
    rf"\byou(?:'ve|'d| have| had)? (?:\w+ )?{_SAID}\b|\bdid you (?:\w+ )?{_SAY}\b"
    r"|\byour (?:suggestion|recommendation|advice|answer|list|idea|explanation|example)s?\b"
    r"|\bour (?:previous|last|earlier|past) (?:conversation|chat|discussion|talk|exchange)\b",
    re.IGNORECASE,
)
_REMIND_ME = re.compile(r"\bremind me\b([^.?!]*)", re.IGNORECASE)
_FIRST_PERSON = re.compile(
    r"\b(?:I|I'm|I've|I'd|I'll|my|mine|me|myself|we|we're|we've|our|ours|us)\b", re.IGNORECASE
)


def _asks_about(text: str) -> Speaker | None:
    if _USER_RECALL.search(text):
        return "user"
    if _ASSISTANT_RECALL.search(text):
        return "assistant"
    # "Remind me of that restaurant" asks what was said to the user; "remind me when my flight is", about them.
    if any(not _FIRST_PERSON.search(rest) for rest in _REMIND_ME.findall(text)):
        return "assistant"
    return "user" if _FIRST_PERSON.search(text) else None


def asked_about(texts: list[str]) -> Speaker | None:
    """Whose words the question is after; None when it does not say, or its phrasings disagree."""
    found = {speaker for speaker in map(_asks_about, texts) if speaker is not None}
    return found.pop() if len(found) == 1 else None


def _name_pattern(speaker: str) -> re.Pattern[str]:
    """A speaker's full name or first name, as whole words."""
    forms = sorted({speaker, speaker.split()[0]}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(map(re.escape, forms)) + r")\b")


def _named(texts: list[str], speakers: Iterable[object]) -> dict[str, str]:
    """The speakers the phrasings name: casefolded name -> the name as stored."""
    named = {}
    for speaker in sorted({s.strip() for s in speakers if isinstance(s, str) and len(s.strip()) > 1}):
        if any(_name_pattern(speaker).search(text) for text in texts):
            named[speaker.casefold()] = speaker
    return named


def named_speaker(texts: list[str], speakers: Iterable[object]) -> str | None:
    """The one of `speakers` (metadata `speaker` names) the question names, casefolded; None when it names
    none of them or several."""
    named = _named(texts, speakers)
    return next(iter(named)) if len(named) == 1 else None


def without_speaker_names(texts: list[str], speakers: Iterable[object]) -> list[str] | None:
    """The phrasings with the speakers they name left out ("What has Melanie painted?" -> "What has
    painted?", "Melanie's" -> "their"); None when they name none of `speakers`.

    In a conversation between named people a turn seldom names its own speaker, so as a search term a name
    mostly finds the other one addressing them ("Thanks, Melanie!"); whose turns are wanted is the speaker
    signal's part (`named_speaker`)."""
    named = _named(texts, speakers)
    if not named:
        return None
    for speaker in named.values():
        pattern = _name_pattern(speaker)
        possessive = re.compile(pattern.pattern + r"['’]s\b")
        texts = [
            re.sub(r"\s+", " ", pattern.sub("", possessive.sub("their", text))).strip() for text in texts
        ]
    return texts


def speaker_signal(
    role: object, wanted: Speaker | None, speaker: object = None, named: str | None = None
) -> float:
    """0: a turn by another speaker than the one asked about, else 1. The role rule comes first where both
    the question and the turn have one ("what did I tell Claude?" is after the user's words, though it names
    the assistant); else the one person the question names."""
    said_by = _ROLES.get(role.strip().lower()) if isinstance(role, str) else None
    if wanted is not None and said_by is not None:
        return 0.0 if said_by != wanted else 1.0
    if named is not None and isinstance(speaker, str) and speaker.strip():
        return 1.0 if speaker.strip().casefold() == named else 0.0
    return 1.0
