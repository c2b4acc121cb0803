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
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert not name.startswith(banned), f"{path.name} imports {name}"


EDGE = ("mcp_server", "memos_cli")


def _edge_files() -> list[Path]:
    return [path for package in EDGE for path in sorted((REPO / package).rglob("*.py"))]


def test_the_edge_imports_only_what_daemon_exports() -> None:
    """mcp_server/ and memos_cli/ (subpackages included) import the core only through `daemon` itself, and
    only names daemon/__init__.py lists: a submodule is the core's own business."""
    offenders = []
    for path in _edge_files():
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                offenders += [
                    f"{where}:{node.lineno} import {a.name}"
                    for a in node.names
                    if a.name.startswith("daemon.")
                ]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("daemon."):
                    offenders.append(f"{where}:{node.lineno} from {node.module}")
                elif node.module == "daemon":
                    offenders += [
                        f"{where}:{node.lineno} daemon.{a.name} is not in daemon.__all__"
                        for a in node.names
                        if a.name not in daemon.__all__
                    ]
    assert offenders == []


# `services.store` and what only a store connection has: with no store in reach, the edge runs no SQL.
STORE_ONLY = {"store", "fetch_all", "fetch_one", "execute", "execute_many", "executemany"}


def test_the_edge_never_touches_the_store() -> None:
    """The edge calls the service API: it never reaches `services.store`, runs SQL or reads rows itself."""
    offenders = []
    for path in _edge_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in STORE_ONLY:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
    assert offenders == []
