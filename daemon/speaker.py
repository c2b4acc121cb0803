"""Who said it: a question about what the assistant said ("you recommended", "remind me", "our last chat")
is answered by the assistant's turns; any other by the user's own words, where a person's facts live.

Conversation turns say their speaker in metadata `role` (the transcript importer writes it too). Only the
other speaker's turns are held back: memories without a known role (facts, notes, decisions) are not.
"""

from __future__ import annotations

import re
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
_ASKS_ABOUT_ASSISTANT = re.compile(
    r"\byou (?:\w+ )?(?:mentioned|said|told|recommended|suggested|gave|provided|listed|created|wrote|shared"
    r"|explained|described|offered|proposed|came up with)\b"
    r"|\bdid you (?:\w+ )?(?:mention|say|tell|recommend|suggest|give|provide|list|create|write|share|explain"
    r"|describe|offer|propose|come up with)\b"
    r"|\bremind me\b(?! (?:\w+ ){0,3}I\b)"  # "remind me what I said" asks about the user's words
    r"|\bour (?:previous|last|earlier|past) (?:conversation|chat|discussion|talk|exchange)\b",
    re.IGNORECASE,
)


def asked_about(texts: list[str]) -> Speaker:
    """Whose words the question is after."""
    return "assistant" if any(_ASKS_ABOUT_ASSISTANT.search(text) for text in texts) else "user"


def speaker_signal(role: object, wanted: Speaker) -> float:
    """0: said by the other speaker than the one asked about; else 1."""
    speaker = _ROLES.get(role.strip().lower()) if isinstance(role, str) else None
    return 0.0 if speaker is not None and speaker != wanted else 1.0
