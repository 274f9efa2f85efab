"""Who may read the dashboard: the API's tokens and `read` scope, from a header or a session cookie.

With `api.auth.enabled` false (the embedded default) everyone may. Otherwise a request passes with
`Authorization: Bearer <token>` (checked by the API's own `authenticate`) or with the session
cookie the login form sets. Browsers cannot send a bearer header when following a link, hence the
cookie. It does not hold the token: it holds the token's name, when it was issued, and an HMAC of
both keyed with the token itself, so a leaked cookie is not an API token, it expires after
`SESSION_S`, and removing the token from config ends every session made with it. The cookie is
HttpOnly (no script reads it), SameSite=Strict (no other site sends it) and Secure over https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlsplit

from starlette.requests import Request

from orchestrator.api.auth import ANONYMOUS, Principal, authenticate
from orchestrator.api.deps import get_settings
from orchestrator.api.errors import ApiError
from services.domain.settings import AuthSettings

COOKIE = "flywheel_dashboard"
SESSION_S = 12 * 3600
SCOPE = "read"


def _mac(secret: str, name_b64: str, issued: int) -> str:
    message = f"flywheel-dashboard-session|{name_b64}|{issued}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def principal_for_token(settings: AuthSettings, token: str) -> Principal | None:
    """The token's principal, checked by the API's `authenticate` (same list, constant-time compare)."""
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": [(b"authorization", b"Bearer " + token.encode("utf-8", "replace"))]}
    try:
        return authenticate(settings, Request(scope))
    except ApiError:
        return None


def session_cookie(token: str, principal: Principal, *, now: float | None = None) -> str:
    """A cookie value for a principal that logged in with `token` (already verified)."""
    issued = int(now if now is not None else time.time())
    name_b64 = base64.urlsafe_b64encode(principal.name.encode()).decode().rstrip("=")
    return f"{name_b64}.{issued}.{_mac(token.strip(), name_b64, issued)}"


def principal_for_cookie(settings: AuthSettings, value: str, *, now: float | None = None) -> Principal | None:
    """The principal of a valid, unexpired session cookie; None otherwise."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    name_b64, issued_text, mac = parts
    issued = int(issued_text)
    current = now if now is not None else time.time()
    if not current - SESSION_S <= issued <= current + 60:
        return None
    try:
        name = base64.urlsafe_b64decode(name_b64 + "=" * (-len(name_b64) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    for entry in settings.tokens:
        expected = _mac(entry.token.get_secret_value(), name_b64, issued)
        if entry.name == name and hmac.compare_digest(expected.encode(), mac.encode()):
            return Principal(entry.name, frozenset(entry.scopes), entry.client_id)
    return None


def viewer(request: Request) -> Principal | None:
    """The reader of this request, or None when the dashboard must ask them to log in."""
    settings: AuthSettings = get_settings(request).api.auth
    if not settings.enabled:
        return ANONYMOUS
    principal = None
    if request.headers.get("authorization"):
        try:
            principal = authenticate(settings, request)
        except ApiError:
            return None
    elif cookie := request.cookies.get(COOKIE):
        principal = principal_for_cookie(settings, cookie)
    return principal if principal is not None and SCOPE in principal.scopes else None


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def safe_next(target: str | None) -> str:
    """Where to go after login: a path under /dashboard on this site, never another site."""
    if not target:
        return "/dashboard"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or not (parts.path == "/dashboard"
                                                               or parts.path.startswith("/dashboard/")):
        return "/dashboard"
    return target


def same_origin(request: Request) -> bool:
    """A form post from this site, or from a client that is not a browser (curl sends neither header).

    Browsers say where a request comes from with Sec-Fetch-Site (modern ones) or Origin; "null" (an
    opaque origin: a sandboxed frame, a data: URL) is not this site.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")
