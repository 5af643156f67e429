"""
Who may use the app: the token, the dashboard's session cookie and its CSRF token.

With a token, every route but ``/login`` and ``/health`` needs either the
header ``Authorization: Bearer <token>`` or the session cookie that the sign-in
form at ``/login`` sets (HttpOnly, SameSite=Strict, Secure over HTTPS). A
request that changes something (any method but GET, HEAD, OPTIONS) and
authenticates with the cookie must also carry the CSRF token: in the
``X-CSRF-Token`` header, or as the ``csrf`` field of a small URL-encoded form
(what the dashboard's buttons send). A request without valid credentials is
redirected to ``/login`` if it is a page load that accepts HTML, and answered
401 JSON otherwise.

Nothing is stored on the server: the cookie holds its expiry and an HMAC of it
keyed by the token, and the CSRF token is an HMAC of the cookie. Changing the
token signs everyone out.

With or without a token, a request that changes something and carries an
``Origin`` header naming another host is refused (403): a page on another site
cannot make a browser push or cancel jobs on a server bound to localhost. Every
answer carries ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import typing
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._http_base import Settings, problem_response, root_path, route_path
from ._http_html import bare_page, esc

COOKIE = "fsjobs_session"
CSRF_HEADER = "x-csrf-token"
#: routes that need no credentials
OPEN_PATHS = frozenset({"/login", "/health"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the largest URL-encoded form whose ``csrf`` field the middleware reads
MAX_FORM = 64 * 1024


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def new_session(token: str, seconds: int, now: float | None = None) -> str:
    """A session cookie's value: ``v1.<expires>.<hmac>``."""
    expires = int((time.time() if now is None else now) + seconds)
    return f"v1.{expires}.{_mac(token, f'session:{expires}')}"


def session_valid(token: str, value: str | None, now: float | None = None) -> bool:
    if not value:
        return False
    version, _, rest = value.partition(".")
    expires, _, mac = rest.partition(".")
    if version != "v1" or not expires.isdigit():
        return False
    if not hmac.compare_digest(mac, _mac(token, f"session:{expires}")):
        return False
    return int(expires) > (time.time() if now is None else now)


def csrf_token(token: str, session: str) -> str:
    """The CSRF token that goes with a session cookie."""
    return _mac(token, f"csrf:{session}")


def request_csrf(settings: Settings, request: Request) -> str | None:
    """The CSRF token the pages of this request must carry; None when there is no token."""
    if settings.token is None:
        return None
    session = request.cookies.get(COOKIE)
    if not session or not session_valid(settings.token, session):
        return None
    return csrf_token(settings.token, session)


def signed_in_by_cookie(settings: Settings, request: Request) -> bool:
    return settings.token is not None and session_valid(settings.token, request.cookies.get(COOKIE))


class AuthMiddleware:
    """Checks every HTTP request before the routes see it (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _nosniff(send)
        request = Request(scope)
        unsafe = request.method not in SAFE_METHODS
        if unsafe and not _same_origin(request):
            response: Response = problem_response(
                403, "forbidden", "a request from another site may not change anything"
            )
            await response(scope, receive, send)
            return
        token = self.settings.token
        if token is None or route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        bearer = _bearer(request)
        if bearer is not None:
            if hmac.compare_digest(bearer.encode(), token.encode()):
                await self.app(scope, receive, send)
                return
            await _unauthorized(request, "wrong token")(scope, receive, send)
            return
        session = request.cookies.get(COOKIE)
        if not session_valid(token, session):
            await _unauthorized(request, "sign in, or send Authorization: Bearer <token>")(
                scope, receive, send
            )
            return
        assert session is not None
        if not unsafe:
            await self.app(scope, receive, send)
            return
        expected = csrf_token(token, session)
        given = request.headers.get(CSRF_HEADER)
        replay: Receive = receive
        if given is None and _is_small_form(request):
            body = await _read_all(receive)
            if body is None:
                await problem_response(413, "too_large", "form too large")(scope, receive, send)
                return
            fields = urllib.parse.parse_qs(body.decode("latin-1"), keep_blank_values=True)
            given = fields["csrf"][0] if fields.get("csrf") else None
            replay = _replaying(body)
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            response = problem_response(
                403, "csrf", "missing or wrong CSRF token (X-CSRF-Token header or csrf field)"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay, send)


def _nosniff(send: Send) -> Send:
    """Every answer says ``X-Content-Type-Options: nosniff``: JSON is never taken for HTML."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                headers.append((b"x-content-type-options", b"nosniff"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _same_origin(request: Request) -> bool:
    """No Origin header (not a browser's cross-site request), or one naming this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host", "")


def _unauthorized(request: Request, message: str) -> Response:
    wants_page = request.method in ("GET", "HEAD") and "text/html" in request.headers.get(
        "accept", ""
    )
    if wants_page:
        target = route_path(request.scope)
        if request.url.query:
            target += "?" + request.url.query
        next_q = urllib.parse.urlencode({"next": target})
        return RedirectResponse(f"{root_path(request)}/login?{next_q}", 303)
    return problem_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _is_small_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "")
    return (
        kind == "application/x-www-form-urlencoded"
        and length.isdigit()
        and (int(length) <= MAX_FORM)
    )


async def _read_all(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_FORM:
            return None
        if not message.get("more_body", False):
            break
    return bytes(body)


def _replaying(body: bytes) -> Receive:
    """A `receive` that hands the app the body the middleware already read."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


# -- the sign-in form -------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    """A path inside the app to go to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _login_form(request: Request, next_path: str, error: str | None, status: int) -> Response:
    message = f'<p class="note" role="alert">{esc(error)}</p>' if error else ""
    body = (
        '<div class="login card"><h1>fsjobs</h1>'
        f'<p class="muted">Sign in with the server\'s token.</p>{message}'
        f'<form method="post" action="{esc(root_path(request))}/login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>Token<input type="password" name="token" autocomplete="current-password" '
        "autofocus required></label>"
        '<button type="submit">Sign in</button></form></div>'
    )
    return bare_page("Sign in", body, status=status)


def login_routes(settings: Settings) -> dict[str, typing.Callable[[Request], typing.Any]]:
    """The endpoints of ``GET /login``, ``POST /login`` and ``POST /logout``."""

    async def show(request: Request) -> Response:
        if settings.token is None:
            return RedirectResponse(f"{root_path(request)}/", 303)
        return _login_form(request, _safe_next(request.query_params.get("next")), None, 200)

    async def sign_in(request: Request) -> Response:
        if settings.token is None:
            return RedirectResponse(f"{root_path(request)}/", 303)
        body = await _read_all(request.receive)
        if body is None:
            return problem_response(413, "too_large", "form too large")
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        given = (fields.get("token") or [""])[0]
        next_path = _safe_next((fields.get("next") or ["/"])[0])
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            return _login_form(request, next_path, "Wrong token.", 401)
        response = RedirectResponse(root_path(request) + next_path, 303)
        response.set_cookie(
            COOKIE,
            new_session(settings.token, settings.session_seconds),
            max_age=settings.session_seconds,
            path=root_path(request) or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse(f"{root_path(request)}/login", 303)
        response.delete_cookie(COOKIE, path=root_path(request) or "/")
        return response

    return {"show": show, "sign_in": sign_in, "sign_out": sign_out}
