"""`memos export | import | backup | restore`: moving memories in and out, and keeping copies."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import anyio

from daemon import (
    DEFAULT_KIND,
    FORMATS,
    Config,
    ImportDefaults,
    InvalidInput,
    Located,
    Source,
    backup_database,
    encode_record,
    open_store_services,
    private_dir,
    restore_database,
)
from memos_cli.progress import Progress


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    if args.all and args.cube:
        raise InvalidInput(
            "--all exports every cube; leave out --cube, or leave out --all for those cubes' memories"
        )
    # A file holds every memory: created private (mkstemp makes it 0600) and put in place only when whole.
    target = Path(args.out).resolve() if args.out else None
    temporary: Path | None = None
    out: IO[str] = sys.stdout
    if target is not None:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        temporary, out = Path(name), os.fdopen(fd, "w", encoding="utf-8")
    progress = Progress("exported")

    async def run() -> None:
        async with open_store_services(config) as services:
            async for record in services.export(everything=args.all, cubes=args.cube or None):
                out.write(encode_record(record) + "\n")
                progress.advance()

    try:
        anyio.run(run)
        if temporary is not None and target is not None:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(temporary, target)
    finally:
        if temporary is not None:
            out.close()
            temporary.unlink(missing_ok=True)
    progress.finish()
    return 0


def cmd_import(config: Config, args: argparse.Namespace) -> int:
    progress = Progress("imported")
    with Source(args.source, args.format, sys.stdin) as source:
        if source.detected and source.form != "jsonl":  # jsonl: what import always read by default
            print(f"reading {args.source} as {source.form}")
        defaults = ImportDefaults(
            agent=args.agent, kind=args.kind or DEFAULT_KIND.get(source.form), cube=args.cube
        )

        def counted() -> Iterator[str | Located]:
            for item in source.items(defaults):
                progress.advance()
                yield item

        async def run():  # type: ignore[no-untyped-def]
            async with open_store_services(config) as services:
                if args.agent and args.agent not in {
                    agent.name for agent in await services.identities.list()
                }:
                    # Likely a typo, or an agent still to come: either way nobody reads these memories yet.
                    print(
                        f"memos: note: there is no agent {args.agent} yet; what is imported for it can be read"
                        f" once `memos agent add {args.agent}` creates it",
                        file=sys.stderr,
                    )
                return await services.import_lines(counted(), defaults, strict=args.strict)

        report = anyio.run(run)
    progress.finish()
    for problem in report.errors:
        print(f"{problem.where}: {problem.message}", file=sys.stderr)
    if not report.written:
        print(f"memos: {len(report.errors)} bad lines; --strict: nothing was written", file=sys.stderr)
        return 1
    print(f"{report.added} added, {report.already_present} already present, {len(report.errors)} bad lines")
    if report.agents_without_token:
        print(
            f"agents added without a token: {', '.join(report.agents_without_token)};"
            " give each one with `memos agent rotate-token NAME`"
        )
    return 1 if report.errors else 0


def file_only(config: Config, command: str) -> None:
    """Backup, restore and check work on the SQLite file; a PostgreSQL store has the server's own tools."""
    if config.storage.url is not None:
        raise InvalidInput(
            f"memos {command} works on a SQLite file and this store is PostgreSQL ([storage] url): use"
            " pg_dump / pg_restore, or `memos migrate --to FILE` for a SQLite copy"
        )


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    file_only(config, "backup")
    target = Path(args.target) if args.target else config.backup_dir
    if not args.target:
        private_dir(target)
    made = backup_database(config.database_path, target)
    print(f"backup written to {made}")
    return 0


def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    file_only(config, "restore")
    kept = restore_database(Path(args.backup), config.database_path)
    print(f"restored {config.database_path} from {args.backup}; the replaced file is kept as {kept}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser("export", help="every memory with its history, as JSONL")
    export.add_argument("--cube", action="append", help="only this cube (repeatable)")
    export.add_argument(
        "--all",
        action="store_true",
        help="also cubes with settings, agents (no tokens), groups, grants, tasks",
    )
    export.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    export.set_defaults(handler=cmd_export)

    imp = commands.add_parser(
        "import",
        help="memories from our JSONL, a transcript, Markdown notes, a ChatGPT or Claude export, or memory.json",
    )
    imp.add_argument("source", help="a file, a folder (markdown), or - for standard input")
    imp.add_argument(
        "--format", choices=FORMATS, help="what the source is (default: recognised by its shape)"
    )
    imp.add_argument("--agent", help="the agent the memories belong to, where a line does not say")
    imp.add_argument("--kind", help="the kind of memory, where a line does not say")
    imp.add_argument("--cube", help="the cube to import into (default: each line's, else the agent's own)")
    imp.add_argument("--strict", action="store_true", help="write nothing if any line is bad")
    imp.set_defaults(handler=cmd_import)

    backup = commands.add_parser("backup", help="an online, consistent copy of the database")
    backup.add_argument("target", nargs="?", help="a file or folder (default: [backup] dir)")
    backup.set_defaults(handler=cmd_backup)

    restore = commands.add_parser("restore", help="replace the database with a backup (memosd stopped)")
    restore.add_argument("backup", help="the backup file")
    restore.set_defaults(handler=cmd_restore)
