"""`memos connect claude-desktop`: create the host's agent and put its `memos mcp` entry into the host's
configuration, the most error-prone manual step of setting memos up.

The entry is merged into `claude_desktop_config.json` under `mcpServers`: other servers and other keys in
the file are kept as they are. The file is replaced atomically and kept private (0600), since the token is in
it, unless the token goes to a token file of its own (`--token-file`, 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from daemon import Config, Conflict, InvalidInput, NotFound, open_store_services


def claude_desktop_config_path() -> Path:
    """Where Claude Desktop reads its configuration on this platform."""
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(appdata) / "Claude" / "claude_desktop_config.json"
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config_home) / "Claude" / "claude_desktop_config.json"


def memos_launcher() -> tuple[str, list[str]]:
    """The command (and leading arguments) that runs this installation's `memos`."""
    found = shutil.which("memos", path=str(Path(sys.executable).parent))
    if found:
        return str(Path(found).absolute()), []
    return sys.executable, ["-m", "memos_cli.memos"]


def server_entry(config: Config, agent: str, token: str, token_file: Path | None) -> dict[str, Any]:
    command, args = memos_launcher()
    if config.source != "defaults":  # the bridge must find the same daemon (port) as this command
        args += ["--config", str(Path(config.source).resolve())]
    args += ["mcp", "--agent", agent]
    if token_file is not None:
        return {"command": command, "args": [*args, "--token-file", str(token_file)]}
    return {"command": command, "args": args, "env": {"MEMOS_TOKEN": token}}


async def agent_token(config: Config, agent: str, rotate: bool) -> tuple[str, bool]:
    """A new token for `agent`: created with it if missing, else (with `rotate`) replacing its old one."""
    async with open_store_services(config) as services:
        try:
            _, token = await services.identities.add(agent)
            return token, True
        except Conflict:
            if not rotate:
                raise Conflict(
                    f"agent {agent!r} exists and its token cannot be shown again: add --rotate to issue a new"
                    " one (the old one stops working), or --agent OTHER for a new agent"
                ) from None
        try:
            return await services.identities.rotate_token(agent), False
        except NotFound:  # removed between the two calls
            raise Conflict(f"agent {agent!r} changed while connecting; run the command again") from None


def read_host_config(path: Path) -> dict[str, Any]:
    """The host's configuration as it is (empty if there is no file yet); never guessed at if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it, or use --print and add the"
            " entry by hand"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise InvalidInput(f"{path}: expected an object with an object mcpServers; fix it, or use --print")
    return data


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by its owner only. A symlink stays a symlink: the file
    it points to is replaced."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cmd_connect_claude_desktop(config: Config, args: argparse.Namespace) -> int:
    target = Path(args.config_file) if args.config_file else claude_desktop_config_path()
    host_config = {} if args.print else read_host_config(target)  # refuse a broken file before any change
    if not args.print and args.name in host_config.get("mcpServers", {}) and not args.rotate:
        raise Conflict(
            f"{target} already has an mcpServers entry {args.name!r}; add --rotate to replace it with a new"
            " token, or --name OTHER"
        )
    token, created = anyio.run(agent_token, config, args.agent, args.rotate)
    token_file = Path(args.token_file).absolute() if args.token_file else None
    if token_file is not None:
        write_private(token_file, token + "\n")
    entry = server_entry(config, args.agent, token, token_file)
    what = "created agent" if created else "issued a new token for agent"
    if args.print:
        print(json.dumps({"mcpServers": {args.name: entry}}, indent=2))
        print(f"{what} {args.agent}; put this entry into {target}", file=sys.stderr)
        return 0
    host_config.setdefault("mcpServers", {})[args.name] = entry
    write_private(target, json.dumps(host_config, indent=2) + "\n")
    print(f"{what} {args.agent} and wrote its entry {args.name!r} to {target}")
    print("next: restart Claude Desktop; its memos tools need memosd running")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    connect = commands.add_parser("connect", help="connect a host application to memos")
    hosts = connect.add_subparsers(dest="host", required=True, metavar="HOST")
    desktop = hosts.add_parser(
        "claude-desktop", help="create its agent and add memos to claude_desktop_config.json"
    )
    desktop.add_argument("--agent", default="claude-desktop", help="the agent (default claude-desktop)")
    desktop.add_argument(
        "--rotate", action="store_true", help="the agent or entry exists: issue a new token and replace it"
    )
    desktop.add_argument(
        "--config-file", metavar="PATH", help="Claude Desktop's config file (default: the platform's)"
    )
    desktop.add_argument("--name", default="memos", help="the entry's name under mcpServers (default memos)")
    desktop.add_argument(
        "--token-file", metavar="PATH", help="keep the token in this file (0600), not in the config's env"
    )
    desktop.add_argument(
        "--print", action="store_true", help="print the entry instead of writing the config file"
    )
    desktop.set_defaults(handler=cmd_connect_claude_desktop)
