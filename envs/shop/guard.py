"""The shop server's own trust boundary: harness-only routes and unforgeable session cookies.

>>> signer = CookieSigner("grader-secret")
>>> value = signer.sign("abcdefghijklmnopqrstuvwx")
>>> signer.verify(value)
'abcdefghijklmnopqrstuvwx'
>>> signer.verify("abcdefghijklmnopqrstuvwx.forged") is None
True

Two rules, enforced by the server whatever the environment's browser-side guard does:

* A request whose path, in any spelling (:func:`~.paths.is_internal`: percent-encoded,
  double-encoded, mixed case, ``..``, backslashes), reaches a harness-only route gets
  403 unless it carries the grader secret header, which only the environment process
  has. The one exception is ``/session/join``, which instead needs a single-use join
  token that only the harness can obtain.
* The session cookie is ``<sid>.<MAC>``, signed with a key derived from the secret: a
  browser cannot present a session id it was not given, so knowing (or guessing) an id
  gives no access to that session's cart, orders or instruction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from rowgym.envs.shop.paths import canonical_path, is_internal
from rowgym.envs.shop.secret import HEADER

#: The only harness route a browser may call without the secret (it needs a single-use token instead).
JOIN_PATH = "/session/join"
_SID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_HEADER_KEY = HEADER.lower().encode("latin-1")


def secret_matches(expected: str, given: str | bytes | None) -> bool:
    """Constant-time comparison; an empty configured secret never matches."""
    if not expected or not given:
        return False
    given_b = given if isinstance(given, bytes) else given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given_b, expected.encode())


class CookieSigner:
    """Signs and checks session cookies (``<sid>.<MAC>``).

    Args:
        secret: The grader secret; the MAC key is derived from it, so a restarted server with the
            same secret accepts the cookies it issued before. Empty: a random per-process key.
    """

    def __init__(self, secret: str):
        seed = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"rowgym-shop-session-cookie-v1", hashlib.sha256).digest()

    def _mac(self, sid: str) -> str:
        digest = hmac.new(self._key, sid.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, sid: str) -> str:
        """The cookie value for ``sid``."""
        return f"{sid}.{self._mac(sid)}"

    def verify(self, value: str | None) -> str | None:
        """The session id of a cookie this server signed, else None."""
        if not value or len(value) > 200 or "." not in value:
            return None
        sid, mac = value.rsplit(".", 1)
        if not _SID.match(sid) or not hmac.compare_digest(mac.encode(), self._mac(sid).encode()):
            return None
        return sid


def request_is_internal(scope: dict) -> bool:
    """Whether an ASGI request reaches a harness-only route (checked on the raw and the decoded path)."""
    raw = scope.get("raw_path") or b""
    return is_internal(scope.get("path", "")) or is_internal(raw.decode("latin-1"))


def is_join(scope: dict) -> bool:
    """Whether the request is for the join route (every spelling of it)."""
    try:
        return canonical_path(scope.get("path", "")) == JOIN_PATH
    except ValueError:
        return False


class InternalRouteGuard:
    """ASGI middleware: 403 for a harness-only route without the grader secret (see module docstring)."""

    def __init__(self, app, secret: str):
        self.app, self.secret = app, secret

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and request_is_internal(scope) and not is_join(scope):
            given = next((v for k, v in scope.get("headers", []) if k == _HEADER_KEY), None)
            if not secret_matches(self.secret, given):
                body = b'{"detail":"not found"}'
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
