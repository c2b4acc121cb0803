"""Secrets never reach the store when redaction is on, and logs never carry memory content or tokens."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import ConfigError, NewMemory, agent_named, open_services, sqlite_driver
from daemon.config import parse_config
from daemon.redaction import Redactor
from tests.conftest import (
    free_port,
    make_config,
    mcp_client,
    memos_at,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio

# Each secret carries a marker word; none of the markers may be found anywhere after the writes.
SECRETS = {
    "openai_key": "sk-proj-Qx7secretalphaQx7secretalphaQx7",
    "github_token": "ghp_Qx7secretbravo0123456789abcdefghijklmn",
    "aws_access_key": "AKIASECRETCHARLIE123",
    "password": "password=secretdelta99",
    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn secretecho NzaC1\n-----END OPENSSH PRIVATE KEY-----",
    "memos_token": "memos_secretfoxtrot0123456789abcdefghijklmnopqrstu",
    "anthropic_key": "sk-ant-api03-secretgolf0123456789abcdef",
    "slack_token": "xoxb-secrethotel-123456",
    "bearer_token": "Bearer secretindia0123456789abcd",
    "google_api_key": "AIzaSyA-secretjuliet0123456789abcdefghi",
    "import_password": "password: secretkilo1",
    "import_history": "passwd=secretlima2",
    "task_description": "sk-proj-secretmike0123456789abcdefghij",
    "task_notes": "api_key: secretnovember3",
}
MARKERS = [
    "secretalpha", "secretbravo", "secretcharlie", "secretdelta", "secretecho", "secretfoxtrot", "secretgolf",
    "secrethotel", "secretindia", "secretjuliet", "secretkilo", "secretlima",
    "secretmike", "secretnovember",
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123 ok", "key [REDACTED:openai_key] ok"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "[REDACTED:anthropic_key]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:github_token]"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijkl", "[REDACTED:github_token]"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws_access_key]"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED:aws_secret_key]",
        ),
        ("xoxp-1234567890-abcdefghij", "[REDACTED:slack_token]"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "[REDACTED:google_api_key]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbU", "[REDACTED:jwt]"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----", "[REDACTED:private_key]"),
        ("Authorization: Bearer abcdef0123456789abcdef", "Authorization: Bearer [REDACTED:bearer_token]"),
        ('password="two words" passwd: x1', "password=[REDACTED:password] passwd: [REDACTED:password]"),
        (
            "memos_Fj0NWOjyfHfUlW0abcdefghijklmnopqrstuvwxyzABCDE",
            "[REDACTED:memos_token]",
        ),
        (
            "memos_cli_commands_is_a_module_name_not_a_token",
            "memos_cli_commands_is_a_module_name_not_a_token",
        ),
        ("the sky is blue, my pass is fine", "the sky is blue, my pass is fine"),
        ("sk-the-quick-brown-fox-jumps-over", "sk-the-quick-brown-fox-jumps-over"),
        ("The secret: keep calm", "The secret: keep calm"),
        ("client_secret=abc123def", "client_secret=[REDACTED:password]"),
    ],
)
def test_well_known_secrets_are_masked_by_kind_and_plain_text_is_kept(text: str, masked: str) -> None:
    redactor = Redactor()
    assert redactor.text(text) == masked
    assert redactor.text(masked) == masked  # masking twice changes nothing


@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    kind=st.sampled_from(["openai_key", "github_token", "memos_token", "slack_token"]),
    body=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=40, max_size=60),
)
def test_a_key_anywhere_in_any_text_is_masked_and_masking_twice_changes_nothing(
    before: str, after: str, kind: str, body: str
) -> None:
    secret = {"openai_key": f"sk-{body}7", "github_token": f"ghp_{body}", "memos_token": f"memos_{body}9",
              "slack_token": f"xoxb-{body}"}[kind]  # fmt: skip
    redactor = Redactor()
    masked = redactor.text(f"{before} {secret} {after}")
    assert masked.count(body) <= before.count(body) + after.count(body)  # not the secret's own
    assert redactor.text(masked) == masked


def test_extra_patterns_mask_their_secret_group_and_a_bad_one_stops_start_up() -> None:
    assert Redactor([r"ACME-(?P<secret>\d{6})"]).text("id ACME-123456") == "id ACME-[REDACTED:custom]"
    with pytest.raises(ConfigError) as caught:
        parse_config('[redaction]\npatterns = ["ok", "(unclosed"]\n', "cfg.toml")
    assert str(caught.value) == (
        "cfg.toml: [redaction] patterns[1]: '(unclosed' is not a regular expression:"
        " missing ), unterminated subpattern at position 0"
    )


def database_text(database: Path) -> tuple[str, list[str]]:
    """Everything stored, as text (every row of every table, FTS and vector shadow tables and their blobs
    included), and every term in the full-text index (fts5vocab reads the index itself)."""
    conn = sqlite_driver.connect(str(database))
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [
            value.decode("latin-1") if isinstance(value, bytes) else str(value)
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for value in row
        ]
        conn.execute("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, 'memories_fts', 'row')")
        terms = [row[0] for row in conn.execute("SELECT term FROM temp.terms")]
    finally:
        conn.close()
    return "\n".join(cells), terms


async def test_with_redaction_on_no_secret_reaches_the_store_the_index_an_export_or_a_pack(
    tmp_path: Path,
) -> None:
    """Steps: memosd with `[redaction] enabled = true`; through MCP add (content, tags, metadata), add a
        batch, update, supersede; `memos import` a line with a secret in its content and its history; a cube
        configured `redact_secrets = false` keeps its text as written; a task handed off with a secret in its
    description and notes. Then no marker of a secret is in any
        table (memories, versions, FTS, audit, idempotency), in the FTS index's terms, in a search, in an export
        or in a context pack, and the masks are there instead."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none", extra="[redaction]\nenabled = true\n")
    daemon = start_daemon(config, tmp_path, port)
    try:
        token = daemon.add_agent("alice")
        async with mcp_client(daemon.url, token) as client:
            added = await call(
                client, "memory_add", content=f"deploy credentials: the OpenAI key is {SECRETS['openai_key']}",
                tags=["deploy", SECRETS["slack_token"]],
                metadata={"note": f"anthropic {SECRETS['anthropic_key']}", "nested": [SECRETS["memos_token"]]},
            )  # fmt: skip
            assert "[REDACTED:openai_key]" in added["content"]
            await call(
                client, "memory_add_batch",
                items=[
                    {"content": f"deploy credentials for GitHub: {SECRETS['github_token']}"},
                    {"content": f"deploy credentials on AWS: {SECRETS['aws_access_key']}"},
                    {"content": f"deploy credentials for the key:\n{SECRETS['private_key']}"},
                ],
            )  # fmt: skip
            await call(
                client, "memory_update", id=added["id"],
                content=f"deploy credentials, database {SECRETS['password']}", metadata={"h": SECRETS["bearer_token"]},
            )  # fmt: skip
            await call(
                client, "memory_supersede", id=added["id"],
                content=f"deploy credentials now use Google {SECRETS['google_api_key']}",
            )  # fmt: skip
            await call(client, "cube_create", name="open-notes")
            configured = await call(client, "cube_configure", cube="open-notes", redact_secrets=False)
            assert configured["settings"]["redact_secrets"] is False
            kept = await call(client, "memory_add", cube="open-notes", content="password=plainvisible1")
            assert kept["content"] == "password=plainvisible1"
            for marker in MARKERS[:10]:
                assert (await call(client, "memory_search", query=marker))["results"] == []
            line = {
                "content": f"deploy credentials imported, {SECRETS['import_password']}",
                "source_agent": "alice", "kind": "note",
                "history": [{
                    "version": 1, "content": f"deploy credentials were {SECRETS['import_history']}", "kind": "note",
                    "tags": [], "metadata": {}, "importance": 0.5, "occurred_at": None, "expires_at": None,
                    "updated_at": "2026-01-01T00:00:00Z", "replaced_at": "2026-01-02T00:00:00Z", "replaced_by": "alice",
                }],
                "version": 2,
            }  # fmt: skip
            memos_at(config, "import", "-", stdin=json.dumps(line) + "\n")
            task = await call(
                client,
                "task_handoff",
                to_agent="alice",
                title="rotate the deploy credentials",
                description=f"the old one was {SECRETS['task_description']}",
                notes=f"temporary {SECRETS['task_notes']}",
                cubes=["@alice"],
            )
            pack = await call(client, "context_get", task_id=task["id"])
        export = memos_at(config, "export").stdout
    finally:
        assert stop_daemon(daemon) == 0

    dump, terms = database_text(tmp_path / "data" / "memos.db")
    for marker in MARKERS:
        assert marker not in dump.lower(), marker
        assert not [term for term in terms if marker in term], marker
        assert marker not in export.lower(), marker
        assert marker not in json.dumps(pack).lower(), marker
    assert "plainvisible1" in dump and "plainvisible1" in export  # that cube does not redact
    for kind in ["openai_key", "github_token", "private_key", "password", "google_api_key", "slack_token"]:
        assert f"[REDACTED:{kind}]" in export, kind
    assert "[REDACTED:" in pack["markdown"]


