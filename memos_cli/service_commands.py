"""`memos install-service`: the systemd unit from `systemd/`, with this installation's paths filled in.

The user unit runs the memosd next to this Python with the caller's config. The system unit runs as the
`memos` user under `ProtectHome=yes`, so it cannot run a memosd from a clone or venv in someone's home: the
system install makes a venv of its own under `--prefix` (default /opt/memos), installs memos into it, and
points the unit there, with the system's config file, never the caller's.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from daemon import Config, InvalidInput
from memos_cli.version import memos_version

UNITS = {"user": "memosd.service", "system": "memosd-system.service"}
SYSTEM_PREFIX = Path("/opt/memos")
SYSTEM_CONFIG = Path("/etc/memos/memos.toml")
SYSTEM_USER = "memos"
# ProtectHome=yes hides these from the service: nothing it runs may live there.
_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))
_SYSTEM_CONFIG_TEXT = """\
# memos configuration for the system service (memos install-service --system); every key: README, Configuration.
[storage]
path = "/var/lib/memos/memos.db"

[policies]
dir = "/etc/memos/policies"
"""


def unit_template(kind: str) -> str:
    """The unit text shipped in the repository (also inside the installed package)."""
    source = Path(__file__).resolve().parents[1] / "systemd" / UNITS[kind]
    if source.is_file():
        return source.read_text(encoding="utf-8")
    return resources.files("memos_cli").joinpath("units", UNITS[kind]).read_text(encoding="utf-8")


def render_unit(kind: str, memosd: str, config_path: str | None = None) -> str:
    """The unit with memosd's path on its ExecStart line; the user unit also gets `--config config_path`."""
    args = f"--config {shlex.quote(config_path)}" if config_path else ""
    return (
        unit_template(kind).replace("@MEMOSD@", shlex.quote(memosd)).replace(" @ARGS@", f" {args}".rstrip())
    )


def hidden_from_service(path: Path) -> bool:
    return any(path == hidden or hidden in path.parents for hidden in _HIDDEN)


def source_tree() -> Path | None:
    """The clone this command runs from, if it runs from one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def base_python() -> Path:
    """The interpreter under this one's venv, if any: the system venv is made from it."""
    return Path(getattr(sys, "_base_executable", sys.executable))


def install_system(prefix: Path, python: Path, source: str) -> Path:
    """Make the venv at `prefix`, install memos from `source` into it, make the user and the config file
    if they are missing; returns the venv's memosd."""
    for path, what in ((prefix, "--prefix"), (python.resolve(), "the Python it uses")):
        if hidden_from_service(path):
            raise InvalidInput(
                f"{what} {path} is under a home directory, which the service cannot see (ProtectHome=yes);"
                " choose another --prefix, or a system Python with --python /usr/bin/python3"
            )
    if os.geteuid() != 0:
        raise InvalidInput("install-service --system installs into /opt and /etc: run it with sudo")
    _step([str(python), "-m", "venv", str(prefix)])
    with tempfile.TemporaryDirectory() as scratch:
        if Path(source).is_dir():  # a clone: built from a copy, so root leaves no build files in it
            copy = Path(scratch) / "memos"
            shutil.copytree(
                source,
                copy,
                ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
            )
            source = str(copy)
        _step([str(prefix / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", source])
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _step(
            ["useradd", "--system", "--home-dir", "/var/lib/memos", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SYSTEM_USER]
        )  # fmt: skip
    if not SYSTEM_CONFIG.exists():
        SYSTEM_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONFIG.write_text(_SYSTEM_CONFIG_TEXT, encoding="utf-8")
        SYSTEM_CONFIG.chmod(0o644)
        print(f"wrote {SYSTEM_CONFIG}")
    return prefix / "bin" / "memosd"


def _step(command: list[str]) -> None:
    print("+ " + shlex.join(command), flush=True)
    try:
        done = subprocess.run(command, check=False)
    except OSError as exc:
        raise InvalidInput(f"cannot run {command[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise InvalidInput(f"`{shlex.join(command)}` failed (exit {done.returncode}); see its output above")


def cmd_install_service(config: Config, args: argparse.Namespace) -> int:
    if args.system:
        prefix = Path(args.prefix).absolute()
        memosd = prefix / "bin" / "memosd"
        if not args.print:
            tree = source_tree()
            source = args.source or (str(tree) if tree else f"memosd=={memos_version()}")
            memosd = install_system(prefix, Path(args.python) if args.python else base_python(), source)
        text = render_unit("system", str(memosd))
    else:
        found = shutil.which("memosd", path=str(Path(sys.executable).parent)) or shutil.which("memosd")
        if found is None:
            raise InvalidInput("cannot find the memosd command next to this Python; install memos first")
        config_path = config.source if config.source != "defaults" else None
        text = render_unit("user", str(Path(found).resolve()), config_path)
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
        "--system",
        action="store_true",
        help="a system service as user memos, from a venv of its own under --prefix (run with sudo)",
    )
    install.add_argument(
        "--prefix", default=str(SYSTEM_PREFIX), help="with --system: the venv to make (default /opt/memos)"
    )
    install.add_argument(
        "--python", help="with --system: the Python to make the venv with (default: the one under this one)"
    )
    install.add_argument(
        "--source",
        help="with --system: what pip installs (default: this clone, or memosd==VERSION from PyPI)",
    )
    install.add_argument("--print", action="store_true", help="print the unit instead of installing it")
    install.add_argument("--target", help="write the unit here instead of the usual place")
    install.set_defaults(handler=cmd_install_service)
