"""`memos export | import | backup | restore`: moving memories in and out, and keeping copies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio

from daemon import Config, InvalidInput, open_store_services
from daemon.backup import backup_database, restore_database
from daemon.import_formats import markdown_lines, transcript_lines
from daemon.private_files import private_dir
from daemon.redaction import Redactor
from daemon.transfer import ImportDefaults, Redaction, encode_record, export_records, import_lines
from memos_cli.progress import Progress


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115 - closed below
    progress = Progress("exported")

    async def run() -> None:
        async with open_store_services(config) as services:
            async for record in export_records(services.store, args.cube or None):
                out.write(encode_record(record) + "\n")
                progress.advance()

    try:
        anyio.run(run)
    finally:
        if out is not sys.stdout:
            out.close()
    progress.finish()
    return 0


def _lines(args: argparse.Namespace) -> Iterator[str]:
    source = Path(args.source)
    if args.format == "transcript":
        yield from transcript_lines(source)
    elif args.format == "markdown":
        yield from markdown_lines(source)
    elif args.source == "-":
        yield from sys.stdin
    else:
        try:
            with source.open(encoding="utf-8") as handle:
                yield from handle
        except OSError as exc:
            raise InvalidInput(f"cannot read {source}: {exc.strerror}") from exc


def cmd_import(config: Config, args: argparse.Namespace) -> int:
    kind = args.kind or {"transcript": "message", "markdown": "note"}.get(args.format)
    defaults = ImportDefaults(agent=args.agent, kind=kind, cube=args.cube)
    progress = Progress("imported")

    def counted() -> Iterator[str]:
        for line in _lines(args):
            progress.advance()
            yield line

    async def run():  # type: ignore[no-untyped-def]
        async with open_store_services(config) as services:
            redaction = Redaction(settings=services.settings, redactor=Redactor(config.redaction.patterns))
            return await import_lines(
                services.store, counted(), defaults, config.limits, strict=args.strict, redaction=redaction
            )

    report = anyio.run(run)
    progress.finish()
    for number, message in report.errors:
        print(f"line {number}: {message}", file=sys.stderr)
    if not report.written:
        print(f"memos: {len(report.errors)} bad lines; --strict: nothing was written", file=sys.stderr)
        return 1
    print(f"{report.added} added, {report.already_present} already present, {len(report.errors)} bad lines")
    return 1 if report.errors else 0


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    target = Path(args.target) if args.target else config.backup_dir
    if not args.target:
        private_dir(target)
    made = backup_database(config.database_path, target)
    print(f"backup written to {made}")
    return 0


def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    kept = restore_database(Path(args.backup), config.database_path)
    print(f"restored {config.database_path} from {args.backup}; the replaced file is kept as {kept}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser("export", help="every memory with its history, as JSONL")
    export.add_argument("--cube", action="append", help="only this cube (repeatable)")
    export.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    export.set_defaults(handler=cmd_export)

    imp = commands.add_parser(
        "import", help="memories from JSONL, a transcript or a folder of Markdown notes"
    )
    imp.add_argument("source", help="a file, a folder (markdown), or - for standard input (jsonl)")
    imp.add_argument("--format", choices=["jsonl", "transcript", "markdown"], default="jsonl")
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
