"""Shared fixtures: real SQLite files in tmp dirs, the real embedding model, a real daemon on loopback."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import httpx2
import numpy as np
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from daemon import Config, Services, load_config, open_services
from daemon.config import EmbedderConfig
from daemon.embedder import Embedder
from tests.pg_server import PgCluster

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"
# The int8 copy of the model (the default precision), made once and shared by every daemon the tests start,
# as a user's daemons share their cache; daemon/quantized.py names it for its source, so it is never stale.
QUANTIZED_DIR = Path(tempfile.gettempdir()) / f"memos-tests-{getpass.getuser()}" / "quantized"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.fail(f"the test model is missing: expected {MODEL_DIR}/model.onnx (../shared beside the repo)")
    return MODEL_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path, *, port: int, model: str | None = None, extra: str = "", url: str | None = None
) -> Path:
    """A memos.toml for tests; `model` is a model dir, or "none" for lexical only; `url` a PostgreSQL
    database instead of the file."""
    embedder = 'model = "none"' if model == "none" else f'model_path = "{model}"' if model else ""
    embedder += f"\nquantized_dir = {json.dumps(str(QUANTIZED_DIR))}"
    storage = 'path = "data/memos.db"' + (f"\nurl = {json.dumps(url)}" if url else "")
    path = directory / "memos.toml"
    path.write_text(
        f"[server]\nport = {port}\n[storage]\n{storage}\n[embedder]\n{embedder}\n{extra}\n",
        encoding="utf-8",
    )
    return path


def isolated_env(home: Path) -> dict[str, str]:
    """The environment for child processes: no user config leaks in, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMOS_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    env.update(XDG_CACHE_HOME=str(home / "cache"), PYTHONUNBUFFERED="1")
    return env


def memos_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "memos_cli.memos", *args]


def memos_at(
    config: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `memos --config CONFIG ARGS…` as a user would, in the config's directory as home."""
    return subprocess.run(
        memos_command("--config", str(config), *args), capture_output=True, text=True, input=stdin,
        env=isolated_env(config.parent), cwd=REPO, timeout=120, check=check,
    )  # fmt: skip


def memosd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "memos_cli.memosd", *args]


