"""Request checks for the dashboard: Host and Origin as the MCP endpoint checks them, and CSRF tokens.

On a loopback address the SDK refuses a Host other than 127.0.0.1, localhost or [::1] (421: DNS rebinding)
and an Origin other than http:// on those hosts (403); the dashboard applies the same lists. Bound to another
address, the SDK checks nothing; the dashboard still refuses an Origin that is not its own Host, because its
cookie would otherwise ride on another site's request. Every POST must also carry the session's CSRF token.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _matches(value: str, bases: tuple[str, ...]) -> bool:
    return any(value == base or value.startswith(base + ":") for base in bases)


def refuse_cross_site(request: Request, bind_host: str) -> Response | None:
    """421 for a foreign Host, 403 for a foreign Origin; None when the request may go on."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if bind_host in LOOPBACK:
        if not _matches(host, _HOSTS):
            return PlainTextResponse("Invalid Host header", status_code=421)
        if origin and not _matches(origin, tuple(f"http://{h}" for h in _HOSTS)):
            return PlainTextResponse("Invalid Origin header", status_code=403)
    elif origin and origin not in (f"http://{host}", f"https://{host}"):
        return PlainTextResponse("Invalid Origin header", status_code=403)
    return None


def csrf_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())
