"""The README stays true: every tool, resource, command and config key is documented, and CI runs the
README's own test command."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from daemon import Config
from memos_cli.memos import build_parser
from tests.test_mcp_http import TOOLS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_tool_is_documented() -> None:
    documented = set(re.findall(r"^\| `(\w+)\(", README, flags=re.MULTILINE))
    assert documented == TOOLS


def test_every_resource_is_documented() -> None:
    for uri in (
        "memos://cubes",
        "memos://cubes/{cube}",
        "memos://memories/{id}",
        "memos://memories/{id}/neighbourhood",
        "memos://audit",
        "memos://tasks/{id}/context",
        "memos://agents/{agent}/context",
        "memos://agents/{agent}/tasks",
        "memos://agents/{agent}/working-memory",
    ):
        assert f"`{uri}`" in README


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        actions = [a for a in sub._actions if isinstance(a.choices, dict)]
        if actions:
            for action_name in actions[0].choices:
                assert f"`memos {name} {action_name}" in README, f"memos {name} {action_name}"
        else:
            assert f"`memos {name}" in README, name
    assert "`memosd [--config PATH]`" in README


def test_every_config_key_is_documented() -> None:
    for section in msgspec.structs.fields(Config):
        if section.name == "source":
            continue
        for key in msgspec.structs.fields(section.type):
            if isinstance(key.default_factory, type) and issubclass(key.default_factory, msgspec.Struct):
                for inner in msgspec.structs.fields(key.default_factory):
                    name = f"[{section.name}.{key.name}] {inner.name}"
                    assert f"`{name}`" in README, name
            else:
                assert f"`[{section.name}] {key.name}`" in README, f"[{section.name}] {key.name}"


def test_ci_runs_the_readme_test_command() -> None:
    """The user install has no test tools; the test command installs them itself, so it works right after
    the install command on a fresh clone, and CI runs exactly it."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    install, test = blocks[0].strip(), blocks[1].strip()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines()
    assert "pip install" in install and "memosd" in install and "[test]" not in install
    assert test.startswith('.venv/bin/pip install -e ".[test]" && ') and test.endswith("-m pytest -n auto")
