"""The cube tools: list, create, share, unshare, members, configure."""

from typing import Annotated

import msgspec
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from daemon import ConfiguredCube, Cube, CubeMembers, CubeSettings, InvalidInput, Services
from mcp_server.arguments import KeyArg, Permission
from mcp_server.auth import current_agent
from mcp_server.wire import ADDITIVE, ADDITIVE_IDEMPOTENT, DESTRUCTIVE_IDEMPOTENT, READ_ONLY, make_tool


class CubeList(msgspec.Struct, kw_only=True):
    cubes: list[Cube]
    home_cube: str


def build_cube_tools(services: Services) -> list[Tool]:

    async def cube_list() -> CubeList:
        """List the memory cubes you can read, with their owners and memory counts. Use it to learn which
        cubes exist before writing to or searching a shared one."""
        agent = current_agent()
        return CubeList(cubes=await services.cubes.list(agent), home_cube=agent.home_cube)

    async def cube_create(
        name: Annotated[str, Field(description="1-64 letters, digits, '.', '_' or '-', e.g. team-research.")],
        description: Annotated[str, Field(description="What belongs in this cube.")] = "",
        idempotency_key: KeyArg = None,
    ) -> Cube:
        """Create a new memory cube that you own, for memories on one topic or to share with others later."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "cube_create", [name, description], Cube,
            lambda rec: services.cubes.create(agent, name, description, recorder=rec),
        )  # fmt: skip

    async def cube_share(
        cube: Annotated[str, Field(description="The cube to share (you need share permission on it).")],
        grantee: Annotated[
            str, Field(description="An agent name, 'group:NAME' for a group, or '*' for every agent.")
        ],
        permission: Annotated[
            Permission, Field(description="read < write < share < admin; each includes the ones before it.")
        ],
        idempotency_key: KeyArg = None,
    ) -> CubeMembers:
        """Give another agent or group access to a cube, at once. Returns the cube's members after the change."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "cube_share", [cube, grantee, permission], CubeMembers,
            lambda rec: services.cubes.share(agent, cube, grantee, permission, recorder=rec),
        )  # fmt: skip

    async def cube_unshare(
        cube: Annotated[str, Field(description="The cube.")],
        grantee: Annotated[str, Field(description="The agent, 'group:NAME' or '*' as it was shared with.")],
        permission: Annotated[
            Permission | None, Field(description="Remove only this grant; omit to remove all of theirs.")
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> CubeMembers:
        """Take back access granted with cube_share (policy-file rules are not changed by this)."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "cube_unshare", [cube, grantee, permission], CubeMembers,
            lambda rec: services.cubes.unshare(agent, cube, grantee, permission, recorder=rec),
        )  # fmt: skip

    async def cube_members(cube: Annotated[str, Field(description="The cube.")]) -> CubeMembers:
        """Who may do what on a cube, and why: its owner, policy-file rules and cube_share grants."""
        return await services.cubes.members(current_agent(), cube)

    async def cube_configure(
        cube: Annotated[str, Field(description="The cube (you need admin on it).")],
        dedupe_exact: Annotated[
            bool | None,
            Field(description="Do not store an exact duplicate (same text, case and spacing aside)."),
        ] = None,
        report_similar: Annotated[
            bool | None,
            Field(description="Look for similar memories on each add (one vector search per add)."),
        ] = None,
        similar_threshold: Annotated[
            float | None, Field(description="Report existing memories at least this similar (0-1) on add.")
        ] = None,
        max_age_days: Annotated[float | None, Field(description="Archive memories older than this.")] = None,
        max_count: Annotated[int | None, Field(description="Archive all but the newest this many.")] = None,
        ttl_days: Annotated[
            dict[str, float] | None,
            Field(description="Archive memories of a kind after days, e.g. {'message': 90}."),
        ] = None,
        redact_secrets: Annotated[
            bool | None,
            Field(
                description="Mask API keys, tokens, private keys and passwords before memories are stored."
            ),
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> ConfiguredCube:
        """Set a cube's duplicate handling, retention (archived memories stay restorable) and secret
        redaction. Only the settings you give change; the result shows what now applies."""
        agent = current_agent()
        try:
            changes = msgspec.convert(
                {
                    "dedupe_exact": dedupe_exact,
                    "report_similar": report_similar, "similar_threshold": similar_threshold,
                    "max_age_days": max_age_days, "max_count": max_count, "ttl_days": ttl_days,
                    "redact_secrets": redact_secrets,
                },
                CubeSettings,
            )  # fmt: skip
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc).replace("$.", "")) from None
        return await services.idempotent(
            agent, idempotency_key, "cube_configure", [cube, changes], ConfiguredCube,
            lambda rec: services.settings.configure(agent, cube, changes, recorder=rec),
        )  # fmt: skip

    return [
        make_tool(cube_list, CubeList, READ_ONLY),
        make_tool(cube_create, Cube, ADDITIVE),
        make_tool(cube_share, CubeMembers, ADDITIVE_IDEMPOTENT),
        make_tool(cube_unshare, CubeMembers, DESTRUCTIVE_IDEMPOTENT),
        make_tool(cube_members, CubeMembers, READ_ONLY),
        make_tool(cube_configure, ConfiguredCube, ADDITIVE_IDEMPOTENT),
    ]
