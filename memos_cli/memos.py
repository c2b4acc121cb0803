"""`memos`: the command-line client and admin tool.

Admin commands work on the database file directly (safe while memosd runs: WAL, one short transaction
each), so they work whether or not the daemon is up. `memos mcp` is the stdio bridge for hosts that launch a
command, such as Claude Desktop.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from daemon import Config, MemosError, Services, load_config, open_store_services
from memos_cli.data_commands import add_parsers as add_data_parsers
from memos_cli.errors import exit_code, one_line_errors
from memos_cli.memory_commands import add_parsers as add_memory_parsers
from memos_cli.service_commands import add_parsers as add_service_parsers
from memos_cli.status import read_status


def _run(config: Config, action: Callable[[Services], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with open_store_services(config) as services:
            return await action(services)

    return anyio.run(main)


def cmd_agent_add(config: Config, args: argparse.Namespace) -> int:
    info, token = _run(config, lambda s: s.identities.add(args.name))
    print(f"Created agent {info.name} with private cube @{info.name}.")
    print("Its token is shown only now; give it to the agent's MCP client (README: Connecting agents):")
    print(token)
    return 0


def cmd_agent_list(config: Config, args: argparse.Namespace) -> int:
    agents = _run(config, lambda s: s.identities.list())
    if not agents:
        print("No agents yet: memos agent add NAME")
    for agent in agents:
        state = "disabled" if agent.disabled else "active"
        print(f"{agent.name}\t{state}\tcreated {agent.created_at}\tlast seen {agent.last_seen_at or 'never'}")
    return 0


def cmd_agent_rotate(config: Config, args: argparse.Namespace) -> int:
    token = _run(config, lambda s: s.identities.rotate_token(args.name))
    print(f"New token for {args.name}; the old one no longer works:")
    print(token)
    return 0


def cmd_agent_disable(config: Config, args: argparse.Namespace) -> int:
    _run(config, lambda s: s.identities.set_disabled(args.name, not args.enable))
    print(f"agent {args.name} {'enabled' if args.enable else 'disabled'}")
    return 0


def cmd_group_add(config: Config, args: argparse.Namespace) -> int:
    _run(config, lambda s: s.groups.add(args.name))
    print(f"group {args.name} created; policy rules and cube_share can name it as group:{args.name}")
    return 0


def cmd_group_add_member(config: Config, args: argparse.Namespace) -> int:
    _run(config, lambda s: s.groups.add_member(args.group, args.agent))
    print(f"{args.agent} is in group {args.group}")
    return 0


def cmd_group_remove_member(config: Config, args: argparse.Namespace) -> int:
    _run(config, lambda s: s.groups.remove_member(args.group, args.agent))
    print(f"{args.agent} is no longer in group {args.group}")
    return 0


def cmd_group_list(config: Config, args: argparse.Namespace) -> int:
    groups = _run(config, lambda s: s.groups.list())
    if not groups:
        print("No groups yet: memos group add NAME")
    for name, members in groups.items():
        print(f"{name}\t{', '.join(members) or '(no members)'}")
    return 0


def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    entries = _run(
        config,
        lambda s: s.audit.entries(
            cubes=[args.cube] if args.cube else None, agent=args.agent, limit=args.limit
        ),
    )
    if args.json:
        for entry in entries:
            print(msgspec.json.encode(entry).decode())
        return 0
    for e in entries:
        target = f" {e.target}" if e.target else ""
        detail = f" ({e.detail})" if e.detail else ""
        print(f"{e.at}  {e.outcome:6}  {e.agent:16}  {e.action:15} {e.cube or '-'}{target}{detail}")
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    status = _run(config, lambda s: read_status(s))
    if args.json:
        print(msgspec.json.encode(status).decode())
        return 0
    print(f"config      {config.source}")
    print(f"database    {config.database_path} (schema {status.schema_version})")
    print(f"daemon      {status.daemon}")
    reported = status.daemon_status
    if reported is not None:
        print(
            f"            pid {reported.pid}, memos {reported.version}, {reported.state} since"
            f" {reported.started_at}, embedder {reported.embedder or 'n/a'}"
        )
        for name, m in reported.queue.items():
            print(
                f"queue       {name:12} {m['queued']:.0f} queued, {m['running']:.0f} running, {m['done']:.0f} done,"
                f" {m['failed']:.0f} failed, {m['cancelled']:.0f} cancelled; mean wait {m['mean_wait_ms']} ms,"
                f" run {m['mean_run_ms']} ms"
            )
        for error in reported.last_errors[-5:]:
            print(f"            error: {error}")
    print(f"counts      {status.agents} agents, {status.cubes} cubes, {status.memories} memories")
    policy = status.policy
    if policy is None:
        print("policy      not loaded yet (memosd loads it at start)")
    else:
        print(f"policy      {policy.rules} rules from {len(policy.files)} files in {policy.directory}")
        for rejected in policy.rejected:
            print(
                f"            REJECTED {rejected.file}: it grants nothing (none of its allow rules are in force);"
                f" {rejected.kept_deny_rules} deny rules and {rejected.kept_cube_settings} [[cube]] settings"
                " of its last good version stay until it is fixed or removed"
            )
            print(f"            {rejected.error}")
        if policy.error and not policy.rejected:  # recorded by an older memosd
            print(f"            REJECTED CHANGE: {policy.error}")
    return 0


def cmd_mcp(config: Config, args: argparse.Namespace) -> int:
    from mcp_server.bridge import run_bridge  # the bridge must start fast: import only what it needs

    token = os.environ.get("MEMOS_TOKEN", "")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise MemosError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from exc
    if not token:
        raise MemosError(
            f"no token for agent {args.agent}: set MEMOS_TOKEN in the MCP client's env (the token"
            f" `memos agent add {args.agent}` printed) or pass --token-file"
        )
    url = args.url or f"http://{config.server.host}:{config.server.port}/mcp"
    anyio.run(run_bridge, url, token, args.agent)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memos", description="memos: shared memory for AI agents.")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $MEMOS_CONFIG or defaults)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    agent = commands.add_parser("agent", help="manage agents and their tokens")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    add = agent_commands.add_parser(
        "add", help="create an agent (and its private cube); prints its token once"
    )
    add.add_argument("name")
    add.set_defaults(handler=cmd_agent_add)
    agent_commands.add_parser("list", help="list agents").set_defaults(handler=cmd_agent_list)
    rotate = agent_commands.add_parser("rotate-token", help="issue a new token; the old one stops working")
    rotate.add_argument("name")
    rotate.set_defaults(handler=cmd_agent_rotate)
    disable = agent_commands.add_parser("disable", help="refuse the agent's token (--enable to undo)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="enable the agent again")
    disable.set_defaults(handler=cmd_agent_disable)

    group = commands.add_parser("group", help="manage groups of agents")
    group_commands = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    group_add = group_commands.add_parser("add", help="create a group")
    group_add.add_argument("name")
    group_add.set_defaults(handler=cmd_group_add)
    add_member = group_commands.add_parser("add-member", help="put an agent in a group")
    add_member.add_argument("group")
    add_member.add_argument("agent")
    add_member.set_defaults(handler=cmd_group_add_member)
    remove_member = group_commands.add_parser("remove-member", help="take an agent out of a group")
    remove_member.add_argument("group")
    remove_member.add_argument("agent")
    remove_member.set_defaults(handler=cmd_group_remove_member)
    group_commands.add_parser("list", help="groups and their members").set_defaults(handler=cmd_group_list)

    audit = commands.add_parser(
        "audit", help="the audit log: writes, share changes and denials, newest first"
    )
    audit.add_argument("--cube", help="only this cube")
    audit.add_argument("--agent", help="only this agent")
    audit.add_argument("--limit", type=int, default=50, help="entries to show (default 50)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(handler=cmd_audit)

    status = commands.add_parser("status", help="daemon, database, counts and the policy in force")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(handler=cmd_status)

    add_memory_parsers(commands)
    add_data_parsers(commands)
    add_service_parsers(commands)

    mcp = commands.add_parser(
        "mcp", help="stdio MCP server relaying to memosd (for Claude Desktop and others)"
    )
    mcp.add_argument("--agent", required=True, help="the agent this client acts as")
    mcp.add_argument(
        "--token-file", metavar="PATH", help="read the token from this file instead of $MEMOS_TOKEN"
    )
    mcp.add_argument("--url", help="the daemon's MCP endpoint (default: from the configuration)")
    mcp.set_defaults(handler=cmd_mcp)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        with one_line_errors("memos"):
            return int(args.handler(load_config(args.config), args))

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
