"""The commands as a user runs them: one-line errors with an exit code, tokens printed once and last."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from daemon.config import ServerConfig
from mcp_server.http import bind
from tests.conftest import (
    REPO,
    free_port,
    isolated_env,
    memos_command,
    memosd_command,
    start_daemon,
    stop_daemon,
    write_config,
)


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=isolated_env(home), cwd=REPO, timeout=60
    )


def test_agent_add_prints_the_token_as_the_last_line_and_refuses_a_duplicate(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    first = run(memos_command("--config", str(config), "agent", "add", "scribe"), tmp_path)
    assert first.returncode == 0
    assert first.stdout.strip().splitlines()[-1].startswith("memos_")
    again = run(memos_command("--config", str(config), "agent", "add", "scribe"), tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "memos: agent 'scribe' already exists; `memos agent rotate-token scribe` issues a new token"
    )
    listed = run(memos_command("--config", str(config), "agent", "list"), tmp_path)
    assert listed.stdout.startswith("scribe\tactive")


def test_a_bad_agent_name_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    result = run(memos_command("--config", str(config), "agent", "add", "../evil"), tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "agent name '../evil' is not valid" in result.stderr


def test_memosd_refuses_a_bad_config_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "memos.toml"
    config.write_text('[server]\nport = "seven"\n')
    result = run(memosd_command("--config", str(config)), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"memosd: {config}: [server] port: Expected `int`, got `str`"


def test_memosd_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            memosd_command("--config", str(write_config(tmp_path, port=port, model="none"))), tmp_path
        )
    assert result.returncode == 1
    assert f"memosd: port {port} on 127.0.0.1 is already in use" in result.stderr


def test_the_listening_socket_gets_tcp_nodelay_connections() -> None:
    """asyncio sets TCP_NODELAY only on sockets that declare IPPROTO_TCP; without it responses stall ~40 ms."""
    sock = bind(ServerConfig(port=free_port()))
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_the_bridge_without_a_token_explains_where_to_put_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    result = run(memos_command("--config", str(config), "mcp", "--agent", "desk"), tmp_path)
    assert result.returncode == 1
    assert "set MEMOS_TOKEN" in result.stderr


def test_the_admin_commands_act_as_an_agent_with_its_permissions(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")

    def memos(*args: str) -> subprocess.CompletedProcess[str]:
        return run(memos_command("--config", str(config), *args), tmp_path)

    for name in ("ann", "ben"):
        assert memos("agent", "add", name).returncode == 0
    assert (
        memos("cube", "create", "plans", "--agent", "ann").stdout.strip()
        == "cube plans created, owned by ann"
    )
    added = memos("add", "The offsite is in Lisbon", "--agent", "ann", "--cube", "plans", "--tag", "travel")
    assert added.stdout.strip().endswith("added to plans")
    found = memos("search", "Lisbon offsite", "--agent", "ann", "--lexical", "--json")
    assert [hit["cube"] for hit in json.loads(found.stdout)["results"]] == ["plans"]
    refused = memos("add", "intrusion", "--agent", "ben", "--cube", "plans")
    assert refused.returncode == 1 and "does not exist or you have no access" in refused.stderr
    listed = memos("cube", "list", "--agent", "ben", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["@ben"]
    described = memos("cube", "describe", "plans", "--agent", "ann")
    assert "allow admin  ann  (owner)" in described.stdout


@pytest.mark.parametrize(
    ("embedder", "why"),
    [
        ('model = "none"', 'model = "none"'),
        # The default model, not downloaded in this fresh home and no network to fetch it with.
        ('model = "sentence-transformers/all-MiniLM-L6-v2"', "not available on this machine"),
        ('model = "no-such-org/no-such-model"', "not available on this machine"),
        ('model_path = "no/such/dir"', "not available on this machine"),
    ],
)
def test_hybrid_search_without_a_model_answers_lexically_and_says_why(
    tmp_path: Path, embedder: str, why: str
) -> None:
    config = tmp_path / "memos.toml"
    config.write_text(
        f'[server]\nport = {free_port()}\n[storage]\npath = "data/memos.db"\n[embedder]\n{embedder}\n'
    )
    assert run(memos_command("--config", str(config), "agent", "add", "ann"), tmp_path).returncode == 0
    added = run(memos_command("--config", str(config), "add", "Lisbon offsite", "--agent", "ann"), tmp_path)
    assert added.returncode == 0
    found = subprocess.run(
        memos_command("--config", str(config), "search", "offsite", "--agent", "ann"),
        capture_output=True, text=True, env=isolated_env(tmp_path), cwd=REPO, timeout=10,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert "Lisbon offsite" in found.stdout
    assert "1 results, lexical search over @ann" in found.stdout
    assert why in found.stdout
    assert found.stderr == ""


def test_lexical_search_says_lexical_was_asked_not_that_the_model_is_off(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    run(memos_command("--config", str(config), "agent", "add", "ann"), tmp_path)
    found = run(
        memos_command("--config", str(config), "search", "anything", "--agent", "ann", "--lexical"), tmp_path
    )
    assert found.returncode == 0
    assert "lexical search (--lexical) over @ann" in found.stdout
    assert "none" not in found.stdout
    as_json = run(
        memos_command("--config", str(config), "search", "x", "--agent", "ann", "--lexical", "--json"),
        tmp_path,
    )
    assert json.loads(as_json.stdout)["note"] is None


def test_status_of_a_path_no_daemon_serves_creates_nothing_and_claims_no_daemon(tmp_path: Path) -> None:
    """Steps: status of a fresh path (no file made); a daemon on another database listens on the same
    port (status still says not running); a daemon on this database (running); it is killed (not running,
    its last report shown as such)."""
    port = free_port()
    mine = write_config(tmp_path, port=port, model="none")
    database = tmp_path / "data" / "memos.db"
    fresh = run(memos_command("--config", str(mine), "status"), tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "does not exist yet" in fresh.stdout and "not running" in fresh.stdout
    assert not database.exists()

    other_home = tmp_path / "other"
    other_home.mkdir()
    other = start_daemon(write_config(other_home, port=port, model="none"), other_home, port)
    try:
        assert run(memos_command("--config", str(mine), "agent", "add", "ann"), tmp_path).returncode == 0
        beside = run(memos_command("--config", str(mine), "status", "--json"), tmp_path)
        reported = json.loads(beside.stdout)
        assert reported["running"] is False and reported["daemon"].startswith("not running")
        assert "something else answers" in reported["daemon"]
    finally:
        stop_daemon(other)

    daemon = start_daemon(mine, tmp_path, port)
    try:
        running = run(memos_command("--config", str(mine), "status"), tmp_path)
        assert (
            f"daemon      running at http://127.0.0.1:{port}/mcp (pid {daemon.process.pid})" in running.stdout
        )
    finally:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=30)
    gone = run(memos_command("--config", str(mine), "status"), tmp_path)
    assert "daemon      not running" in gone.stdout
    assert f"last run: pid {daemon.process.pid}" in gone.stdout


def test_output_closed_early_ends_quietly(tmp_path: Path) -> None:
    """As `memos agent list | head -0`: the reader is gone before the first line is written."""
    config = write_config(tmp_path, port=free_port(), model="none")
    for name in ("ann", "ben"):
        run(memos_command("--config", str(config), "agent", "add", name), tmp_path)
    process = subprocess.Popen(
        memos_command("--config", str(config), "agent", "list"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=isolated_env(tmp_path), cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    with process.stderr:
        errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert errors == ""
