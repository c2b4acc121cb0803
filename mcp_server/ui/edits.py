"""The dashboard's edits: the same service calls as the tools (so the same checks and the same audit
records), then a redirect to the page that shows the result."""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon import InvalidInput, MemoryChanges
from mcp_server.arguments import new_memory
from mcp_server.ui.sessions import UiSession
from mcp_server.ui.web import PREFIX, UiContext


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: expected text, got a file")
    return value.strip()


def _tags(form: FormData) -> list[str] | None:
    raw = _text(form, "tags")
    return None if raw is None else [t.strip() for t in raw.split(",") if t.strip()]


def _to(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


class Edits:
    def __init__(self, ui: UiContext) -> None:
        self.services = ui.services

    async def add(self, request: Request, session: UiSession) -> Response:
        form, cube = await request.form(), request.path_params["cube"]
        item = new_memory(
            _text(form, "content") or "", _text(form, "kind"), _tags(form), None, None, None, None, None
        )
        added = await self.services.additions.add(session.acting, cube, item)
        return _to(f"/memories/{added.id}")

    async def edit(self, request: Request, session: UiSession) -> Response:
        form, memory_id = await request.form(), request.path_params["id"]
        version = _text(form, "version")
        if version is not None and not version.isdigit():
            raise InvalidInput(f"version: {version!r} is not a version number")
        changes = MemoryChanges(
            content=_text(form, "content"), kind=_text(form, "kind") or None, tags=_tags(form),  # type: ignore[arg-type]
        )  # fmt: skip
        await self.services.memories.update(
            session.acting, memory_id, changes, int(version) if version else None
        )
        return _to(f"/memories/{memory_id}")

    async def supersede(self, request: Request, session: UiSession) -> Response:
        """As memory_supersede: the new memory keeps the old one's cube, kind, tags and metadata."""
        form, memory_id = await request.form(), request.path_params["id"]
        old = await self.services.memories.get(session.acting, memory_id)
        item = new_memory(
            _text(form, "content") or "", old.kind, old.tags, old.metadata, None, old.importance, None,
            old.task_id,
        )  # fmt: skip
        added = await self.services.additions.add(session.acting, old.cube, item, supersedes=[memory_id])
        return _to(f"/memories/{added.id}")

    async def delete(self, request: Request, session: UiSession) -> Response:
        memory_id = request.path_params["id"]
        await self.services.memories.delete(session.acting, memory_id)
        return _to(f"/memories/{memory_id}")

    async def restore(self, request: Request, session: UiSession) -> Response:
        memory_id = request.path_params["id"]
        await self.services.memories.restore(session.acting, memory_id)
        return _to(f"/memories/{memory_id}")

    async def share(self, request: Request, session: UiSession) -> Response:
        form, cube = await request.form(), request.path_params["cube"]
        grantee, permission = _text(form, "grantee") or "", _text(form, "permission") or "read"
        await self.services.cubes.share(session.acting, cube, grantee, permission)
        return _to(f"/cubes/{quote(cube)}")

    async def unshare(self, request: Request, session: UiSession) -> Response:
        form, cube = await request.form(), request.path_params["cube"]
        await self.services.cubes.unshare(
            session.acting, cube, _text(form, "grantee") or "", _text(form, "permission") or None
        )
        return _to(f"/cubes/{quote(cube)}")
