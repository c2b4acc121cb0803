"""`memos install-service`: the systemd unit from `systemd/`, with this installation's paths filled in."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

from daemon import Config, InvalidInput

UNITS = {"user": "memosd.service", "system": "memosd-system.service"}


def unit_template(kind: str) -> str:
    """The unit text shipped in the repository (also inside the installed package)."""
    source = Path(__file__).resolve().parents[1] / "systemd" / UNITS[kind]
    if source.is_file():
        return source.read_text(encoding="utf-8")
    return resources.files("memos_cli").joinpath("units", UNITS[kind]).read_text(encoding="utf-8")


def render_unit(kind: str, memosd: str, config_path: str | None) -> str:
    args = f"--config {shlex.quote(config_path)}" if config_path else ""
    return (
        unit_template(kind).replace("@MEMOSD@", shlex.quote(memosd)).replace(" @ARGS@", f" {args}".rstrip())
    )


def cmd_install_service(config: Config, args: argparse.Namespace) -> int:
    kind = "system" if args.system else "user"
    memosd = shutil.which("memosd", path=str(Path(sys.executable).parent)) or shutil.which("memosd")
    if memosd is None:
        raise InvalidInput("cannot find the memosd command next to this Python; install memos first")
    config_path = config.source if config.source != "defaults" else None
    text = render_unit(kind, str(Path(memosd).resolve()), config_path)
    if args.print:
        print(text, end="")
        return 0
    target = Path(args.target) if args.target else (
        Path("/etc/systemd/system/memosd.service") if args.system
        else Path.home() / ".config" / "systemd" / "user" / "memosd.service"
    )  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    scope = "" if args.system else " --user"
    print(f"wrote {target}")
    print(f"next: systemctl{scope} daemon-reload && systemctl{scope} enable --now memosd")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    install = commands.add_parser(
        "install-service", help="install the systemd unit with this installation's paths"
    )
    install.add_argument(
        "--system", action="store_true", help="the system unit (user memos) instead of a user unit"
    )
    install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    install.add_argument("--target", help="write the unit here instead of the usual place")
    install.set_defaults(handler=cmd_install_service)
