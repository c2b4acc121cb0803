"""The dashboard at /ui: server-rendered pages over the same service API the MCP tools call.

It lives under `mcp_server/` because it is another edge of the same kind: it authenticates a caller as an
agent, calls one service, shapes the result (HTML instead of JSON) and holds no SQL or policy of its own. It is
served by the same ASGI app and port as the MCP endpoint, so it shares its Host checks and its lifetime.
"""

from __future__ import annotations

import secrets
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daemon import Services, Unauthenticated
from mcp_server.ui.edits import Edits
from mcp_server.ui.guard import csrf_ok
from mcp_server.ui.live import UiLive
from mcp_server.ui.pages import Pages
from mcp_server.ui.sessions import COOKIE, UiSession, UiSessions
from mcp_server.ui.web import PREFIX, UiContext

__all__ = ["PREFIX", "Dashboard", "build_dashboard"]
_PRE_COOKIE = "memos_ui_signin"  # the sign-in form's CSRF token, before there is a session


class Dashboard:
    """The dashboard's routes (to mount at PREFIX) and its live-update streams (stopped with the server)."""

    def __init__(self, services: Services) -> None:
        self.sessions = UiSessions(services.identities, services.config.ui.session_idle_minutes * 60)
        self.ui = UiContext(services, self.sessions)
        self.live = UiLive(services, self.sessions)
        pages, edits, route = Pages(self.ui), Edits(self.ui), self.ui.route
        self.routes = [
            Route("/", route(self._home, signed_in=False)),
            Route("/sign-in", route(self._sign_in_form, signed_in=False), methods=["GET"]),
            Route("/sign-in", route(self._sign_in, signed_in=False), methods=["POST"]),
            Route("/sign-out", route(self._sign_out, admin=None), methods=["POST"]),
            Route("/cubes", route(pages.cubes)),
            Route("/cubes/{cube}", route(pages.cube)),
            Route("/cubes/{cube}/memories", route(edits.add), methods=["POST"]),
            Route("/cubes/{cube}/share", route(edits.share), methods=["POST"]),
            Route("/cubes/{cube}/unshare", route(edits.unshare), methods=["POST"]),
            Route("/memories/{id}", route(pages.memory)),
            Route("/memories/{id}/edit", route(edits.edit), methods=["POST"]),
            Route("/memories/{id}/supersede", route(edits.supersede), methods=["POST"]),
            Route("/memories/{id}/delete", route(edits.delete), methods=["POST"]),
            Route("/memories/{id}/restore", route(edits.restore), methods=["POST"]),
            Route("/search", route(pages.search)),
            Route("/tasks", route(pages.tasks)),
            Route("/tasks/{id}", route(pages.task)),
            Route("/audit", route(pages.audit)),
            Route("/health", route(pages.health)),
            Route("/events", route(self.live.events)),
            Route("/admin", route(pages.admin, admin=True)),
            Route("/admin/sign-in", route(self._admin_form, signed_in=False), methods=["GET"]),
            Route("/admin/sign-in", route(self._admin_sign_in, signed_in=False), methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(files("mcp_server.ui") / "static")), name="static"),
        ]

    def mount(self) -> Mount:
        return Mount(PREFIX, routes=self.routes)

    async def _home(self, request: Request, session: UiSession | None) -> Response:
        where = "/sign-in" if session is None else "/admin" if session.admin else "/cubes"
        return RedirectResponse(PREFIX + where, status_code=303)

    async def _admin_form(
        self, request: Request, session: UiSession | None, error: str | None = None, status: int = 200
    ) -> Response:
        """The page a `memos ui` link opens: a button, so that merely fetching the link uses nothing up."""
        pre = secrets.token_urlsafe(32)
        secret = request.query_params.get("secret", "")
        response = self.ui.render(
            request, "admin_sign_in.html", None, status, pre=pre, secret=secret, error=error
        )
        response.set_cookie(_PRE_COOKIE, pre, httponly=True, samesite="strict", path=PREFIX)
        return response

    async def _admin_sign_in(self, request: Request, session: UiSession | None) -> Response:
        form = await request.form()
        pre = request.cookies.get(_PRE_COOKIE)
        if not pre or not csrf_ok(pre, form.get("csrf")):
            return await self._admin_form(
                request, None, "The sign-in form expired; open the link again.", 403
            )
        secret = form.get("secret")
        if not isinstance(secret, str) or not await self.ui.services.sign_in_links.redeem(secret):
            return await self._admin_form(
                request, None,
                "This link is not valid: each works once and for ten minutes. Run `memos ui` for a new one.",
                401,
            )  # fmt: skip
        return self._start(self.sessions.sign_in_admin(), session, "/admin")

    def _start(self, new: UiSession, old: UiSession | None, where: str) -> Response:
        if old is not None:
            self.sessions.sign_out(old.id)
        response = RedirectResponse(PREFIX + where, status_code=303)
        response.set_cookie(COOKIE, new.id, httponly=True, samesite="strict", path=PREFIX)
        response.delete_cookie(_PRE_COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    async def _sign_in_form(
        self, request: Request, session: UiSession | None, error: str | None = None, status: int = 200
    ) -> Response:
        pre = secrets.token_urlsafe(32)
        response = self.ui.render(request, "sign_in.html", None, status, pre=pre, error=error)
        response.set_cookie(_PRE_COOKIE, pre, httponly=True, samesite="strict", path=PREFIX)
        return response

    async def _sign_in(self, request: Request, session: UiSession | None) -> Response:
        form = await request.form()
        if not csrf_ok(request.cookies.get(_PRE_COOKIE, ""), form.get("csrf")) or not request.cookies.get(
            _PRE_COOKIE
        ):
            return await self._sign_in_form(request, None, "The sign-in form expired; try again.", 403)
        token = form.get("token")
        try:
            if not isinstance(token, str) or not token.strip():
                raise Unauthenticated("no token given")
            new = await self.sessions.sign_in(token)
        except Unauthenticated:
            return await self._sign_in_form(
                request, None,
                "That token is not valid: it is unknown, was rotated, or its agent is disabled."
                " `memos agent add NAME` or `memos agent rotate-token NAME` prints one.",
                401,
            )  # fmt: skip
        return self._start(new, session, "/cubes")

    async def _sign_out(self, request: Request, session: UiSession) -> Response:
        self.sessions.sign_out(session.id)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response


def build_dashboard(services: Services) -> Dashboard:
    return Dashboard(services)
