"""What a model reads about the tools in every conversation: descriptions without their source indentation."""

from __future__ import annotations

import pytest

from daemon import Services
from mcp_server.tools import build_tools

pytestmark = pytest.mark.anyio


async def test_tool_descriptions_carry_no_docstring_indentation(lexical_services: Services) -> None:
    for tool in build_tools(lexical_services):
        lines = (tool.description or "").splitlines()
        assert lines and lines[0].strip(), tool.name
        assert all(line == line.lstrip() for line in lines), f"{tool.name}: {tool.description!r}"
