"""Importing what users already have: ChatGPT and Claude.ai data exports, the MCP memory server's memory.json,
and telling them (and our own formats) apart by their shape. Samples in tests/data follow each published shape."""

from __future__ import annotations

import json
from math import nan
from pathlib import Path

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.chat_exports import chatgpt_items, claude_items
from daemon.graph_import import graph_items
from daemon.transfer import ImportDefaults
from tests.conftest import free_port, write_config
from tests.conftest import memos_at as memos

DATA = Path(__file__).parent / "data"


def _exported(config: Path) -> list[dict]:
    return [json.loads(line) for line in memos(config, "export").stdout.splitlines()]


def _turns(config: Path) -> list[tuple]:
    return [
        (r["kind"], r["content"], r["metadata"]["session"], r["metadata"].get("title"), r["metadata"]["turn"],
         r["metadata"]["role"], r["occurred_at"])
        for r in _exported(config)
    ]  # fmt: skip


def test_a_chatgpt_export_imports_its_main_branch_as_message_turns_once(tmp_path: Path) -> None:
    """The main branch is the chain from `current_node` up through `parent`: a regenerated answer left on a
    side branch, the hidden system message and a tool's output are not turns; an image part is left out."""
    config = write_config(tmp_path, port=free_port(), model="none")
    sample = str(DATA / "chatgpt-conversations.json")
    first = memos(config, "import", sample, "--format", "chatgpt", "--agent", "ann")
    assert first.stdout.strip() == "5 added, 0 already present, 0 bad lines"
    kyoto, allergy = "6812a0f0-0000-8000-a000-000000000001", "6813f270-0000-8000-a000-000000000002"
    assert _turns(config) == [
        ("message", "I'm planning a trip to Kyoto in April", kyoto, "Kyoto trip", 0, "user",
         "2025-05-01T10:00:00.500000Z"),
        ("message", "April is cherry blossom season: book early", kyoto, "Kyoto trip", 1, "assistant",
         "2025-05-01T10:00:10.250000Z"),
        ("message", "This is the ryokan I booked", kyoto, "Kyoto trip", 2, "user", "2025-05-01T10:01:40.000000Z"),
        ("message", "Remember that I am allergic to peanuts", allergy, "Allergy note", 0, "user",
         "2025-05-02T10:00:00.000000Z"),
        ("message", "Noted: no peanuts in any recipe I suggest.", allergy, "Allergy note", 1, "assistant",
         "2025-05-02T10:00:03.000000Z"),
    ]  # fmt: skip
    again = memos(config, "import", sample, "--format", "chatgpt", "--agent", "ann")
    assert again.stdout.strip() == "0 added, 5 already present, 0 bad lines"


def test_a_claude_export_imports_each_chat_message_as_a_turn_once(tmp_path: Path) -> None:
    """Text blocks of `content` are the message (thinking is not); `text` where content has none. Two
    identical messages at the same moment are two turns."""
    config = write_config(tmp_path, port=free_port(), model="none")
    sample = str(DATA / "claude-conversations.json")
    first = memos(config, "import", sample, "--format", "claude", "--agent", "ann")
    assert first.stdout.strip() == "5 added, 0 already present, 0 bad lines"
    garden, short = "3f1c2a4e-1111-4a2b-9c3d-000000000001", "3f1c2a4e-1111-4a2b-9c3d-000000000002"
    assert _turns(config) == [
        ("message", "I want to grow tomatoes on my balcony", garden, "Garden planning", 0, "user",
         "2026-04-02T09:15:00.100000Z"),
        ("message", "Cherry tomatoes do well in containers.\n\nGive them six hours of sun.", garden,
         "Garden planning", 1, "assistant", "2026-04-02T09:15:09.500000Z"),
        ("message", "My balcony faces south", garden, "Garden planning", 2, "user", "2026-04-02T09:16:00.000000Z"),
        ("message", "ok", short, None, 0, "user", "2026-04-05T18:00:00.000000Z"),
        ("message", "ok", short, None, 1, "user", "2026-04-05T18:00:00.000000Z"),
    ]  # fmt: skip
    again = memos(config, "import", sample, "--format", "claude", "--agent", "ann")
    assert again.stdout.strip() == "0 added, 5 already present, 0 bad lines"


