"""Cube settings as they apply: defaults, then the policy files' `[[cube]]` tables, then `cube_configure`."""

from __future__ import annotations

import msgspec

from daemon.audit import Audit
from daemon.cube_settings import DEFAULTS, CubeSettings, check_settings, effective
from daemon.idempotency import Recorder
from daemon.models import Agent
from daemon.policy import AccessPolicy, CubeRef
from daemon.store import Connection, Store
from daemon.validation import check_cube_ref

_decode = msgspec.json.Decoder(CubeSettings).decode


class ConfiguredCube(msgspec.Struct, kw_only=True):
    cube: str
    settings: CubeSettings  # what applies now
    stored: CubeSettings  # what cube_configure set (beats the policy files)


class CubeSettingsStore:
    def __init__(self, store: Store, access: AccessPolicy, *, redact_secrets: bool = False) -> None:
        self._store = store
        self._access = access
        # memos.toml's [redaction] enabled is the default a cube's own settings override.
        self._defaults = msgspec.structs.replace(DEFAULTS, redact_secrets=redact_secrets)

    @staticmethod
    async def stored(conn: Connection, cube_id: int) -> CubeSettings:
        row = await conn.row("SELECT settings FROM cubes WHERE id = ?", (cube_id,))
        return _decode(row["settings"]) if row else CubeSettings()

    async def effective(self, ref: CubeRef, conn: Connection | None = None) -> CubeSettings:
        if conn is None:
            async with self._store.read() as reader:
                stored = await self.stored(reader, ref.id)
        else:
            stored = await self.stored(conn, ref.id)
        return effective(ref.name, self._access.cube_rules, stored, self._defaults)

    async def effective_named(self, conn: Connection, cube: str) -> CubeSettings:
        """The settings of a cube by name, for one that may not exist yet (an import creates cubes)."""
        row = await conn.row("SELECT settings FROM cubes WHERE name = ?", (cube,))
        stored = _decode(row["settings"]) if row else CubeSettings()
        return effective(cube, self._access.cube_rules, stored, self._defaults)

    async def configure(
        self, agent: Agent, cube: str, changes: CubeSettings, *, recorder: Recorder | None = None
    ) -> ConfiguredCube:
        """Store the given settings (admin only); fields not given keep their stored value."""
        check_cube_ref(cube)
        check_settings(changes)
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, cube, "admin", "cube_configure")
            current = msgspec.structs.asdict(await self.stored(conn, ref.id))
            current.update({k: v for k, v in msgspec.structs.asdict(changes).items() if v is not None})
            stored = msgspec.convert(current, CubeSettings)
            await conn.execute(
                "UPDATE cubes SET settings = ? WHERE id = ?", (msgspec.json.encode(stored).decode(), ref.id)
            )
            await Audit.record(
                conn, agent.name, "cube_configure", ref.name, None, msgspec.json.encode(changes).decode()
            )
            result = ConfiguredCube(
                cube=ref.name,
                settings=effective(ref.name, self._access.cube_rules, stored, self._defaults),
                stored=stored,
            )
            if recorder is not None:
                await recorder.record(conn, result)
        return result

    async def describe(self, agent: Agent, cube: str) -> ConfiguredCube:
        check_cube_ref(cube)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, cube, "read", "cube_settings")
            stored = await self.stored(conn, ref.id)
        return ConfiguredCube(
            cube=ref.name,
            settings=effective(ref.name, self._access.cube_rules, stored, self._defaults),
            stored=stored,
        )
