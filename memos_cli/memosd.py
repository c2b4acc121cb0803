"""`memosd`: the daemon in the foreground. Composition root: config, core services, MCP endpoint, signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from importlib.metadata import PackageNotFoundError, version

import anyio

from daemon import Config, load_config, open_services
from mcp_server.app import build_app, build_mcp
from mcp_server.http import HttpServer
from memos_cli.errors import exit_code, one_line_errors
from memos_cli.logs import setup_logging

log = logging.getLogger("memosd")


def memos_version() -> str:
    try:
        return version("memos")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


async def run_daemon(config: Config) -> None:
    """Serve until SIGINT or SIGTERM; then stop intake, finish requests, stop services, close the store."""
    async with open_services(config) as services:
        mcp = build_mcp(services, memos_version())
        http = HttpServer(mcp, build_app(mcp, services), config.server)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                await tg.start(http.serve)
                print(
                    f"memosd ready: http://{config.server.host}:{http.port}/mcp", file=sys.stderr, flush=True
                )
                async for signum in signals:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    http.stop()
                    break
    log.info("memosd stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memosd", description="The memos daemon (foreground).")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $MEMOS_CONFIG or defaults)"
    )
    args = parser.parse_args(argv)
    return exit_code(lambda: _serve(args.config))


def _serve(config_path: str | None) -> int:
    with one_line_errors("memosd", code=2):
        config = load_config(config_path)
    setup_logging(config.log.level)
    log.info("memos %s, config %s, database %s", memos_version(), config.source, config.database_path)
    try:
        with one_line_errors("memosd"):
            anyio.run(run_daemon, config)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return exit_now(0)


def exit_now(code: int) -> int:
    """Exit even if a worker thread is stuck in a call that cannot be cancelled (a model download
    retrying without network): everything acknowledged is committed and the store is closed by now."""
    if threading.active_count() > 1:
        log.warning("leaving %d blocked worker thread(s) behind", threading.active_count() - 1)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
