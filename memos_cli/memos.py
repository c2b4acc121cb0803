"""`memos`: the command-line client and admin tool.

Admin commands work on the database file directly (safe while memosd runs: WAL, one short transaction
each), so they work whether or not the daemon is up. `memos mcp` is the stdio bridge for hosts that launch a
command, such as Claude Desktop.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from daemon import Config, MemosError, Services, load_config, open_store_services
from memos_cli.check_command import add_parsers as add_check_parsers
from memos_cli.connect import add_parsers as add_connect_parsers
from memos_cli.data_commands import add_parsers as add_data_parsers
from memos_cli.doctor import add_parsers as add_doctor_parsers
from memos_cli.errors import exit_code, one_line_errors
from memos_cli.memory_commands import add_parsers as add_memory_parsers
from memos_cli.migrate_command import add_parsers as add_migrate_parsers
from memos_cli.service_commands import add_parsers as add_service_parsers
from memos_cli.status import absent, daemon_state, read_status, serving_daemon
from memos_cli.version import memos_version

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


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
    held = serving_daemon(config)  # before this command opens the database
    if config.database_exists:
        status = _run(config, lambda s: read_status(s, held))
    else:  # never create it: no daemon has served this path yet
        status = absent(anyio.run(daemon_state, config, False, None)[0])
    if args.json:
        print(msgspec.json.encode(status).decode())
        return 0
    print(f"config      {config.source}")
    if not status.database_exists:
        print(f"database    {config.database_path} does not exist yet (memosd creates it on its first start)")
        print(f"daemon      {status.daemon}")
        return 0
    print(f"database    {config.database_label} (schema {status.schema_version})")
    print(f"daemon      {status.daemon}")
    reported = status.daemon_status
    if reported is not None:
        when = "" if status.running else "last run: "
        print(
            f"            {when}pid {reported.pid}, memos {reported.version}, {reported.state} since"
            f" {reported.started_at}, embedder {reported.embedder or 'n/a'}"
            + (f" ({reported.embedder_problem})" if reported.embedder_problem else "")
            + (
                f", embedding every memory again for {reported.embedder_model} (about {reported.reembedding}"
                " left; search is lexical until then)"
                if reported.reembedding is not None
                else ""
            )
        )
        for name, m in reported.queue.items() if status.running else ():
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


def cmd_ui(config: Config, args: argparse.Namespace) -> int:
    """A one-time link to the dashboard's admin view: running `memos` here proves ownership of the data."""
    if not config.ui.enabled:
        print(
            "the dashboard is off: set [ui] enabled = true in memos.toml and restart memosd", file=sys.stderr
        )
        return 1
    secret = _run(config, lambda s: s.sign_in_links.issue())
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    print(f"http://{host}:{config.server.port}/ui/admin/sign-in?secret={secret}")
    print("Open it in a browser on this machine within 10 minutes; it works once.", file=sys.stderr)
    return 0


def cmd_mcp(config: Config, args: argparse.Namespace) -> int:
    # The bridge must start fast: import only what it needs (the catalog opens nothing, loads no model).
    from mcp_server.app import build_catalog
    from mcp_server.bridge import run_bridge

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
    anyio.run(run_bridge, url, token, args.agent, build_catalog(config, memos_version()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memos", description="memos: shared memory for AI agents.")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $MEMOS_CONFIG or defaults)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {memos_version()}")
    parser.set_defaults(loads_config=True)
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

    ui = commands.add_parser("ui", help="print a one-time link that opens the dashboard's admin view")
    ui.set_defaults(handler=cmd_ui)

    add_memory_parsers(commands)
    add_data_parsers(commands)
    add_check_parsers(commands)
    add_migrate_parsers(commands)
    add_service_parsers(commands)
    add_connect_parsers(commands)
    add_doctor_parsers(commands)

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
            if not args.loads_config:  # `memos doctor` reports a bad config as one of its checks
                return int(args.handler(args.config, args))
            return int(args.handler(load_config(args.config), args))

    try:
        code = exit_code(run)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could only be reported, not handled
    except BrokenPipeError:
        return output_closed()
    except BaseExceptionGroup as group:  # from inside a task group
        if group.split(BrokenPipeError)[1] is not None:
            raise
        return output_closed()
    return code


def output_closed() -> int:
    """The reader of our output went away (`memos … | head`): stop quietly, as a command killed by SIGPIPE
    would. Later writes, and the flush at exit, go to /dev/null instead of raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
