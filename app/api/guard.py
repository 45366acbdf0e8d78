"""ASGI guards in front of the whole service. Security headers on every response; request bodies are
limited by the bytes actually received, and
an upload's sender is authenticated before one byte of its body is read.

A Content-Length check alone is not enough: a chunked request carries none, and FastAPI parses (and
spools to disk) a multipart body before any dependency, the bearer-token check included, runs.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from typing import Any

from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import ratelimit
from app.core.db import session_factory
from app.core.settings import Settings
from app.users import service as users
from app.users.orm import Role

# The only routes that take large bodies; everything else is small JSON.
UPLOAD_PATH = re.compile(r"/api/v1/projects/[^/]+/images")


APP_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from jsDelivr and start them with an inline script.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; script-src 'self' 'unsafe-inline' "
    "https://cdn.jsdelivr.net; worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Adds the browser hardening headers to every response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in ("/docs", "/redoc") else APP_CSP
        extra = {
            b"x-content-type-options": b"nosniff",
            b"x-frame-options": b"DENY",
            b"referrer-policy": b"no-referrer",
            b"content-security-policy": csp.encode(),
        }

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra.items() if k not in present
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


async def _json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    # Tell the client we will not read the rest: it must not keep sending into a closed request.
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _uploader_role(token: str) -> str | None:
    with session_factory()() as session:
        user = users.get_by_token(session, token)
        return user.role if user is not None else None


class BodyGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            # Reads carry no body: never hand one to the application, whatever the client sent.
            await self.app(scope, _bodiless(receive), send)
            return
        upload = scope["method"] == "POST" and UPLOAD_PATH.fullmatch(scope["path"]) is not None
        limit = self.settings.max_upload_bytes if upload else self.settings.max_json_bytes
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _json(send, 413, f"request body over the limit of {limit} bytes")
            return
        if upload:
            refusal = await self._refuse_uploader(scope)
            if refusal is not None:
                await _json(send, *refusal)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    async def _refuse_uploader(self, scope: Scope) -> tuple[Any, ...] | None:
        client = (scope.get("client") or ("unknown",))[0]
        wait = ratelimit.blocked(client)
        if wait is not None:
            return 429, f"too many failed sign-ins from this address; try again in {wait} s", {"Retry-After": str(wait)}
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        role = await to_thread.run_sync(_uploader_role, token) if token else None
        if role is None:
            if token:
                ratelimit.failed(client)
            return 401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
        if role != Role.admin:
            return 403, "this action needs the admin role"
        return None


def _bodiless(receive: Receive) -> Receive:
    given = False

    async def wrapped() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Later calls only wait for the disconnect; body chunks are dropped as they arrive.
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message

    return wrapped


# The calls an annotator makes in a loop: lease work, label it.
ANNOTATOR_CALL = re.compile(r"/api/v1/(projects/[^/]+/next|images/[^/]+/annotations)")


class AnnotatorQueue:
    """Runs an API process's annotator calls (`next`, label) `limit` at a time, first come first served.

    These calls are a few milliseconds of CPU each. When many arrive at once (a team starting work
    together), running them all side by side shares the CPU between them, so every one of them ends
    as late as the last; queued, the first ones answer in a few milliseconds and only the last waits
    as long as before. Other routes (uploads, exports) are not queued and never hold the queue up.
    Measured with 20 annotators on PostgreSQL while a round trains, 4 API processes, 4 alternating
    pairs: label p95 24-32 ms against 34-38 ms without it (benchmarks/results/api_load.md, stop 31)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        # One per event loop: a semaphore that ever made a call wait belongs to that loop, and an app
        # can be served by more than one (test clients, in-process warm-up).
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.limit <= 0
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or ANNOTATOR_CALL.fullmatch(scope["path"]) is None
        ):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.limit)
        async with gate:
            await self.app(scope, receive, send)
