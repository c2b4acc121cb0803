"""`memos cube …`, `memos add`, `memos search`: the owner of the machine acting as one of its agents.

They call the same service API as the MCP tools, with the same policy checks, on the database directly. An
added memory gets its vector from the running daemon's backfill within seconds; `memos search` loads the
embedding model itself (a second or two) unless `--lexical`, and only if it is on disk: it never downloads it
and answers lexically, saying why, when the model is off or missing.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

import anyio
import msgspec

from daemon import (
    Config,
    CubeSettings,
    InvalidInput,
    NewMemory,
    SearchQuery,
    agent_named,
    open_store_services,
)


def _print_json(value: Any) -> None:
    print(msgspec.json.encode(value).decode())


def _table(rows: list[list[str]], headers: list[str]) -> None:
    width = shutil.get_terminal_size((120, 20)).columns
    sizes = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    last = max(20, width - sum(sizes[:-1]) - 2 * (len(headers) - 1))
    sizes[-1] = min(sizes[-1], last)
    print("  ".join(h.ljust(s) for h, s in zip(headers, sizes, strict=True)))
    print("  ".join("-" * s for s in sizes))
    for row in rows:
        cells = [*row[:-1], textwrap.shorten(row[-1], width=sizes[-1], placeholder="…")]
        print("  ".join(c.ljust(s) for c, s in zip(cells, sizes, strict=True)))


def cmd_cube_list(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config) as services:
            return await services.cubes.list(agent_named(args.agent))

    cubes = anyio.run(run)
    if args.json:
        _print_json(cubes)
    else:
        _table(
            [[c.name, c.owner, str(c.memory_count), c.description] for c in cubes],
            ["cube", "owner", "memories", "description"],
        )
    return 0


def cmd_cube_create(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config) as services:
            return await services.cubes.create(agent_named(args.agent), args.name, args.description)

    cube = anyio.run(run)
    _print_json(cube) if args.json else print(f"cube {cube.name} created, owned by {cube.owner}")
    return 0


def cmd_cube_describe(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config) as services:
            agent = agent_named(args.agent)
            return await services.cubes.describe(agent, args.name), await services.cubes.members(
                agent, args.name
            )

    cube, members = anyio.run(run)
    if args.json:
        _print_json({"cube": cube, "members": members.members})
        return 0
    print(f"{cube.name}: {cube.description or '(no description)'}")
    print(f"owner {cube.owner}, {cube.memory_count} memories, created {cube.created_at}")
    for m in members.members:
        print(f"  {m.effect:5} {m.permission:6} {m.grantee}  ({m.source})")
    return 0


def cmd_cube_configure(config: Config, args: argparse.Namespace) -> int:
    ttl: dict[str, float] = {}
    for item in args.ttl or []:
        kind, _, days = item.partition("=")
        try:
            ttl[kind] = float(days)
        except ValueError:
            raise InvalidInput(f"--ttl {item!r}: write KIND=DAYS, e.g. --ttl message=90") from None
    changes = CubeSettings(
        dedupe_exact=args.dedupe, similar_threshold=args.similar_threshold, max_age_days=args.max_age_days,
        max_count=args.max_count, ttl_days=ttl or None, redact_secrets=args.redact_secrets,
    )  # fmt: skip

    async def run() -> Any:
        async with open_store_services(config) as services:
            return await services.settings.configure(agent_named(args.agent), args.name, changes)

    configured = anyio.run(run)
    _print_json(configured) if args.json else print(
        f"{configured.cube}: {msgspec.json.encode(configured.settings).decode()}"
    )
    return 0


def cmd_cube_retention(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config) as services:
            if args.dry_run:
                return await services.retention.plan(args.name)
            return await services.retention.apply(args.name)

    planned = anyio.run(run)
    if args.json:
        _print_json(planned)
        return 0
    verb = "would archive" if args.dry_run else "archived"
    for item in planned:
        print(f"{item.id}  {item.created_at}  {item.kind:10}  {item.reason}: {item.content}")
    print(f"{verb} {len(planned)} memories in {args.name}")
    return 0


def cmd_add(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config) as services:
            item = NewMemory(content=args.content, kind=args.kind, tags=args.tag or [])
            return await services.additions.add(agent_named(args.agent), args.cube, item)

    memory = anyio.run(run)
    _print_json(memory) if args.json else print(f"{memory.id} added to {memory.cube}")
    return 0


def cmd_search(config: Config, args: argparse.Namespace) -> int:
    async def run() -> Any:
        async with open_store_services(config, with_model=not args.lexical) as services:
            query = SearchQuery(
                query=args.query, cubes=args.cube or None, k=args.k, mode="lexical" if args.lexical else None
            )
            return await services.search.search(agent_named(args.agent), query)

    quiet_fastembed()

    found = anyio.run(run)
    if args.json:
        _print_json(found)
        return 0
    rows = [[f"{hit.score:.4f}", hit.cube, hit.id, hit.content] for hit in found.results]
    _table(rows, ["score", "cube", "id", "content"])
    asked = " (--lexical)" if args.lexical else ""
    print(f"{len(rows)} results, {found.mode} search{asked} over {', '.join(found.cubes) or 'no cubes'}")
    if found.note:
        print(found.note)
    return 0


def quiet_fastembed() -> None:
    """fastembed logs its failed look-ups to stderr through loguru; a command says the outcome itself."""
    try:
        from loguru import logger
    except ImportError:
        return
    logger.remove()


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def acting(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--agent", required=True, help="act as this agent (its permissions apply)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    cube = commands.add_parser("cube", help="list, create and describe cubes")
    actions = cube.add_subparsers(dest="cube_command", required=True, metavar="ACTION")
    acting(actions.add_parser("list", help="the cubes the agent can read")).set_defaults(
        handler=cmd_cube_list
    )
    create = acting(actions.add_parser("create", help="a cube owned by the agent"))
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.set_defaults(handler=cmd_cube_create)
    describe = acting(actions.add_parser("describe", help="a cube, its counts and its members"))
    describe.add_argument("name")
    describe.set_defaults(handler=cmd_cube_describe)

    configure = acting(actions.add_parser("configure", help="duplicate handling and retention (admin)"))
    configure.add_argument("name")
    configure.add_argument("--dedupe", action=argparse.BooleanOptionalAction, default=None)
    configure.add_argument("--similar-threshold", type=float)
    configure.add_argument("--max-age-days", type=float)
    configure.add_argument("--max-count", type=int)
    configure.add_argument("--ttl", action="append", metavar="KIND=DAYS", help="per-kind time to live")
    configure.add_argument(
        "--redact-secrets", action=argparse.BooleanOptionalAction, default=None,
        help="mask API keys, tokens, private keys and passwords before memories are stored",
    )  # fmt: skip
    configure.set_defaults(handler=cmd_cube_configure)
    retention = actions.add_parser("retention", help="archive what the cube's retention rules say (owner)")
    retention.add_argument("name")
    retention.add_argument("--dry-run", action="store_true", help="show exactly what would be archived")
    retention.add_argument("--json", action="store_true", help="machine-readable output")
    retention.set_defaults(handler=cmd_cube_retention)

    add = acting(commands.add_parser("add", help="add one memory"))
    add.add_argument("content")
    add.add_argument("--cube", help="default: the agent's private cube")
    add.add_argument(
        "--kind", default="note", choices=["fact", "preference", "event", "procedure", "note", "message"]
    )
    add.add_argument("--tag", action="append", help="a tag (repeatable)")
    add.set_defaults(handler=cmd_add)

    search = acting(commands.add_parser("search", help="hybrid search, as a table (or --json)"))
    search.add_argument("query")
    search.add_argument("--cube", action="append", help="only this cube (repeatable)")
    search.add_argument("-k", type=int, default=10, help="results (default 10)")
    search.add_argument("--lexical", action="store_true", help="words only: do not load the model")
    search.set_defaults(handler=cmd_search)
