"""A plain-HTTP client for the dashboard, as a browser without JavaScript would use it."""

from __future__ import annotations

import re
from typing import Any

import httpx2

from tests.conftest import RunningDaemon

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class UiClient:
    def __init__(self, port: int, origin: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        headers = {"Origin": origin or self.base}
        self.http = httpx2.Client(base_url=self.base, follow_redirects=False, headers=headers, timeout=30)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> UiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sign_in(self, token: str) -> httpx2.Response:
        form = self.http.get("/ui/sign-in")
        return self.http.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "token": token})

    def get(self, path: str, **params: Any) -> httpx2.Response:
        # Without params, keep the path's own query string (httpx would replace it with an empty one).
        return self.http.get(path, params=params or None)

    def post(self, path: str, data: dict[str, str], *, csrf_from: str = "/ui/cubes") -> httpx2.Response:
        """POST a form with the CSRF token of the session (read from a page, as a browser's form carries)."""
        return self.http.post(path, data={"csrf": csrf_of(self.http.get(csrf_from).text), **data})

    def add(self, cube: str, content: str, **fields: str) -> str:
        response = self.post(f"/ui/cubes/{cube}/memories", {"content": content, **fields})
        assert response.status_code == 303, response.text
        return response.headers["location"].rsplit("/", 1)[1]


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


def staff_agent(daemon: RunningDaemon, name: str) -> str:
    """An agent in the daemon's `staff` group, as a team's owner sets agents up so they can name one
    another (share, hand off); returns its token."""
    token = daemon.add_agent(name)
    if "staff" not in daemon.memos("group", "list").stdout:
        daemon.memos("group", "add", "staff")
    daemon.memos("group", "add-member", "staff", name)
    return token
