"""`memosd`: the daemon in the foreground. Composition root: config, core services, MCP endpoint, signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from functools import partial

import anyio
import anyio.abc

from daemon import (
    Config,
    InstanceLock,
    Notifier,
    Services,
    StatusReporter,
    load_config,
    open_services,
    set_aside_when_filled,
    supervised,
)
from mcp_server.app import build_app, build_mcp
from mcp_server.connections import raise_open_files_limit
from mcp_server.http import HttpServer
from mcp_server.notifications import Notifications
from mcp_server.ui import PREFIX, Dashboard
from memos_cli.errors import exit_code, one_line_errors
from memos_cli.logs import setup_logging
from memos_cli.version import memos_version

log = logging.getLogger("memosd")


async def run_daemon(config: Config, notifier: Notifier) -> None:
    """Serve until SIGINT or SIGTERM; then stop intake, finish requests, stop services, close the store.

    A second SIGINT/SIGTERM cancels the requests still open (writes in progress still finish: they are
    shielded). SIGHUP reloads the policy files.
    """
    lock = InstanceLock(config.database_path)
    lock.acquire()
    try:
        async with open_services(config) as services:
            mcp, notifications = build_mcp(services, memos_version())
            dashboard = Dashboard(services) if config.ui.enabled else None
            http = HttpServer(mcp, build_app(mcp, services, dashboard), config.server)
            url = f"http://{config.server.host}:{http.port}/mcp"
            if dashboard is not None:
                http.on_stop.append(dashboard.live.stop)
                log.info("dashboard at http://%s:%d%s", config.server.host, http.port, PREFIX)
            reporter = services.status_reporter(memos_version(), url)
            try:
                await _serve(services, http, reporter, notifier, url, notifications)
            finally:
                reporter.close()
                with anyio.CancelScope(shield=True):
                    await reporter.announce("stopped")
    finally:
        lock.release()
    log.info("memosd stopped")


async def _serve(
    services: Services,
    http: HttpServer,
    reporter: StatusReporter,
    notifier: Notifier,
    url: str,
    notifications: Notifications,
) -> None:
    signals_wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with anyio.open_signal_receiver(*signals_wanted) as signals:
        async with anyio.create_task_group() as tg:
            await tg.start(supervised, "notifications", notifications.run)
            await tg.start(http.serve)
            await tg.start(notifier.watchdog)
            await tg.start(supervised, "status reporter", reporter.run)
            filled = [services.vectors.attached.wait]
            if services.search.lexical_index is not None:
                filled.append(services.search.lexical_index.wait_ready)
            await tg.start(supervised, "collector", partial(set_aside_when_filled, filled))
            print(f"memosd ready: {url}", file=sys.stderr, flush=True)
            notifier.ready(f"serving {url}")
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("received SIGHUP: reloading the policy files")
                    await services.policy_watcher.reload()
                    continue
                if stopping:
                    log.warning("received %s again: cancelling open requests", name)
                    tg.cancel_scope.cancel("forced shutdown")
                    break
                log.info("received %s: shutting down", name)
                stopping = True
                notifier.stopping("finishing open requests")
                http.stop()
                await notifications.end_streams()  # hosts' event streams never end by themselves
                tg.start_soon(_stop_when_idle, http, tg)
                await reporter.announce("stopping")


async def _stop_when_idle(http: HttpServer, tg: anyio.abc.TaskGroup) -> None:
    """Once the HTTP server has drained, end the other background tasks of this group."""
    await http.stopped.wait()
    tg.cancel_scope.cancel("memosd is shutting down")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memosd", description="The memos daemon (foreground).")
    parser.add_argument(
        "--config", metavar="PATH", help="configuration file (default: $MEMOS_CONFIG or defaults)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {memos_version()}")
    args = parser.parse_args(argv)
    return exit_code(lambda: _serve_command(args.config))


def _serve_command(config_path: str | None) -> int:
    with one_line_errors("memosd", code=2):
        config = load_config(config_path)
    setup_logging(config.log.level)
    raise_open_files_limit()  # before anything opens files: connections are bounded below it
    log.info("memos %s, config %s, database %s", memos_version(), config.source, config.database_label)
    watchdog = os.environ.get("WATCHDOG_USEC")
    notifier = Notifier(
        os.environ.get("NOTIFY_SOCKET"), int(watchdog) if watchdog and watchdog.isdigit() else None
    )
    try:
        with one_line_errors("memosd"):
            anyio.run(run_daemon, config, notifier, backend_options=event_loop_options())
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return exit_now(0)


def event_loop_options() -> dict[str, bool]:
    """uvloop's event loop where it is installed (a dependency everywhere but Windows): a search hands work to
    its threads and back ~30 times, and asyncio's own loop writes to its wake-up pipe for every hand-off even
    when it is awake, while uvloop's skips the write when one is pending. Over MCP at 100k memories, two
    rounds each: 16 agents 64.4, 51.2 -> 74.3, 68.1 searches/s; single adds 67.3, 62.7 -> 89.1, 73.9/s
    (bench/README.md, issue 17)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def exit_now(code: int, grace: float = 1.0) -> int:
    """Exit at once: everything acknowledged is committed and the store is closed by now, so the
    interpreter's own teardown (seconds, with the model's libraries loaded) only delays a service manager's
    restart. anyio's idle worker threads are told to stop as the event loop closes and end a moment later,
    so the non-daemon threads get `grace` seconds in all; one still running then is stuck in a call that
    cannot be cancelled (a model download retrying without network): say so, then leave it behind."""
    deadline = time.monotonic() + grace
    stuck = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stuck.append(thread)
    if stuck:
        log.warning("leaving %d blocked worker thread(s) behind", len(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
