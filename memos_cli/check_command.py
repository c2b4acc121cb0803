"""`memos check [--repair]`: the full integrity check of the database and its indexes (daemon/integrity.py)."""

from __future__ import annotations

import argparse

import anyio

from daemon import Config, check_database, repair_database
from memos_cli.data_commands import file_only


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    file_only(config, "check")
    work = repair_database if args.repair else check_database
    report = anyio.run(anyio.to_thread.run_sync, work, config.database_path)
    for line in report.repaired:
        print(f"repaired: {line}")
    for problem in report.problems:
        print(f"damaged: {problem}")
    if not report.problems:
        print(f"{report.database}: the database and its indexes are whole")
        return 0
    if args.repair:
        print(
            "the damage is in the stored data itself, which cannot be rebuilt: stop memosd, move the file aside"
            " and restore a backup (`memos restore`)"
        )
    else:
        print("stop memosd and run `memos check --repair` to rebuild the indexes from the memories")
    return 1


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = commands.add_parser(
        "check", help="check the database and its indexes in full (--repair: rebuild them; memosd stopped)"
    )
    check.add_argument(
        "--repair", action="store_true", help="rebuild the table, full-text and vector indexes"
    )
    check.set_defaults(handler=cmd_check)
