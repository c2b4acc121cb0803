"""What a user installs: a distribution of our own name, a licence, versions, and systemd units that start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, isolated_env, memos_command, memosd_command

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=isolated_env(home), cwd=REPO, timeout=60
    )


def test_the_distribution_is_ours_and_keeps_the_commands() -> None:
    """`memos` on PyPI is an unrelated project; `memosd` was free (checked 2026-12-01)."""
    assert PROJECT["name"] == "memosd"
    assert set(PROJECT["scripts"]) == {
        "memos",
        "memosd",
    }
    assert not {"pytest", "ruff", "mypy"} & {
        dep.split(">")[0].split("=")[0] for dep in PROJECT["dependencies"]
    }


def test_the_licence_is_the_mit_licence_pyproject_names() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == {"text": "MIT"}
    assert text.startswith("MIT License") and "Copyright (c) 2026 the memos authors" in text


@pytest.mark.parametrize("command", [memos_command, memosd_command])
def test_both_commands_print_their_version(tmp_path: Path, command: object) -> None:
    result = run(command("--version"), tmp_path)  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    name = "memos" if command is memos_command else "memosd"
    assert result.stdout.strip() == f"{name} {PROJECT['version']}"
