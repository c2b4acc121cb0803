"""One-time links that sign the machine's owner into the dashboard's admin view (`memos ui`).

Whoever can run `memos` on the database can read all of it already; the link carries that standing into a
browser. Only the secret's SHA-256 is stored (in `meta`, key `ui_link:<hash>`, value its expiry), the secret is
shown once, and redeeming it deletes it in the same transaction, so a link works once and for ten minutes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from daemon.store import Store
from daemon.timeutil import format_time, now_iso

LINK_TTL = timedelta(minutes=10)
_KEY = "ui_link:"


def _key(secret: str) -> str:
    return _KEY + hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SignInLinks:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def issue(self) -> str:
        """A new one-time secret; expired ones are forgotten."""
        secret = secrets.token_urlsafe(32)
        expires = format_time(datetime.now(timezone.utc) + LINK_TTL)
        async with self._store.write() as conn:
            await conn.execute("DELETE FROM meta WHERE key LIKE 'ui_link:%' AND value <= ?", (now_iso(),))
            await conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_key(secret), expires))
        return secret

    async def redeem(self, secret: str) -> bool:
        """Whether the secret was issued and has not expired; either way it cannot be used again."""
        if not secret or len(secret) > 200:
            return False
        async with self._store.write() as conn:
            expires = await conn.value("SELECT value FROM meta WHERE key = ?", (_key(secret),))
            if expires is None:
                return False
            await conn.execute("DELETE FROM meta WHERE key = ?", (_key(secret),))
        return bool(expires > now_iso())
