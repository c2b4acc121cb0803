"""What other packages may use from the core is listed, and the list is true."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import daemon

REPO = Path(__file__).resolve().parents[1]


def test_everything_listed_is_exported_and_everything_exported_is_listed() -> None:
    exported = {
        name
        for name, value in vars(daemon).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(daemon.__all__) == sorted(exported)


def test_imports_point_one_way() -> None:
    """daemon never imports mcp_server or memos_cli; mcp_server never imports memos_cli."""
    forbidden = {"daemon": ("mcp_server", "memos_cli"), "mcp_server": ("memos_cli",)}
    for package, banned in forbidden.items():
        for path in (REPO / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert not name.startswith(banned), f"{path.name} imports {name}"
