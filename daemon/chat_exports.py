"""ChatGPT and Claude.ai data exports (`conversations.json`) as conversation turns.

Each user or assistant message becomes one memory (kind `message` unless the import says otherwise) with
metadata `session` (the conversation's id), `title`, `turn` (0, 1, … in the conversation) and `role`
(`user` or `assistant`), and the message's time as `occurred_at`. System and tool messages, hidden messages
and non-text parts (images, thinking) are left out. A malformed conversation or message is reported where
it is and the rest is imported. Ids come from the message's own id, so a second import adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from daemon.timeutil import format_time
from daemon.transfer import ImportDefaults, Located, MemoryRecord, encode_record
from daemon.validation import private_cube_of

_ROLES = {"user": "user", "assistant": "assistant", "human": "user"}


def _turn_id(defaults: ImportDefaults, source: str, conversation: str, message: str) -> str:
    """The same message imported into the same cube for the same agent gets the same id, and only then."""
    agent = defaults.agent or ""
    key = "\x1f".join([defaults.cube or private_cube_of(agent), agent, source, conversation, message])
    return "mem_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class _Conversation:
    """Numbers the turns of one conversation and makes their lines."""

    def __init__(self, defaults: ImportDefaults, source: str, conversation_id: str, title: str, where: str):
        self.defaults, self.source, self.id, self.title, self.where = (
            defaults,
            source,
            conversation_id,
            title,
            where,
        )
        self.turn = 0

    def turn_line(self, message_id: str, role: str, text: str, when: str | None) -> Located:
        metadata: dict[str, Any] = {"session": self.id, "turn": self.turn, "role": role}
        if self.title:
            metadata["title"] = self.title
        self.turn += 1
        record = MemoryRecord(
            id=_turn_id(self.defaults, self.source, self.id, message_id),
            content=text,
            occurred_at=when,
            metadata=metadata,
        )
        return Located(where=f"{self.where}, message {message_id}", line=encode_record(record))


def _where(number: int, title: object) -> str:
    return (
        f"conversation {number} ({title!r})" if isinstance(title, str) and title else f"conversation {number}"
    )


def _conversations(data: Any) -> list[Any]:
    return data if isinstance(data, list) else [data]  # one conversation on its own


def _epoch(value: object) -> str | None:
    """Seconds since 1970 as a time; None for anything else (or a number no calendar holds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return format_time(datetime.fromtimestamp(value, timezone.utc))
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _chatgpt_text(content: object) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        return "\n".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
    text = content.get("text")
    return text.strip() if isinstance(text, str) else ""


def _main_branch(mapping: dict[str, Any], current: str) -> list[str]:
    """Node ids from the root down to `current`, following each node's `parent`."""
    chain: list[str] = []
    node_id: object = current
    while node_id is not None:
        if not isinstance(node_id, str) or node_id not in mapping or node_id in chain:
            raise ValueError(f"node {node_id!r} on the way from current_node to the root is not in mapping")
        chain.append(node_id)
        node = mapping[node_id]
        node_id = node.get("parent") if isinstance(node, dict) else None
    return chain[::-1]


def chatgpt_items(data: Any, defaults: ImportDefaults) -> Iterator[Located]:
    """A ChatGPT export: a list of conversations, each a `mapping` of nodes; the main branch is the chain
    from `current_node` up through `parent` (edited or regenerated branches are left out)."""
    for number, conversation in enumerate(_conversations(data), start=1):
        if not isinstance(conversation, dict):
            yield Located(where=f"conversation {number}", error="not a JSON object")
            continue
        where = _where(number, conversation.get("title"))
        conversation_id = conversation.get("conversation_id") or conversation.get("id")
        mapping, current = conversation.get("mapping"), conversation.get("current_node")
        if not isinstance(mapping, dict) or not isinstance(current, str):
            yield Located(
                where=where, error="no mapping of messages with a current_node: not a ChatGPT conversation"
            )
            continue
        if not isinstance(conversation_id, str):
            yield Located(where=where, error="no conversation_id or id")
            continue
        try:
            branch = _main_branch(mapping, current)
        except ValueError as exc:
            yield Located(where=where, error=str(exc))
            continue
        turns = _Conversation(
            defaults, "chatgpt", conversation_id, str(conversation.get("title") or ""), where
        )
        for node_id in branch:
            message = mapping[node_id].get("message") if isinstance(mapping[node_id], dict) else None
            if message is None:
                continue
            author = message.get("author") if isinstance(message, dict) else None
            role = author.get("role") if isinstance(author, dict) else None
            if not isinstance(role, str):
                yield Located(
                    where=f"{where}, message {node_id}", error="message.author.role is not a string"
                )
                continue
            hidden = isinstance(message.get("metadata"), dict) and message["metadata"].get(
                "is_visually_hidden_from_conversation"
            )
            text = _chatgpt_text(message.get("content"))
            if role not in _ROLES or hidden or not text:
                continue
            when = _epoch(message.get("create_time")) or _epoch(conversation.get("create_time"))
            yield turns.turn_line(node_id, _ROLES[role], text, when)


def _claude_text(message: dict[str, Any]) -> str:
    blocks = message.get("content")
    texts = [
        block["text"].strip()
        for block in (blocks if isinstance(blocks, list) else [])
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    text = "\n\n".join(t for t in texts if t)
    if not text and isinstance(message.get("text"), str):
        text = message["text"].strip()
    return text


def claude_items(data: Any, defaults: ImportDefaults) -> Iterator[Located]:
    """A Claude.ai export: a list of `{uuid, name, created_at, chat_messages: [{uuid, sender, text, content,
    created_at}]}`; `sender` is `human` or `assistant`."""
    for number, conversation in enumerate(_conversations(data), start=1):
        if not isinstance(conversation, dict):
            yield Located(where=f"conversation {number}", error="not a JSON object")
            continue
        where = _where(number, conversation.get("name"))
        conversation_id, messages = conversation.get("uuid"), conversation.get("chat_messages")
        if not isinstance(conversation_id, str) or not isinstance(messages, list):
            yield Located(where=where, error="no uuid and chat_messages list: not a Claude conversation")
            continue
        turns = _Conversation(defaults, "claude", conversation_id, str(conversation.get("name") or ""), where)
        for index, message in enumerate(messages):
            message_id = message.get("uuid") if isinstance(message, dict) else None
            located = f"{where}, message {message_id if isinstance(message_id, str) else index + 1}"
            if not isinstance(message, dict) or not isinstance(message.get("sender"), str):
                yield Located(where=located, error="not a message with a sender")
                continue
            text = _claude_text(message)
            if message["sender"] not in _ROLES or not text:
                continue
            when = message.get("created_at")
            yield turns.turn_line(
                message_id if isinstance(message_id, str) else str(index),
                _ROLES[message["sender"]],
                text,
                when if isinstance(when, str) else None,
            )