async def test_logs_at_debug_level_carry_no_memory_content_and_no_token_material(tmp_path: Path) -> None:
    """Steps: memosd at `[log] level = "debug"`; an agent (token-authenticated) adds a memory with a
    distinctive word, searches for it and gets it; then the log has the request lines but neither the word,
    nor the token, nor the token's SHA-256 (what the agents table stores)."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none", extra='[log]\nlevel = "debug"\n')
    daemon = start_daemon(config, tmp_path, port)
    try:
        token = daemon.add_agent("alice")
        async with mcp_client(daemon.url, token) as client:
            await call(
                client, "memory_add", content="the zanzibarquux launch code", metadata={"k": "zanzimeta"}
            )
            found = await call(client, "memory_search", query="zanzibarquux")
            assert found["results"]
    finally:
        assert stop_daemon(daemon) == 0
    log = daemon.log()
    assert "memory_add" in log and "memory_search" in log
    for forbidden in ["zanzibarquux", "zanzimeta", token, token.removeprefix("memos_")[:16]]:
        assert forbidden not in log, forbidden
    assert hashlib.sha256(token.encode()).hexdigest()[:16] not in log


async def test_a_policy_files_cube_table_turns_redaction_on_for_the_cubes_it_names(tmp_path: Path) -> None:
    """Steps: redaction off in memos.toml; a policy file's `[[cube]]` table sets `redact_secrets = true` for
    `vault-*`; the same text added to `vault-keys` is masked and to `notes` is kept as written."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "vault.toml").write_text(
        '[[cube]]\nname = "vault-*"\nredact_secrets = true\n', encoding="utf-8"
    )
    async with open_services(make_config(tmp_path, "none")) as services:
        await services.identities.add("alice")
        alice = agent_named("alice")
        for cube in ("vault-keys", "notes"):
            await services.cubes.create(alice, cube)
        text = "the deploy password=hunter2hunter2"
        vault = await services.additions.add(alice, "vault-keys", NewMemory(content=text))
        notes = await services.additions.add(alice, "notes", NewMemory(content=text))
        assert (await services.settings.describe(alice, "notes")).settings.redact_secrets is False
    assert vault.content == "the deploy password=[REDACTED:password]"
    assert notes.content == text


def test_every_memos_token_is_masked_whatever_characters_it_drew() -> None:
    """Tokens are random: one of about 2,500 has no digit, and must be masked all the same."""
    redactor = Redactor()
    tokens = [f"memos_{secrets.token_urlsafe(32)}" for _ in range(20_000)]
    assert [t for t in tokens if redactor.text(t) != "[REDACTED:memos_token]"] == []
    assert redactor.text("memos_" + "Ab" * 20 + "cde") == "[REDACTED:memos_token]"  # letters only


def test_a_memos_token_holding_another_keys_shape_is_masked_whole() -> None:
    """About one random token in 400,000 holds "-sk-", "-ghp_" or the like followed by enough characters to
    look like another service's key: the whole token is masked, none of its head left in clear."""
    redactor = Redactor()
    for token in (
        "memos_Q7a-Zx-sk-abcdEFGH1234ijklMNOP5678qrstuvw",  # an OpenAI key's shape after a hyphen
        "memos_ab-ghp_" + "A" * 30 + "x1c",  # a GitHub token's
        "memos_" + "z" * 20 + "-AIza" + "B2" * 18,  # a Google API key's
    ):
        assert redactor.text(f"token {token} here") == "token [REDACTED:memos_token] here", token
