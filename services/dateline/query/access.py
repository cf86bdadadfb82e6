"""Who reads: a bearer token on the API, a session cookie in the dashboard's browser.

Every route but the probes, the API's own documents, the dashboard's static files and
sign-in itself needs a reader (`dateline readers add`). A browser cannot put a header
on an `EventSource`, so the dashboard signs in once (the token pasted on the sign-in
page, or a one-time link `dateline up` prints) and holds a session cookie: `HttpOnly`
(no script reads it), `SameSite=Strict` (no other site's page sends it), `Secure`
over HTTPS, ending after `SESSION_S` or when its reader is revoked.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, QueryParameter
from litestar.types import ASGIApp

from dateline.store.connection import PROBE_S, UNREACHABLE, within
from dateline.store.readers import SESSION_S, Grant, Readers, Scrapers
from dateline.web.problems import PROBLEM, Problem, Refused

COOKIE = "dateline_session"
PUBLIC = [
    "^/healthz$",
    "^/readyz$",
    "^/v1/session/?$",
    "^/v1/session/link$",
    "^/v1/session/end$",
    "^/v1/openapi.json$",
    "^/v1/docs",
    "^/v1/schema",
    "^/$",
    "^/(index.html|signin.html|docs.html|app.js|signin.js|docs.js|style.css|favicon.ico)$",
]
"""What answers without a reader: nothing in it says anything of a story."""
_ROUTE = re.compile(r"#/[A-Za-z0-9/_.%-]{0,200}")
NOT_SIGNED_IN = "No reader's token (`Authorization: Bearer`) or session, or a revoked one."
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dateline"'}


def readers_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Readers:
    readers = connection.app.state.get("readers")
    if readers is None:
        raise RuntimeError("the query app was used before its startup hook ran")
    return readers  # type: ignore[no-any-return]  # State holds what startup put there


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if it is not one."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ReaderAuth(AbstractAuthenticationMiddleware):
    """The request's `Grant` in `request.user`, or a 401 problem before any route runs."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        readers = readers_of(connection)
        header = connection.headers.get("authorization")
        grant: Grant | None = None
        if header is not None:
            token = bearer_token(header)
            if token is None:
                raise Refused(
                    401,
                    "unauthorized",
                    "Not signed in",
                    "Authorization: expected 'Bearer <token>' (dateline readers add)",
                    _CHALLENGE,
                )
            grant = await _authenticated(connection, readers, token)
            if grant is None:
                raise Refused(
                    401,
                    "unauthorized",
                    "Not signed in",
                    "Authorization: the token is unknown or revoked",
                    _CHALLENGE,
                )
        elif session := connection.cookies.get(COOKIE):
            grant = await readers.session(session)
        if grant is None:
            raise Refused(
                401,
                "unauthorized",
                "Not signed in",
                "this needs a reader: send 'Authorization: Bearer <token>' (dateline readers "
                "add), or sign in on the dashboard (/signin.html)",
                _CHALLENGE,
            )
        return AuthenticationResult(user=grant, auth=None)


async def _authenticated(
    connection: ASGIConnection[Any, Any, Any, Any], readers: Readers, token: str
) -> Grant | None:
    """`readers.authenticate`; for a scrape of `/metrics` through a Redis outage, the
    grant Redis gave its token within the hour (`Scrapers`)."""
    scrapers: Scrapers | None = connection.app.state.get("scrapers")
    if scrapers is None or connection.scope["path"] != "/metrics":
        return await readers.authenticate(token)
    try:
        grant = await within(PROBE_S, readers.authenticate(token), readers.client)
    except UNREACHABLE:
        if (kept := scrapers.through_outage(token)) is None:
            raise
        return kept
    scrapers.checked(token, grant)
    return grant


def reader_auth(app: ASGIApp) -> ASGIApp:
    return ReaderAuth(app, exclude=PUBLIC)


def grant_of(request: Request[Any, Any, Any]) -> Grant:
    user = request.scope.get("user")
    if not isinstance(user, Grant):
        raise RuntimeError(f"{request.url.path} answered without a reader; add it to PUBLIC?")
    return user


def need_ops(request: Request[Any, Any, Any]) -> Grant:
    grant = grant_of(request)
    if not grant.operates:
        raise Refused(
            403,
            "forbidden",
            "Operations only",
            f"reader {grant.name!r} has the role {grant.role!r}; this needs 'ops' "
            "(dateline readers add NAME --role ops)",
        )
    return grant


def _signed_in(request: Request[Any, Any, Any], session: str, where: str = "/") -> Response[None]:
    """The session's cookie, and on to the dashboard."""
    secure = request.url.scheme == "https"
    cookie = Cookie(
        key=COOKIE,
        value=session,
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return Response(None, status_code=303, headers={"Location": where}, cookies=[cookie])


def _same_origin(request: Request[Any, Any, Any]) -> None:
    """A form post from another site's page (login CSRF) is refused."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and origin != str(request.base_url).rstrip("/"):
        raise Refused(403, "forbidden", "Cross-site", f"Origin: {origin!r} is not this site")


def routes() -> list[HTTPRouteHandler]:
    @post("/v1/session", status_code=303, include_in_schema=False)
    async def sign_in(
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[None]:
        """The sign-in page's form: a reader's token for a session cookie."""
        _same_origin(request)
        readers = readers_of(request)
        grant = await readers.authenticate(data.get("token", "").strip())
        if grant is None:
            return Response(None, status_code=303, headers={"Location": "/signin.html?failed"})
        return _signed_in(request, await readers.open_session(grant))

    @get("/v1/session/link", status_code=303, include_in_schema=False)
    async def sign_in_link(
        request: Request[Any, Any, Any],
        code: Annotated[str, QueryParameter(description="The one-time code.")] = "",
        to: Annotated[str, QueryParameter(description="A dashboard route: #/ops.")] = "",
    ) -> Response[None]:
        """A one-time link (`dateline up` prints one): a session cookie, once."""
        readers = readers_of(request)
        grant = await readers.redeem(code) if code else None
        if grant is None:
            return Response(None, status_code=303, headers={"Location": "/signin.html?expired"})
        # Only a route of this dashboard: a link never sends a browser elsewhere.
        where = "/" + to if _ROUTE.fullmatch(to) else "/"
        return _signed_in(request, await readers.open_session(grant), where)

    @post("/v1/session/end", status_code=303, include_in_schema=False)
    async def sign_out(request: Request[Any, Any, Any]) -> Response[None]:
        _same_origin(request)
        if session := request.cookies.get(COOKIE):
            await readers_of(request).end_session(session)
        gone = Cookie(key=COOKIE, value="", max_age=0, path="/", httponly=True, samesite="strict")
        return Response(
            None, status_code=303, headers={"Location": "/signin.html?signedout"}, cookies=[gone]
        )

    @get(
        "/v1/me",
        responses={
            401: ResponseSpec(
                Problem, media_type=PROBLEM, description=NOT_SIGNED_IN, generate_examples=False
            )
        },
    )
    async def me(request: Request[Any, Any, Any]) -> Grant:
        """Who this request reads as: its reader's name, role and stories."""
        return grant_of(request)

    return [sign_in, sign_in_link, sign_out, me]
