"""`memos doctor`: is this set-up able to work? One line per check (ok, warn or FAIL); exit 1 if any failed.

It never downloads the model, never creates the database, and only looks at the port and the daemon (a token
it checks counts as its agent being seen, as any use of it does). With a daemon running, it also reports what
that daemon says of its own embedding model (loaded, loading, failed or off), which the `model` check, loading
the model in this process, cannot tell.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from pathlib import Path

import anyio

from daemon import (
    NO_MODEL,
    Config,
    DaemonStatus,
    MemosError,
    Services,
    Unauthenticated,
    load_config,
    load_model,
    model_cache_dir,
    open_store_services,
)
from memos_cli.memory_commands import quiet_fastembed
from memos_cli.status import daemon_state, read_status, serving_daemon

Report = Callable[[str, str, str], None]


def check_model(config: Config, report: Report) -> None:
    embedder = config.embedder
    if embedder.model == NO_MODEL and embedder.model_path is None:
        report("ok", "model", 'off ([embedder] model = "none"): search is lexical')
        return
    cache = model_cache_dir()
    if embedder.model_path is None:
        from fastembed import TextEmbedding  # slow to import: only when there is a model to look at

        if embedder.model not in {m["model"] for m in TextEmbedding.list_supported_models()}:
            report("FAIL", "model", f"fastembed has no model {embedder.model!r}; fix [embedder] model")
            return
        if not cache.is_dir() or not any(cache.iterdir()):
            report(
                "warn", "model", f"{embedder.model} is not downloaded yet: memosd fetches it into {cache} on"
                " its first start (needs network; search is lexical until then), or set [embedder] model_path",
            )  # fmt: skip
            return
    where = embedder.model_path or str(cache)
    try:
        model = load_model(embedder, cache, local_only=True)
        dims = len(next(iter(model.embed(["probe"]))))
    # Loading fails in many ways (missing or corrupt files, onnxruntime errors); each means the same here.
    except Exception as exc:  # noqa: BLE001
        report(
            "FAIL", "model", f"{embedder.model} from {where} cannot be loaded: {type(exc).__name__}: {exc}"
        )
        return
    report("ok", "model", f"{embedder.identity} loads from {where} ({dims} dimensions)")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def check_database_and_daemon(
    config: Config, args: argparse.Namespace, token: str | None, report: Report
) -> None:
    held = serving_daemon(config)  # before this command opens the database
    server = config.server
    reported: DaemonStatus | None = None
    token_check = ("FAIL", f"no database yet, so no agent {args.agent!r}: `memos agent add {args.agent}`")
    if not config.database_exists:
        report(
            "ok",
            "database",
            f"{config.database_path} does not exist yet (memosd creates it on its first start)",
        )
        daemon, running = await daemon_state(config, held, None)
    else:
        try:
            async with open_store_services(config) as services:
                status = await read_status(services, held)
                if token is not None:
                    token_check = await check_token(services, args.agent, token)
        except MemosError as exc:
            report("FAIL", "database", f"{config.database_label}: {exc}")
            return
        report(
            "ok", "database", f"{config.database_label} is readable (schema {status.schema_version},"
            f" {status.agents} agents, {status.memories} memories)",
        )  # fmt: skip
        daemon, running, reported = status.daemon, status.running, status.daemon_status
    if running:
        report("ok", "daemon", daemon)
        report(*daemon_embedder(reported))
    elif held:
        report("FAIL", "daemon", daemon)
    elif port_free(server.host, server.port):
        report(
            "ok", "daemon", f"not running; port {server.port} on {server.host} is free for it (start memosd)"
        )
    else:
        report(
            "FAIL", "daemon", f"not running, and port {server.port} on {server.host} is taken by another"
            " program: memosd cannot start there; stop it or change [server] port",
        )  # fmt: skip
    if token is not None:
        report(token_check[0], "token", token_check[1])


def daemon_embedder(reported: DaemonStatus | None) -> tuple[str, str, str]:
    """The `embedder` check: the running daemon's own report of its model, as it keeps it in the database."""
    if reported is None:
        return (
            "warn",
            "embedder",
            "memosd has not reported on its model yet (it does within seconds of starting)",
        )
    model = reported.embedder_model or "the embedding model"
    if reported.embedder == "ready" and reported.reembedding is not None:
        return (
            "warn", "embedder", f"memosd has {model} loaded and is embedding every memory again for it (the"
            f" model changed; about {reported.reembedding} left): search is lexical until it is done",
        )  # fmt: skip
    if reported.embedder == "ready":
        return "ok", "embedder", f"memosd has {model} loaded: search is hybrid"
    if reported.embedder == "loading":
        return "warn", "embedder", f"memosd is still loading {model}: search is lexical until it is ready"
    if reported.embedder == "disabled":
        return "ok", "embedder", 'memosd runs without a model ([embedder] model = "none"): search is lexical'
    if reported.embedder == "failed":
        return (
            "FAIL", "embedder", f"memosd could not load {model} ({reported.embedder_problem or 'no reason given'}):"
            " search is lexical; fix [embedder] model or model_path and restart memosd",
        )  # fmt: skip
    return (
        "warn",
        "embedder",
        f"memosd reports its model as {reported.embedder!r}, which this memos does not know",
    )


def given_token(args: argparse.Namespace, report: Report) -> str | None:
    """The token `--agent` is to be checked with, or None (reported) if there is none."""
    token = os.environ.get("MEMOS_TOKEN", "")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            report("FAIL", "token", f"cannot read --token-file {args.token_file}: {exc.strerror}")
            return None
    if not token:
        report("FAIL", "token", f"no token for agent {args.agent!r}: set MEMOS_TOKEN or pass --token-file")
        return None
    return token


async def check_token(services: Services, agent: str, token: str) -> tuple[str, str]:
    """Whether `token` is `agent`'s and accepted, by the same check the daemon makes."""
    try:
        holder = await services.identities.authenticate(token)
    except Unauthenticated as exc:
        return "FAIL", f"not valid ({exc}): `memos agent rotate-token {agent}` issues a new one"
    if holder.name != agent:
        return "FAIL", f"the token is agent {holder.name!r}'s, not {agent!r}'s"
    return "ok", f"valid for agent {agent}"


def cmd_doctor(config_path: str | None, args: argparse.Namespace) -> int:
    failed = False

    def report(outcome: str, check: str, detail: str) -> None:
        nonlocal failed
        failed = failed or outcome == "FAIL"
        print(f"{outcome:4}  {check:8}  {detail}", flush=True)

    try:
        config = load_config(config_path)
    except MemosError as exc:
        report("FAIL", "config", str(exc))
        return 1
    report(
        "ok", "config", f"{config.source} parses" if config.source != "defaults" else "no file: the defaults"
    )
    quiet_fastembed()
    check_model(config, report)
    token = given_token(args, report) if args.agent else None
    anyio.run(check_database_and_daemon, config, args, token, report)
    return 1 if failed else 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = commands.add_parser(
        "doctor",
        help="check the config, model, database, daemon and (with --agent) a token; exit 1 on a failure",
    )
    doctor.add_argument("--agent", help="also check this agent's token ($MEMOS_TOKEN or --token-file)")
    doctor.add_argument("--token-file", metavar="PATH", help="read the token from this file")
    doctor.set_defaults(handler=cmd_doctor, loads_config=False)