@dataclass
class RunningDaemon:
    config_path: Path
    port: int
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def env(self) -> dict[str, str]:
        return isolated_env(self.home)

    def memos(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            memos_command("--config", str(self.config_path), *args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=60,
            check=check,
        )

    def add_agent(self, name: str) -> str:
        """Create an agent through the CLI, as a user would; returns its token (the last line)."""
        return self.memos("agent", "add", name).stdout.strip().splitlines()[-1]

    def relate(self, group: str, *agents: str) -> None:
        """Put the agents in a new group, as the machine's owner does, so they can name one another."""
        self.memos("group", "add", group)
        for agent in agents:
            self.memos("group", "add-member", group, agent)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_daemon(config_path: Path, home: Path, port: int) -> RunningDaemon:
    log_path = config_path.parent / "memosd.log"
    offset = log_path.stat().st_size if log_path.exists() else 0  # a restart appends to the same log
    with log_path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            memosd_command("--config", str(config_path)),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=isolated_env(home),
            cwd=REPO,
        )
    daemon = RunningDaemon(config_path, port, home, process, log_path)
    deadline = time.monotonic() + 60
    while "memosd ready" not in daemon.log()[offset:]:
        if process.poll() is not None:
            raise AssertionError(f"memosd exited with {process.returncode}:\n{daemon.log()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"memosd did not become ready:\n{daemon.log()}")
        time.sleep(0.05)
    return daemon


def stop_daemon(daemon: RunningDaemon) -> int:
    if daemon.process.poll() is None:
        daemon.process.terminate()
        try:
            daemon.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
    return daemon.process.returncode


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[RunningDaemon]:
    """memosd as a real subprocess with the real model, on a free loopback port, for one test module."""
    home = tmp_path_factory.mktemp("memosd")
    port = free_port()
    running = start_daemon(write_config(home, port=port, model=str(model_dir)), home, port)
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture(scope="module")
def lexical_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """memosd as a real subprocess without a model (lexical search), for one test module: for behaviour that
    does not depend on meaning (errors, access, sessions, the dashboard)."""
    home = tmp_path_factory.mktemp("memosd-lexical")
    port = free_port()
    running = start_daemon(write_config(home, port=port, model="none"), home, port)
    try:
        yield running
    finally:
        stop_daemon(running)


@asynccontextmanager
async def mcp_client(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's own client over streamable HTTP; mode "legacy" is the handshake era, "auto" the modern."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        yield client


def make_config(tmp_path: Path, model: str | None = None, url: str | None = None) -> Config:
    return load_config(
        write_config(tmp_path, port=free_port(), model=model, url=url), environ={"HOME": str(tmp_path)}
    )


# The conformance suite: a module that sets `BACKENDS = BOTH` runs each test that takes the `backend`
# fixture (directly, or through `services`/`lexical_services`) once per store: the SQLite file and a fresh
# database on a real PostgreSQL server (tests/pg_server.py).
BOTH = ("sqlite", "postgresql")


# Under pytest-xdist (`-n auto`, whole modules per worker) the modules that take longest are handed out first,
# so that no worker is left running one of them alone at the end. Measured with `--durations`; it only
# orders: a module missing here (or renamed) runs after these, as before.
LONGEST_FIRST = (
    "test_ui_http", "test_search", "test_ui_browser", "test_stdio_bridge", "test_memories", "test_access",
    "test_transfer", "test_truth", "test_crash_durability", "test_ts_client", "test_bridge_relay",
    "test_store_faults", "test_bad_input", "test_policy_live", "test_cli", "test_retrieval_pipeline",
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (config.getoption("numprocesses", None) or hasattr(config, "workerinput")):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: a module stays in one piece


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ("sqlite",))
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = ("sqlite",)
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One real PostgreSQL 18 with pgvector for the whole session (under pytest-xdist: for each worker, in a
    folder and on a socket of its own), started on first use."""
    with PgCluster.start() as cluster:
        yield cluster


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store of this test: None for the SQLite file, else the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    with cluster.database() as url:
        yield url


@pytest.fixture
async def services(tmp_path: Path, model_dir: Path, backend: str | None) -> AsyncIterator[Services]:
    """The daemon core in-process, with the real model loaded and the vector index attached."""
    config = make_config(tmp_path, str(model_dir), url=backend)
    async with open_services(config) as core:
        await core.vectors.attached.wait()
        yield core


@pytest.fixture
async def lexical_services(tmp_path: Path, backend: str | None) -> AsyncIterator[Services]:
    """The daemon core without a model (lexical search): quick to open, for tests about rules, not meaning."""
    async with open_services(make_config(tmp_path, "none", url=backend)) as core:
        yield core


async def embedded(config: EmbedderConfig, cache: Path, texts: list[str]) -> np.ndarray:
    """`texts` through the daemon's own embedder (batching, truncation, normalization)."""
    embedder = Embedder(config, cache)
    async with anyio.create_task_group() as tg:
        await tg.start(embedder.run)
        with anyio.fail_after(120):
            await embedder.ready.wait()
            result = await embedder.embed(texts)
        tg.cancel_scope.cancel()
    return result


async def hold_every_search_slot(
    tg: anyio.abc.TaskGroup, services: Services, releases: list[threading.Event], agent: str = "holder"
) -> None:
    """One search of `agent` per search slot, each holding it as a running search does: its slot, and in its
    turn a long reader for its reads (on SQLite, that reader's thread), until its event in `releases` is set;
    returns once every slot is held."""
    gate, held, all_held = services.search.gate, 0, anyio.Event()

    async def reads(release: threading.Event, conn: object) -> None:
        # Polled: on SQLite this runs on a reader's thread, on a loop of its own, which no anyio.Event crosses.
        while not release.is_set():  # noqa: ASYNC110
            await anyio.sleep(0.005)

    async def running_search(release: threading.Event) -> None:
        nonlocal held
        async with gate.slot(agent):
            held += 1
            if held == gate.slots:
                all_held.set()
            await services.store.long_read(partial(reads, release))

    for release in releases:
        tg.start_soon(running_search, release)
    await all_held.wait()
