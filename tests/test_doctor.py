"""`memos doctor`: one line per check, and an exit code that says whether anything failed."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import (
    REPO,
    free_port,
    isolated_env,
    memos_command,
    start_daemon,
    stop_daemon,
    write_config,
)


def doctor(config: Path, *args: str, token: str | None = None) -> tuple[int, dict[str, str]]:
    """Run it; returns the exit code and each check's line (outcome and detail) by check name."""
    env = isolated_env(config.parent) | ({"MEMOS_TOKEN": token} if token else {})
    result = subprocess.run(
        memos_command("--config", str(config), "doctor", *args),
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.stderr == ""
    lines = {}
    for line in result.stdout.splitlines():
        outcome, check, detail = line.split(maxsplit=2)
        lines[check] = f"{outcome} {detail}"
    return result.returncode, lines


def settled_doctor(config: Path, *args: str, token: str | None = None) -> tuple[int, dict[str, str]]:
    """`doctor` once the running daemon has reported on its model and is no longer loading it (within 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        code, checks = doctor(config, *args, token=token)
        if not checks.get("embedder", "").startswith("warn ") or time.monotonic() > deadline:
            return code, checks
        time.sleep(0.5)


def test_a_working_set_up_passes_every_check(tmp_path: Path, model_dir: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, model=str(model_dir))
    daemon = start_daemon(config, tmp_path, port)
    try:
        token = daemon.add_agent("desk")
        code, checks = settled_doctor(config, "--agent", "desk", token=token)
    finally:
        stop_daemon(daemon)
    assert code == 0, checks
    assert list(checks) == ["config", "model", "database", "daemon", "embedder", "token"]
    assert checks["model"].startswith("ok ") and checks["model"].endswith(f"{model_dir} (384 dimensions)")
    assert checks["daemon"] == f"ok running at http://127.0.0.1:{port}/mcp (pid {daemon.process.pid})"
    assert checks["embedder"] == (
        "ok memosd has sentence-transformers/all-MiniLM-L6-v2 (int8) loaded: search is hybrid"
    )
    assert checks["token"] == "ok valid for agent desk"


def test_doctor_asks_the_running_daemon_whether_its_model_failed_or_is_off(tmp_path: Path) -> None:
    """Steps: memosd with a model path that holds no model: doctor fails both the model check (its own load)
    and the embedder check, with the daemon's own reason; memosd restarted with model = "none": the
    embedder check says search is lexical by choice, and passes."""
    port = free_port()
    config = write_config(tmp_path, port=port)
    config.write_text(config.read_text().replace("[embedder]\n", '[embedder]\nmodel_path = "nowhere"\n'))
    daemon = start_daemon(config, tmp_path, port)
    try:
        code, checks = settled_doctor(config)
    finally:
        stop_daemon(daemon)
    assert code == 1
    assert checks["daemon"].startswith("ok running at")
    assert checks["embedder"].startswith(
        "FAIL memosd could not load sentence-transformers/all-MiniLM-L6-v2 ("
    )
    assert checks["embedder"].endswith(
        "): search is lexical; fix [embedder] model or model_path and restart memosd"
    )
    assert "nowhere" in checks["embedder"]  # the daemon's own reason names the path it tried

    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    try:
        code, checks = settled_doctor(config)
    finally:
        stop_daemon(daemon)
    assert code == 0, checks
    assert (
        checks["embedder"] == 'ok memosd runs without a model ([embedder] model = "none"): search is lexical'
    )


def test_each_problem_is_a_failed_check_and_exit_1(tmp_path: Path) -> None:
    """Steps: a model path with no model, a port another program holds, a wrong token; then a config file
    that does not parse."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(tmp_path, port=taken.getsockname()[1])
        config.write_text(config.read_text().replace("[embedder]\n", '[embedder]\nmodel_path = "nowhere"\n'))
        subprocess.run(
            memos_command("--config", str(config), "agent", "add", "desk"),
            env=isolated_env(tmp_path), cwd=REPO, timeout=60, check=True, capture_output=True,
        )  # fmt: skip
        code, checks = doctor(config, "--agent", "desk", token="memos_not-the-token")
    assert code == 1
    assert checks["config"] == f"ok {config} parses"
    assert checks["model"].startswith(
        f"FAIL sentence-transformers/all-MiniLM-L6-v2 from {tmp_path}/nowhere cannot"
    )
    assert checks["database"].startswith("ok ")
    assert checks["daemon"].startswith("FAIL not running, and port")
    assert checks["token"].startswith("FAIL not valid (unknown token)")

    config.write_text("[server]\nport = 'x'\n")
    code, checks = doctor(config)
    assert code == 1 and checks == {"config": f"FAIL {config}: [server] port: Expected `int`, got `str`"}


def test_doctor_never_creates_the_database_nor_downloads_the_model(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port())  # the default model, never downloaded in this home
    code, checks = doctor(config)
    assert code == 0, checks
    assert checks["model"].startswith("warn sentence-transformers/all-MiniLM-L6-v2 is not downloaded yet")
    assert checks["database"].endswith("does not exist yet (memosd creates it on its first start)")
    assert checks["daemon"].startswith("ok not running; port")
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache" / "memos").exists()
