"""`memos migrate --to TARGET`: move the whole store into PostgreSQL, or back into a SQLite file.

The records of `memos export --all` carry every memory with its versions, validity, supersession and links,
and every cube, setting, agent, group, grant and task; the target imports them all-or-nothing (`--strict`
semantics, one transaction), and importing is idempotent, so a migration that stopped can be run again.
The lines pass through a private temporary file, so neither store is held open across the other's work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec

from daemon import Config, ImportDefaults, InvalidInput, encode_record, open_store_services


def target_config(config: Config, target: str) -> Config:
    """The configuration of the target store: the same settings, another database."""
    if target.startswith(("postgresql://", "postgres://")):
        storage = msgspec.structs.replace(config.storage, url=target)
    else:
        path = Path(target).expanduser().resolve()
        if path.exists():
            raise InvalidInput(f"--to {target}: the file exists; migrate into a new SQLite file")
        storage = msgspec.structs.replace(config.storage, url=None, path=str(path))
    if storage == config.storage:
        raise InvalidInput(f"--to {target}: that is the configured store itself")
    return msgspec.structs.replace(config, storage=storage)


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    target = target_config(config, args.to)
    fd, name = tempfile.mkstemp(prefix=".memos-migrate.", suffix=".jsonl")  # 0600
    lines = Path(name)

    async def export() -> int:
        count = 0
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            async with open_store_services(config) as services:
                async for record in services.export(everything=True, cubes=None):
                    out.write(encode_record(record) + "\n")
                    count += 1
        return count

    def read() -> Iterator[str]:
        with lines.open(encoding="utf-8") as source:
            yield from source

    async def load():  # type: ignore[no-untyped-def]
        async with open_store_services(target) as services:
            return await services.import_lines(read(), ImportDefaults(), strict=True)

    try:
        exported = anyio.run(export)
        report = anyio.run(load)
    finally:
        lines.unlink(missing_ok=True)
    for problem in report.errors:
        print(f"{problem.where}: {problem.message}")
    if not report.written:
        print(f"memos: {len(report.errors)} records were refused; nothing was written to the target")
        return 1
    shown = (target.storage.url and "the PostgreSQL database") or target.storage.path
    print(
        f"{exported} records: {report.added} added to {shown}, {report.already_present} already there."
        " Point [storage] at it and restart memosd."
    )
    if report.agents_without_token:
        print(
            f"agents moved without their tokens: {', '.join(report.agents_without_token)};"
            " give each one a new token with `memos agent rotate-token NAME`"
        )
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate = commands.add_parser(
        "migrate", help="move the whole store into PostgreSQL (--to postgresql://…) or a new SQLite file"
    )
    migrate.add_argument("--to", required=True, metavar="TARGET", help="postgresql://… or a new .db file")
    migrate.set_defaults(handler=cmd_migrate)
