"""Hot reload of the policy files: a change takes effect within a second, without a restart.

Each file stands on its own, and a broken one fails safe: a file that fails to parse or validate grants
nothing (none of its allow rules are in force, old or new), while its deny rules and `[[cube]]` settings from
its last good version stay until it is fixed or removed (a file never valid contributes nothing), and every
valid file applies as written. So removing a granting rule always takes effect, breaking a file can only
take access away, and a deny cannot be lifted by a typo (a broken file cannot say which of its denies its
author meant to drop). The last good version of
each file is kept in the database (`meta.policy_last_good`), so the same holds after a restart; what is in
force and what was rejected is logged with file and line and kept in `meta.policy_status` for `memos status`.
The configuration file is watched too, so changing `[policies] dir` moves the watch to the new directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskStatus
from watchfiles import awatch

from daemon.config import load_config
from daemon.cube_settings import CubeRule
from daemon.errors import ConfigError
from daemon.events import ChangeHub, CubesChanged
from daemon.policy import AccessPolicy, RejectedFile
from daemon.policy_rules import SourcedRule, load_policy_files
from daemon.store import Store
from daemon.supervision import retrying

log = logging.getLogger(__name__)
_DEBOUNCE_MS = 150  # editors write a file in several steps; wait for them to finish, well within a second


class LastGood(msgspec.Struct, kw_only=True):
    """What of a file's last good version outlives its breaking: its deny rules and its cube settings."""

    deny: list[SourcedRule] = msgspec.field(default_factory=list)
    cube: list[CubeRule] = msgspec.field(default_factory=list)


_decode_last_good = msgspec.json.Decoder(dict[str, LastGood]).decode


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
        self._last_good: dict[str, LastGood] | None = None  # file path -> what its last good version kept

    def stop(self) -> None:
        """Release the watcher thread now (cancellation alone waits for it to time out, up to a second)."""
        self._stop.set()

    async def reload(self, *, publish: bool = True) -> bool:
        """Read every policy file and put what is in force (see the module docstring) in place. True if no
        file was rejected. `publish` records the outcome and the files' last good versions for `memos
        status` and later starts (the daemon does; a CLI command reading the files does not)."""
        first = self._last_good is None
        if self._last_good is None:
            self._last_good = await self._stored_last_good()
        rules: list[SourcedRule] = []
        cube_rules: list[CubeRule] = []
        rejected: list[RejectedFile] = []
        last_good: dict[str, LastGood] = {}
        loads = load_policy_files(self.directory)
        for load in loads:
            if load.error is None:
                rules += load.rules
                cube_rules += load.cube_rules
                denies = [r for r in load.rules if r.rule.effect == "deny"]
                last_good[str(self.directory / load.name)] = LastGood(deny=denies, cube=load.cube_rules)
                continue
            key = str(self.directory / load.name)
            kept = last_good[key] = self._last_good.get(key, LastGood())
            rules += [SourcedRule(r.rule, f"{r.source} (kept: the file is rejected)") for r in kept.deny]
            cube_rules += kept.cube
            rejected.append(
                RejectedFile(
                    file=load.name, error=load.error, kept_deny_rules=len(kept.deny),
                    kept_cube_settings=len(kept.cube),
                )
            )  # fmt: skip
            log.error(
                "policy file %s rejected, so it grants nothing: none of its allow rules are in force; %d deny"
                " rules and %d [[cube]] settings of its last good version stay until it is fixed or removed: %s",
                load.name, len(kept.deny), len(kept.cube), load.error,
            )  # fmt: skip
        self._last_good = last_good
        changed = (self._access.rules, self._access.cube_rules) != (tuple(rules), tuple(cube_rules))
        self._access.install(rules, [load.name for load in loads], str(self.directory), cube_rules, rejected)
        # A comment edited changes nothing, so no rebuild of every open context pack for it; nor at start,
        # where packs are filtered on every read and an agent's are rebuilt as it connects.
        if changed and not first:
            self._hub.publish(CubesChanged())
        if publish:
            log.info(
                "policy in force: %d rules from %d files in %s%s", len(rules), len(loads) - len(rejected),
                self.directory, f" ({len(rejected)} rejected files grant nothing)" if rejected else "",
            )  # fmt: skip
            await retrying("recording the policy status", self._publish)
        return not rejected

    async def _stored_last_good(self) -> dict[str, LastGood]:
        async with self._store.read() as conn:
            row = await conn.row("SELECT value FROM meta WHERE key = 'policy_last_good'")
        return _decode_last_good(row["value"]) if row else {}

    async def _publish(self) -> None:
        state = msgspec.json.encode(self._access.state).decode()
        last_good = msgspec.json.encode(self._last_good or {}).decode()
        async with self._store.write() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('policy_status', ?)", (state,)
            )
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('policy_last_good', ?)", (last_good,)
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