def test_an_mcp_memory_graph_imports_observations_and_relations_as_facts_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    sample = str(DATA / "mcp-memory.json")
    first = memos(config, "import", sample, "--format", "mcp-memory", "--agent", "ann")
    assert first.stdout.strip() == "3 added, 0 already present, 0 bad lines"
    assert [(r["kind"], r["content"], r["metadata"]) for r in _exported(config)] == [
        ("fact", "John_Smith: Speaks fluent Spanish", {"entity": "John_Smith", "entityType": "person"}),
        ("fact", "John_Smith: Prefers morning meetings", {"entity": "John_Smith", "entityType": "person"}),
        ("fact", "John_Smith works_at Anthropic",
         {"from": "John_Smith", "relationType": "works_at", "to": "Anthropic"}),
    ]  # fmt: skip
    again = memos(config, "import", sample, "--format", "mcp-memory", "--agent", "ann")
    assert again.stdout.strip() == "0 added, 3 already present, 0 bad lines"


def test_without_format_each_source_is_recognised_by_its_shape(tmp_path: Path) -> None:
    """Steps: import the three samples, a transcript, a folder of notes and one of our exports (from stdin),
    none with --format: each lands as its own format would, and the summary says which format was read (except for our own JSONL, which import always read)."""
    config = write_config(tmp_path, port=free_port(), model="none")
    transcript = tmp_path / "chat.json"
    transcript.write_text(json.dumps([{"role": "user", "content": "hello there"}]))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nnote a\n")
    expected = {
        str(DATA / "chatgpt-conversations.json"): ("chatgpt", 5),
        str(DATA / "claude-conversations.json"): ("claude", 5),
        str(DATA / "mcp-memory.json"): ("mcp-memory", 3),
        str(transcript): ("transcript", 1),
        str(notes): ("markdown", 1),
    }
    for source, (form, count) in expected.items():
        result = memos(config, "import", source, "--agent", "ann")
        assert result.stdout.splitlines() == [
            f"reading {source} as {form}",
            f"{count} added, 0 already present, 0 bad lines",
        ]
    exported = memos(config, "export").stdout
    kinds = [json.loads(line)["kind"] for line in exported.splitlines()]
    assert kinds == ["message"] * 10 + ["fact"] * 3 + ["message", "note"]
    other = tmp_path / "other"
    other.mkdir()
    fresh = write_config(other, port=free_port(), model="none")
    result = memos(fresh, "import", "-", stdin=exported)
    assert result.stdout.splitlines() == ["15 added, 0 already present, 0 bad lines"]
    by_file = tmp_path / "export.jsonl"
    by_file.write_text(exported)
    assert (
        memos(fresh, "import", str(by_file)).stdout.splitlines()[-1]
        == "0 added, 15 already present, 0 bad lines"
    )


def test_bad_items_of_foreign_exports_are_reported_where_they_are_and_strict_writes_nothing(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    memos(config, "agent", "add", "ann")  # so stderr holds only the bad items
    conversations = json.loads((DATA / "chatgpt-conversations.json").read_text())
    broken = {"title": "Broken", "create_time": 1746180000.0, "current_node": "x", "id": "c-3"}
    conversations.append(broken)
    conversations[1]["mapping"]["bbb2"]["message"]["author"] = {"role": 7}
    chatgpt = tmp_path / "conversations.json"
    chatgpt.write_text(json.dumps(conversations))
    strict = memos(
        config, "import", str(chatgpt), "--format", "chatgpt", "--agent", "ann", "--strict", check=False
    )
    assert strict.returncode == 1 and "nothing was written" in strict.stderr
    assert memos(config, "export").stdout == ""
    result = memos(config, "import", str(chatgpt), "--format", "chatgpt", "--agent", "ann", check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == "4 added, 0 already present, 2 bad lines"
    assert result.stderr.splitlines()[0].startswith("conversation 2 ('Allergy note'), message bbb2: ")
    assert result.stderr.splitlines()[1].startswith("conversation 3 ('Broken'): ")
    assert "mapping" in result.stderr.splitlines()[1]

    graph = tmp_path / "memory.json"
    lines = (DATA / "mcp-memory.json").read_text().splitlines()
    graph.write_text("\n".join([lines[0], "{not json", '{"type":"entity","entityType":"x","observations":[]}',
                                '{"type":"note","text":"?"}', lines[2]]))  # fmt: skip
    result = memos(config, "import", str(graph), "--format", "mcp-memory", "--agent", "ann", check=False)
    assert result.stdout.strip() == "3 added, 0 already present, 3 bad lines"
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["line 2", "line 3", "line 4"]
    assert "'note' is not entity or relation" in result.stderr


def test_a_source_of_no_known_shape_is_refused_with_the_formats_that_are_known(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"question": "?"}]))
    result = memos(config, "import", str(odd), "--agent", "ann", check=False)
    assert result.returncode != 0
    assert "cannot tell which export" in result.stderr and "--format" in result.stderr


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = ["title", "create_time", "mapping", "current_node", "id", "conversation_id", "message", "author",
         "role", "content", "parts", "parent", "uuid", "name", "chat_messages", "sender", "text", "type",
         "created_at", "entityType", "observations", "from", "to", "relationType"]  # fmt: skip
