"""What every request passes before a route sees it: the token, the number of requests in flight, and the body size
(counted as it arrives, so a 50 MB body is refused without being held in memory); and the one shape of every error."""
from __future__ import annotations

import json
import secrets

from fastapi.responses import JSONResponse

from ..config import ServeConfig


class ApiError(Exception):
    """A request the API refuses: its HTTP status and one sentence saying what is wrong."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


class TooLarge(Exception):
    """The body grew past the limit while it was read."""


def error_body(status: int, message: str) -> dict:
    return {"error": message, "status": status}


class Guard:
    """The checks and counters the middleware applies; `error()` is every error response."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.max_bytes = int(cfg.max_upload_mb * 2**20)
        self.in_flight = 0

    def error(self, status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, message), status_code=status, headers=headers)

    def authorised(self, headers: dict[bytes, bytes]) -> bool:
        if self.cfg.token is None:
            return True
        given = headers.get(b"authorization", b"").decode("latin-1")
        token = given[7:] if given.lower().startswith("bearer ") else headers.get(b"x-api-token", b"").decode("latin-1")
        return secrets.compare_digest(token.encode(), self.cfg.token.encode())

    def middleware(self, app):
        """The ASGI wrapper around the app (pure ASGI: the request body is counted chunk by chunk)."""

        async def guarded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            headers = dict(scope.get("headers") or ())
            refused = self._refuse(headers)
            if refused:
                return await _send_json(send, *refused)
            self.in_flight += 1
            seen, started = 0, False

            async def counted():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_bytes:
                        raise TooLarge
                return message

            async def tracked(message):
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                await app(scope, counted, tracked)
            except TooLarge:
                if not started:
                    await _send_json(send, 413, self.too_large())
            finally:
                self.in_flight -= 1

        return guarded

    def too_large(self) -> str:
        return f"The request body is over this server's {self.cfg.max_upload_mb:g} MB limit: send a smaller photo."

    def _refuse(self, headers: dict[bytes, bytes]) -> tuple[int, str, dict] | None:
        if not self.authorised(headers):
            return 401, "Missing or wrong API token: send 'Authorization: Bearer TOKEN'.", {"WWW-Authenticate": "Bearer"}
        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            return 400, "The Content-Length header is not a number.", {}
        if length > self.max_bytes:
            return 413, self.too_large(), {}
        if self.in_flight >= self.cfg.max_inflight:
            return 503, f"The server is busy ({self.in_flight} requests in flight): retry in a second.", {"Retry-After": "1"}
        return None


async def _send_json(send, status: int, message: str, headers: dict | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
