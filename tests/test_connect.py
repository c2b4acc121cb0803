"""`memos connect claude-desktop`: the agent made and the host's config entry merged, then used as the host
would use it."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import REPO, free_port, isolated_env, memos_at, start_daemon, stop_daemon, write_config
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio

THEIRS = {
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/x"]}
    },
}


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_connect_merges_an_entry_that_claude_desktop_can_launch(tmp_path: Path) -> None:
    """Steps: a Claude config with another server; connect; the other server and keys are kept, the file is
    private; the entry, launched as the host does, adds a memory to @claude-desktop through the daemon."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    host_file = tmp_path / "Claude" / "claude_desktop_config.json"
    host_file.parent.mkdir()
    host_file.write_text(json.dumps(THEIRS))
    done = memos_at(config, "connect", "claude-desktop", "--config-file", str(host_file))
    assert f"created agent claude-desktop and wrote its entry 'memos' to {host_file}" in done.stdout
    written = json.loads(host_file.read_text())
    assert written["globalShortcut"] == "Ctrl+Space"
    assert written["mcpServers"]["files"] == THEIRS["mcpServers"]["files"]
    entry: dict[str, Any] = written["mcpServers"]["memos"]
    assert entry["args"][-3:] == ["mcp", "--agent", "claude-desktop"]
    assert entry["env"]["MEMOS_TOKEN"].startswith("memos_")
    assert private(host_file)

    daemon = start_daemon(config, tmp_path, port)
    try:
        params = StdioServerParameters(
            command=entry["command"],
            args=entry["args"],
            env=isolated_env(tmp_path) | entry["env"],
            cwd=str(REPO),
        )
        async with Client(params, cache=None) as client:
            added = await call(client, "memory_add", content="The user likes short answers")
        assert added["cube"] == "@claude-desktop"
    finally:
        stop_daemon(daemon)


def test_connect_never_replaces_a_token_unasked_and_rotates_when_asked(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    host_file = tmp_path / "claude_desktop_config.json"
    memos_at(config, "connect", "claude-desktop", "--config-file", str(host_file))
    first = host_file.read_text()
    again = memos_at(config, "connect", "claude-desktop", "--config-file", str(host_file), check=False)
    assert again.returncode == 1
    assert "already has an mcpServers entry 'memos'; add --rotate" in again.stderr
    assert host_file.read_text() == first
    elsewhere = tmp_path / "other.json"
    exists = memos_at(config, "connect", "claude-desktop", "--config-file", str(elsewhere), check=False)
    assert exists.returncode == 1 and "exists and its token cannot be shown again" in exists.stderr
    assert not elsewhere.exists()
    rotated = memos_at(config, "connect", "claude-desktop", "--config-file", str(host_file), "--rotate")
    assert "issued a new token for agent claude-desktop" in rotated.stdout
    old, new = (
        json.loads(t)["mcpServers"]["memos"]["env"]["MEMOS_TOKEN"] for t in (first, host_file.read_text())
    )
    assert old != new


def test_connect_refuses_a_broken_config_file_before_creating_anything(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    host_file = tmp_path / "claude_desktop_config.json"
    host_file.write_text('{"mcpServers": {')
    broken = memos_at(config, "connect", "claude-desktop", "--config-file", str(host_file), check=False)
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"memos: {host_file} is not valid JSON")
    assert host_file.read_text() == '{"mcpServers": {'
    assert memos_at(config, "agent", "list").stdout.startswith("No agents yet")


def test_connect_prints_the_entry_or_keeps_the_token_in_a_private_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    printed = memos_at(config, "connect", "claude-desktop", "--print", "--agent", "desk")
    entry = json.loads(printed.stdout)["mcpServers"]["memos"]
    assert entry["args"][-3:] == ["mcp", "--agent", "desk"] and entry["env"]["MEMOS_TOKEN"].startswith(
        "memos_"
    )
    token_file = tmp_path / "desk.token"
    memos_at(
        config,
        "connect",
        "claude-desktop",
        "--print",
        "--agent",
        "desk",
        "--rotate",
        "--token-file",
        str(token_file),
    )
    host_file = tmp_path / "claude.json"
    memos_at(
        config, "connect", "claude-desktop", "--agent", "desk2", "--token-file", str(token_file),
        "--config-file", str(host_file),
    )  # fmt: skip
    entry = json.loads(host_file.read_text())["mcpServers"]["memos"]
    assert "env" not in entry and entry["args"][-2:] == ["--token-file", str(token_file)]
    assert token_file.read_text().startswith("memos_") and private(token_file)


def test_connect_writes_through_a_symlinked_config_and_keeps_the_link(tmp_path: Path) -> None:
    """People keep dotfiles in a repository and link them into place: the link must stay a link."""
    config = write_config(tmp_path, port=free_port(), model="none")
    real = tmp_path / "dotfiles" / "claude.json"
    real.parent.mkdir()
    real.write_text(json.dumps(THEIRS))
    link = tmp_path / "claude_desktop_config.json"
    link.symlink_to(real)
    memos_at(config, "connect", "claude-desktop", "--config-file", str(link))
    assert link.is_symlink() and link.resolve() == real
    assert "memos" in json.loads(real.read_text())["mcpServers"]