# Objects built from the formats' own keys reach deeper into the parsers than arbitrary keys would.
_shaped = st.recursive(
    _json_values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_keys), inner, max_size=6),
    max_leaves=30,
)

_nodes = st.sampled_from(["a", "b", "c"])
_chatgpt = st.lists(
    st.fixed_dictionaries({
        "title": _json_values, "id": _json_values | st.just("conv-1"), "create_time": _json_values,
        "current_node": _nodes | _json_values,
        "mapping": st.dictionaries(_nodes, st.fixed_dictionaries({
            "parent": _nodes | _json_values,
            "message": st.none() | st.fixed_dictionaries({
                "author": st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool"]) | _json_values}),
                "content": st.fixed_dictionaries({"parts": st.lists(st.text() | _json_values)}) | _json_values,
                "create_time": _json_values, "metadata": _json_values,
            }),
        })),
    }),
    max_size=3,
)  # fmt: skip
_claude = st.lists(
    st.fixed_dictionaries({
        "uuid": st.just("c-1") | _json_values, "name": _json_values,
        "chat_messages": st.lists(st.fixed_dictionaries({
            "uuid": st.text(max_size=4) | _json_values, "sender": st.sampled_from(["human", "assistant"]) | _json_values,
            "text": _json_values, "created_at": _json_values,
            "content": st.lists(st.fixed_dictionaries({"type": st.just("text") | _json_values, "text": _json_values})),
        }), max_size=4),
    }),
    max_size=3,
)  # fmt: skip


_ONE_TURN = {"author": {"role": "user"}, "content": {"parts": ["hi"]}}


@settings(max_examples=300, deadline=None)
@given(data=_shaped | _chatgpt | _claude)
@example(
    data=[
        {"id": "c", "current_node": "n", "mapping": {"n": {"message": {**_ONE_TURN, "create_time": 1e300}}}}
    ]
)
@example(
    data=[{"id": "c", "current_node": "n", "mapping": {"n": {"message": {**_ONE_TURN, "create_time": nan}}}}]
)
def test_the_export_parsers_turn_any_json_into_lines_or_located_errors_and_never_raise(data: object) -> None:
    defaults = ImportDefaults(agent="ann")
    items = [
        *chatgpt_items(data, defaults),
        *claude_items(data, defaults),
        *graph_items([msgspec.json.encode(data).decode(), "{", ""]),
    ]
    for item in items:
        assert item.where and (item.line is None) != (item.error is None)


def test_importing_for_an_agent_that_does_not_exist_says_so(tmp_path: Path) -> None:
    """A misspelt --agent would put the memories where no one reads them: the import says so on stderr."""
    config = write_config(tmp_path, port=free_port(), model="none")
    sample = str(DATA / "chatgpt-conversations.json")
    result = memos(config, "import", sample, "--agent", "anne")
    assert "there is no agent anne yet" in result.stderr and "memos agent add anne" in result.stderr
    memos(config, "agent", "add", "bea")
    assert "no agent" not in memos(config, "import", sample, "--agent", "bea").stderr
