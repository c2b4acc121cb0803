"""The dashboard's plumbing: templates, the signed-in agent of a request, and one wrapper for every route.

Every route goes through `UiContext.route`: it checks Host and Origin, finds the session (a rotated token or
a disabled agent has none), checks the CSRF token of a POST, turns our errors into a page with the right
status (another agent's memory is a 404 worded like a missing one, because the service says so), and reports
its server time in a `Server-Timing` header (bench/ui.py reads it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from daemon import (
    Conflict,
    InvalidInput,
    MemosError,
    NotFound,
    Overloaded,
    PermissionDenied,
    Services,
    Unavailable,
)
from mcp_server.ui import charts
from mcp_server.ui.guard import csrf_ok, refuse_cross_site
from mcp_server.ui.sessions import COOKIE, UiSession, UiSessions

log = logging.getLogger(__name__)
PREFIX = "/ui"
_STATUS: list[tuple[type[MemosError], int]] = [
    (NotFound, 404),
    (PermissionDenied, 403),
    (InvalidInput, 400),
    (Conflict, 409),
    (Overloaded, 503),
    (Unavailable, 503),
]

Handler = Callable[[Request, UiSession], Awaitable[Response]]


def status_of(exc: MemosError) -> int:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mcp_server.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        prefix=PREFIX, signal_bars=charts.signal_bars, day_chart=charts.day_chart,
        latency_chart=charts.latency_chart, queue_chart=charts.queue_chart,
    )  # fmt: skip
    env.filters["when"] = lambda iso: (iso or "")[:19].replace("T", " ")
    return env


@dataclass
class UiContext:
    services: Services
    sessions: UiSessions

    def __post_init__(self) -> None:
        self.templates = _environment()

    def render(
        self, request: Request, template: str, session: UiSession | None, status: int = 200, **values: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            request=request, session=session, path=request.url.path, **values
        )
        return HTMLResponse(html, status_code=status)

    def route(
        self, handler: Handler, *, signed_in: bool = True, admin: bool | None = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """The ASGI endpoint for a handler, with every check the dashboard makes. Agents' pages refuse the
        owner's admin session and admin pages (admin=True) refuse agents' sessions; admin=None takes both."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            response = await self._checked(request, handler, signed_in, admin)
            parts = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            if "Server-Timing" in response.headers:  # a page's own parts (search: the service call's time)
                parts += ", " + response.headers["Server-Timing"]
            response.headers["Server-Timing"] = parts
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
            )
            return response

        return endpoint

    async def _checked(
        self, request: Request, handler: Handler, signed_in: bool, admin: bool | None
    ) -> Response:
        refused = refuse_cross_site(request, self.services.config.server.host)
        if refused is not None:
            return refused
        session = await self.sessions.resolve(request.cookies.get(COOKIE))
        if session is None and signed_in:
            if request.method == "GET" and request.headers.get("accept", "").startswith("text/event-stream"):
                return Response("sign in again", status_code=401)
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        if signed_in and session is not None and admin is not None and session.admin != admin:
            if admin:
                return self.render(
                    request, "error.html", session, 404,
                    message="The admin view opens with the one-time link `memos ui` prints on the daemon's machine.",
                )  # fmt: skip
            return RedirectResponse(f"{PREFIX}/admin", status_code=303)
        if request.method == "POST" and session is not None and signed_in:  # sign-in has its own token
            form = await request.form()
            if not csrf_ok(session.csrf, form.get("csrf")):
                return self.render(
                    request, "error.html", session, 403,
                    message="This form has expired or did not come from this dashboard; reload the page and try again.",
                )  # fmt: skip
        try:
            return await handler(request, session)  # type: ignore[arg-type]
        except MemosError as exc:
            return self.render(request, "error.html", session, status_of(exc), message=str(exc))
