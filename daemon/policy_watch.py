"""Hot reload of the policy files: a change takes effect within a second, without a restart.

A file that fails to parse or validate is rejected whole: the last good rule set stays in force, the error is
logged with file and line, and it is kept in the database (`meta.policy_status`) for `memos status`. The
configuration file is watched too, so changing `[policies] dir` moves the watch to the new directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskStatus
from watchfiles import awatch

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.events import ChangeHub, CubesChanged
from daemon.policy import AccessPolicy
from daemon.policy_rules import load_policy_dir
from daemon.store import Store
from daemon.supervision import retrying

log = logging.getLogger(__name__)
_DEBOUNCE_MS = 150  # editors write a file in several steps; wait for them to finish, well within a second


class PolicyWatcher:
    def __init__(
        self,
        access: AccessPolicy,
        store: Store,
        directory: Path,
        config_file: Path | None,
        hub: ChangeHub | None = None,
    ) -> None:
        self._hub = hub or ChangeHub()
        self._access = access
        self._store = store
        self.directory = directory
        self._config_file = config_file
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Release the watcher thread now (cancellation alone waits for it to time out, up to a second)."""
        self._stop.set()

    async def reload(self, *, publish: bool = True) -> bool:
        """Load every policy file; install them all or none. True if they were installed. `publish` records
        the outcome for `memos status` (the daemon does; a CLI command reading the files does not)."""
        try:
            rules, cube_rules, files = load_policy_dir(self.directory)
        except ConfigError as exc:
            self._access.reject(str(exc))
            log.error("policy files rejected, the last good policy stays in force: %s", exc)
            if publish:
                await retrying("recording the policy status", self._publish)
            return False
        self._access.install(rules, files, str(self.directory), cube_rules)
        self._hub.publish(CubesChanged())
        if publish:
            log.info("policy loaded: %d rules from %d files in %s", len(rules), len(files), self.directory)
            await retrying("recording the policy status", self._publish)
        return True

    async def _publish(self) -> None:
        state = msgspec.json.encode(self._access.state).decode()
        async with self._store.write() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('policy_status', ?)", (state,)
            )

    def _configured_directory(self) -> Path | None:
        if self._config_file is None:
            return None
        try:
            return load_config(self._config_file).policy_dir
        except ConfigError as exc:
            log.error("configuration change ignored: %s", exc)
            return None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        await self.reload()
        task_status.started()
        while not self._stop.is_set():
            watched = [self.directory] + ([self._config_file] if self._config_file else [])
            async for changes in awatch(
                *watched, debounce=_DEBOUNCE_MS, step=50, rust_timeout=1000, stop_event=self._stop
            ):
                changed = {Path(path) for _, path in changes}
                if self._config_file in changed:
                    directory = self._configured_directory()
                    if directory is not None and directory != self.directory:
                        log.info("policy directory moved to %s", directory)
                        self.directory = directory
                        self.directory.mkdir(parents=True, exist_ok=True)
                        await self.reload()
                        break  # watch the new directory
                if any(path.suffix == ".toml" and path.parent == self.directory for path in changed):
                    await self.reload()
